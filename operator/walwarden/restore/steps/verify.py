"""Verify: the wallet's health and accounts answer, within spec.verify.timeoutSeconds of every
service being Ready again."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

from walwarden.api import parse_timestamp, utcnow
from walwarden.restore import history, opted_in_secrets
from walwarden.restore.run import RestoreRun
from walwarden.storage import bounded
from walwarden.workflow.engine import StepFailed, Wait

REQUEST_TIMEOUT_SECONDS = 10
# The URLs are the requester's: a health answer is a few bytes and Verify needs only the start of
# the accounts (any at all). A larger answer is refused, not read into the operator's memory.
MAX_ANSWER_BYTES = 2**20


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect answers as its own 3xx status: urllib would carry every header to wherever it
    points, an http:// URL or another host too."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _opener(headers: dict[str, str]) -> urllib.request.OpenerDirector:
    """https:// with the certificate and host name verified against the system's CAs, whatever the
    process's defaults; and, when the request carries a credential, no redirect followed."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=ssl.create_default_context())]
    if headers:
        handlers.append(_NoRedirects())
    return urllib.request.build_opener(*handlers)


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """The HTTP status and body; bounded.TooLarge for a body over MAX_ANSWER_BYTES."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with _opener(headers).open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return int(response.status), bounded.read_at_most(response, MAX_ANSWER_BYTES, f"the answer of {url}")
    except urllib.error.HTTPError as error:
        return error.code, b""
    except OSError as error:
        return 0, type(error).__name__.encode()


def has_data(body: bytes) -> bool:
    """An accounts answer with something in it: a non-empty list, or an object with one or a count."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    if isinstance(document, list):
        return bool(document)
    if isinstance(document, dict):
        return any(isinstance(value, list) and value for value in document.values()) or bool(document.get("count"))
    return False


def _problem(what: str, url: str, headers: dict[str, str]) -> str | None:
    """What is wrong with the answer of one check (to wait on), or None when it passes. An answer
    too large to read fails at once: the same URL will not answer less by waiting."""
    try:
        status, body = _get(url, headers)
    except bounded.TooLarge as error:
        raise StepFailed(
            "VerifyFailed",
            f"{what} check: {error}, so it was not read; point spec.verify.{what}Url at a shorter "
            "answer (for accounts, one page of them)",
        ) from None
    if status != 200 or (what == "accounts" and not has_data(body)):
        return f"{what} check {url} answered {status or body.decode()}" + ("" if status != 200 else " without data")
    return None


def verify(run: RestoreRun) -> str:
    settings = run.spec.verify
    ready_at = run.status.services_ready_at
    deadline_passed = ready_at is not None and (
        (utcnow() - parse_timestamp(ready_at)).total_seconds() > settings.timeout_seconds
    )
    checks = []
    for url, what in ((settings.health_url, "health"), (settings.accounts_url, "accounts")):
        if not url:
            checks.append(f"{what} not checked (spec.verify.{what}Url is unset)")
            continue
        # Only to the accounts URL, which is https:// when there is one (the CRD's rule).
        headers = opted_in_secrets.verify_auth_header(run) if what == "accounts" else {}
        problem = _problem(what, url, headers)
        if problem:
            if deadline_passed:
                raise StepFailed("VerifyFailed", f"{problem} after {settings.timeout_seconds}s")
            raise Wait(problem, delay=run.poll_seconds)
        checks.append(f"{what} OK")
    history.record_restore(run)
    return "; ".join(["pods Ready", *checks])
