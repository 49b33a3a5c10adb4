"""Verify reads the wallet's answers up to MAX_ANSWER_BYTES: a URL answering more fails Verify
with what it answered and the limit, without reading it into the operator's memory. The URLs are
the requester's, so the attack is a server of theirs answering megabytes (here on loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from walwarden.restore.steps import verify as verify_step
from walwarden.restore.steps.verify import MAX_ANSWER_BYTES, verify
from walwarden.workflow.engine import StepFailed

ANSWER_SIZES = {"/health": 2, "/accounts": 5 * 2**20, "/accounts-at-the-limit": MAX_ANSWER_BYTES}


class Answers(BaseHTTPRequestHandler):
    """An answer as long as ANSWER_SIZES says (a list of accounts padded with spaces), streamed."""

    def do_GET(self) -> None:
        size = ANSWER_SIZES[self.path]
        body = b"[1" + b" " * (size - 3) + b"]" if size > 2 else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for start in range(0, len(body), 65536):
                self.wfile.write(body[start : start + 65536])
        except OSError:
            pass  # the operator stopped reading and closed: what this test wants

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_server_answering_5_mib_fails_verify_at_once(vault, server):
    accounts = f"{server}/accounts"
    run = vault.restore_run(vault.restore_spec(verify={"healthUrl": f"{server}/health", "accountsUrl": accounts}))
    with pytest.raises(StepFailed) as failed:
        verify(run)  # before the deadline: not waited for, as waiting would not make it shorter
    assert failed.value.reason == "VerifyFailed"
    assert failed.value.message.startswith(f"accounts check: the answer of {accounts} is over the 1.0 MiB limit")
    assert "point spec.verify.accountsUrl at a shorter answer" in failed.value.message


def test_an_answer_at_the_limit_is_read_whole(server):
    status, body = verify_step._get(f"{server}/accounts-at-the-limit", {})
    assert status == 200 and len(body) == MAX_ANSWER_BYTES and verify_step.has_data(body)
