"""Verify: the wallet's health and accounts answer, within spec.verify.timeoutSeconds of every
service being Ready again."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from walwarden.api import parse_timestamp, utcnow
from walwarden.restore import history
from walwarden.restore.run import RestoreRun
from walwarden.workflow.engine import StepFailed, Wait
from walwarden.workflow.steps import require_secret_keys

REQUEST_TIMEOUT_SECONDS = 10


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return int(response.status), bytes(response.read())
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
        headers = {}
        if what == "accounts" and settings.auth_header_secret_ref:
            ref = settings.auth_header_secret_ref
            auth = require_secret_keys(run, ref.name, (ref.key,), "the accounts auth header")
            headers["Authorization"] = auth[ref.key]
        status, body = _get(url, headers)
        if status != 200 or (what == "accounts" and not has_data(body)):
            problem = f"{what} check {url} answered {status or body.decode()}" + (
                "" if status != 200 else " without data"
            )
            if deadline_passed:
                raise StepFailed("VerifyFailed", f"{problem} after {settings.timeout_seconds}s")
            raise Wait(problem, delay=run.poll_seconds)
        checks.append(f"{what} OK")
    history.record_restore(run)
    return "; ".join(["pods Ready", *checks])
