"""The `walwarden` command's dispatch: every command names its handler, main() returns what the
handler returns, and `walwarden --help` loads neither kopf nor the kubernetes client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from walwarden import cli
from walwarden.api.crdgen import build_crds, to_yaml
from walwarden.cli import audit, crds, keys, operator, restore, runner, token


@pytest.mark.parametrize(
    ("argv", "handler"),
    [
        (["run", "-n", "vault"], operator.run),
        (["runner", "verify", "--url-env", "URL", "--sha256", "ab", "--size", "1"], runner.run),
        (["token", "issue", "--request", "restore.yaml", "--key-env", "K"], token.issue_command),
        (["token", "inspect", "wwt1.a.b"], token.inspect_command),
        (["restore", "--artifact", "s3://b/k", "--target-dsn", "dbname=vault"], restore.run),
        (["audit", "verify", "s3://b/audit.log"], audit.verify_log),
        (["crds"], crds.print_crds),
        (["keys", "generate", "--out-dir", "k"], keys.generate_command),
    ],
)
def test_each_command_names_its_handler(argv, handler):
    assert cli.build_parser().parse_args(argv).handler is handler


def test_main_returns_the_handlers_exit_status(capsys):
    assert cli.main(["crds"]) == 0
    assert capsys.readouterr().out == "---\n".join(to_yaml(crd) for crd in build_crds())
    assert cli.main(["token", "inspect", "not-a-token"]) == 1


def test_run_with_a_bad_setting_stops_before_the_operator_starts(monkeypatch, capsys):
    monkeypatch.setenv("WALWARDEN_POLL_SECONDS", "soon")
    monkeypatch.setattr(operator, "run_operator", lambda *args, **kwargs: pytest.fail("the operator started"))
    assert cli.main(["run"]) == 2
    assert "walwarden run: invalid settings:\n  WALWARDEN_POLL_SECONDS: " in capsys.readouterr().err


def test_run_passes_the_namespaces_flags_over_the_environment(monkeypatch):
    started = {}
    monkeypatch.setenv("WALWARDEN_NAMESPACES", "from-env")
    monkeypatch.setattr(
        operator, "run_operator", lambda settings, **kwargs: started.update(settings=settings, **kwargs)
    )
    assert cli.main(["run", "-n", "a", "--namespace", "b", "--kubeconfig", "/k", "-v"]) == 0
    assert (started["settings"].namespaces, started["kubeconfig"], started["verbose"]) == (("a", "b"), "/k", True)


def test_help_does_not_load_kopf_nor_the_kubernetes_client():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom walwarden import cli\ncli.build_parser().format_help()\n"
            "print(' '.join(m for m in ('kopf', 'kubernetes', 'tqdm') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert loaded.strip() == ""


def test_keys_generate_writes_a_secret_and_a_config_map_that_sign_and_verify(tmp_path, capsys):
    import yaml

    from walwarden.security import origin

    assert cli.main(["keys", "generate", "--out-dir", str(tmp_path), "--entry", "prod.pub", "-n", "vault"]) == 0
    key_id = capsys.readouterr().out.strip()
    secret_file = tmp_path / "walwarden-origin-key.secret.yaml"
    secret = yaml.safe_load(secret_file.read_text())
    config_map = yaml.safe_load((tmp_path / "walwarden-trusted-keys.configmap.yaml").read_text())
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (secret["metadata"]["namespace"], config_map["metadata"]["namespace"]) == ("vault", "vault")
    private = origin.load_private_key(secret["stringData"]["privateKey"], "the Secret")
    trusted = origin.trusted_keys(config_map["data"], "the ConfigMap")
    assert [(k.entry, k.key_id) for k in trusted] == [("prod.pub", key_id)]
    signer = origin.check_origin(b"m", origin.sign(private, b"m"), trusted, "the ConfigMap")
    assert signer.key_id == key_id == origin.key_id(private.public_key())
    # Never over an existing key, and the private key never on the terminal.
    assert cli.main(["keys", "generate", "--out-dir", str(tmp_path)]) == 1
    output = capsys.readouterr()
    assert "exists" in output.err and "PRIVATE" not in output.out + output.err
