"""The go signal (restore/go_signal.py): an object at the go key larger than any go is not the go,
and is not read."""

from __future__ import annotations

from tests.unit.fakes import BUCKET
from walwarden.restore import go_signal
from walwarden.restore import job as restore_jobs


def staged(vault):
    run = vault.restore_run()
    secret = restore_jobs.url_secret_name(run.name, run.uid, "restore")
    vault.kube.add_secret(secret, {go_signal.GO_CONTENT_KEY: "ab" * 32})
    return run


def test_the_go_is_recognised(vault):
    run = staged(vault)
    vault.s3.put(BUCKET, go_signal.go_key(run), ("ab" * 32).encode())
    assert go_signal.go_was_given(run)


def test_a_huge_object_at_the_go_key_is_not_the_go(vault):
    run = staged(vault)
    vault.s3.put(BUCKET, go_signal.go_key(run), ("ab" * 32).encode() + b" " * (5 * 2**20))
    assert not go_signal.go_was_given(run)
