"""The runner contract: dependency-free, and its error line survives the trip through Kubernetes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from walwarden.runner import contract


def test_the_contract_imports_the_standard_library_only():
    tree = ast.parse(Path(contract.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "typing"}


OPERATOR_SIDE = [
    "kube/jobs.py",
    "kube/runner_job.py",
    "backup/job.py",
    "restore/job.py",
    "postgres/__init__.py",
    "postgres/databases.py",
]


@pytest.mark.parametrize("module", OPERATOR_SIDE)
def test_the_operator_side_reads_the_contract_and_nothing_else_of_the_runner(module):
    source = Path(contract.__file__).parents[1] / module
    tree = ast.parse(source.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            # `from walwarden.runner import contract` imports walwarden.runner.contract.
            packages = ("walwarden", "walwarden.runner")
            imported |= (
                {f"{node.module}.{alias.name}" for alias in node.names} if node.module in packages else {node.module}
            )
    assert {name for name in imported if name.startswith("walwarden.runner")} <= {"walwarden.runner.contract"}


@pytest.mark.parametrize(
    "reason, message",
    [
        ("AuthenticationFailed", 'password authentication failed for user "postgres"'),
        ("RestoreFailed", "pg_restore exited 1: ERROR: x; the target database may be partly restored"),
    ],
)
def test_an_error_line_reads_back_as_it_was_written(reason, message):
    line = contract.format_error_line(reason, message)
    assert line.startswith(contract.ERROR_PREFIX)
    assert contract.parse_error_line(line) == (reason, message)


def test_an_error_line_is_one_line():
    line = contract.format_error_line("DumpFailed", "pg_dump said:\n  FATAL:\tno\r\nmore")
    assert line == "walwarden-error: DumpFailed: pg_dump said: FATAL: no more"


@pytest.mark.parametrize("character", ["x", "é", "€", "𝄞"])
def test_a_long_line_is_cut_to_fit_the_termination_message_in_bytes(character):
    line = contract.format_error_line("RestoreFailed", character * 5000)
    assert len(line.encode()) <= contract.MAX_ERROR_LINE_BYTES < 2048
    assert line.endswith(contract.ELLIPSIS) and line.startswith("walwarden-error: RestoreFailed: " + character)
    line.encode().decode()  # no character cut in half


@pytest.mark.parametrize(
    "line", ["", "pg_restore: error: x", "walwarden-error DumpFailed: x", " walwarden-error: DumpFailed: x"]
)
def test_other_lines_are_no_error_line(line):
    assert contract.parse_error_line(line) is None


def test_the_emp_variables_are_numbered():
    assert [contract.emp_env(index) for index in range(2)] == ["WALWARDEN_EMP_0", "WALWARDEN_EMP_1"]
    assert contract.emp_argument("emp/password", "WALWARDEN_EMP_0") == "emp/password=WALWARDEN_EMP_0"
