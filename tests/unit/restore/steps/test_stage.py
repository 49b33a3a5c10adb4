"""Stage (restore/steps/stage.py): the restore Job starts before the services stop and waits for
the operator's go; a staged Job that never got its go is called off (its undo)."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlparse

import pytest

from tests.unit.fakes import BUCKET, REDIRECTED
from walwarden.restore import go_signal
from walwarden.restore.artifact_urls import PRESIGNED_URL_SECONDS
from walwarden.restore.steps.stage import call_off_staged_job, stage
from walwarden.runner.contract import GO_ABORT_CONTENT
from walwarden.workflow.engine import UndoCause

JOB = "restore-1-restore-5e5f0e3c"
URL_SECRET = "restore-1-restore-url-5e5f0e3c"


def container(vault) -> dict:
    return vault.kube.job(JOB)["spec"]["template"]["spec"]["containers"][0]


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def expires(url: str) -> int:
    return int(parse_qs(urlparse(url).query)["X-Amz-Expires"][0])


def go_key(vault) -> str:
    return f"{vault.backup.prefix}/restore-signals/5e5f0e3c-1111-4222-8333-444455556666"


def test_the_restore_job_is_staged_with_its_go_and_the_artifact_url(vault):
    run = vault.restore_run()
    message = stage(run)
    assert run.status.restore_job == JOB and "only on the operator's go, after ScaleDown" in message
    secret = vault.kube.secret(URL_SECRET)
    args = container(vault)["args"]
    # The Job knows only the go content's hash; the content itself is in its URL Secret.
    assert arg(args, "--go-sha256") == hashlib.sha256(secret[go_signal.GO_CONTENT_KEY].encode()).hexdigest()
    assert arg(args, "--go-timeout") == str(go_signal.GO_TIMEOUT_SECONDS)
    assert arg(args, "--sha256") == vault.backup.manifest.databases[0].sha256
    assert secret["url"].startswith(f"https://s3.test/{BUCKET}/{vault.backup.manifest.databases[0].key}?")
    assert secret["go"].startswith(f"https://s3.test/{BUCKET}/{go_key(vault)}?")
    # Both URLs outlive the longest wait for the go.
    assert expires(secret["url"]) == PRESIGNED_URL_SECONDS + go_signal.GO_TIMEOUT_SECONDS
    assert expires(secret["go"]) == go_signal.GO_TIMEOUT_SECONDS + 600
    assert vault.s3.get(BUCKET, go_key(vault)) is None  # no go yet


def test_an_in_place_restore_cleans_the_existing_database(vault):
    stage(vault.restore_run())
    args = container(vault)["args"]
    assert "--clean" in args and arg(args, "--database") == "vault"


def test_a_redirected_restore_writes_into_the_new_database_with_its_admin_secret(vault):
    stage(vault.restore_run(vault.restore_spec(**REDIRECTED)))
    args, env = container(vault)["args"], container(vault)["env"]
    assert "--clean" not in args and arg(args, "--database") == "vault_restored"
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"] == "PGHOST"} == {"restore-admin"}


def test_the_job_is_staged_once_and_its_go_content_never_changes(vault):
    run = vault.restore_run()
    stage(run)
    content = vault.kube.secret(URL_SECRET)[go_signal.GO_CONTENT_KEY]
    again = vault.next_pass(run)
    stage(again)
    assert again.status.restore_job == JOB
    assert vault.kube.secret(URL_SECRET)[go_signal.GO_CONTENT_KEY] == content
    assert [w for w in vault.kube.writes if w[1] in ("Job", "Secret")] == [
        ("create", "Secret", URL_SECRET),
        ("create", "Job", JOB),
    ]


def test_a_job_that_exists_although_the_status_lost_it_is_adopted(vault):
    stage(vault.restore_run())
    lost = vault.restore_run()  # the status patch of the pass that staged was lost
    stage(lost)
    assert lost.status.restore_job == JOB
    assert [w for w in vault.kube.writes if w[1] == "Job"] == [("create", "Job", JOB)]


# --- calling off a staged Job -------------------------------------------------------------------


@pytest.mark.parametrize("cause", list(UndoCause))
def test_a_staged_job_without_its_go_is_called_off_once(vault, cause):
    run = vault.restore_run()
    stage(run)
    assert call_off_staged_job(run, cause) == "the staged restore Job was called off before it touched the database"
    assert vault.s3.get(BUCKET, go_key(vault)) == GO_ABORT_CONTENT.encode()
    assert run.status.staged_job_called_off is True
    again = vault.next_pass(run)
    assert call_off_staged_job(again, cause) is not None
    assert vault.s3.puts.count((BUCKET, go_key(vault))) == 1


def test_nothing_staged_nothing_to_call_off(vault):
    run = vault.restore_run()
    assert call_off_staged_job(run, UndoCause.FAILURE) is None
    assert vault.s3.puts == [] and run.status.staged_job_called_off is None


def test_a_job_that_got_its_go_is_not_called_off(vault):
    run = vault.restore_run()
    stage(run)
    run.status.restore_go_at = "2026-01-10T08:00:00Z"
    assert call_off_staged_job(run, UndoCause.FAILURE) is None
    assert vault.s3.puts == []
