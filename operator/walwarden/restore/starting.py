"""ScaleUp and Verify: the services started in start order with their original replica counts,
then the wallet's health and accounts checked."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from walwarden.workflow import tiers
from walwarden.api import parse_timestamp, utcnow
from walwarden.workflow.steps import meta, require_secret_keys
from walwarden.workflow.engine import Run, StepFailed, Wait
from walwarden.restore.common import not_in_dry_run, poll, spec_of, topology


# -- ScaleUp --------------------------------------------------------------------------------------------

def scale_up(run: Run) -> str:
    not_in_dry_run(run)
    started = tiers.start_in_order(run, run.context.kube, meta(run)[0], topology(run), poll(run),
                                   loud_after=run.context.config.stop_timeout_seconds)
    if run.status.get("scaledDownAt"):
        run.status["downtimeSeconds"] = round(
            (utcnow() - parse_timestamp(run.status["scaledDownAt"])).total_seconds(), 1)
    return started


# -- Verify -----------------------------------------------------------------------------------------------

def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except OSError as error:
        return 0, str(type(error).__name__).encode()


def _has_data(body: bytes) -> bool:
    try:
        document = json.loads(body)
    except ValueError:
        return False
    if isinstance(document, list):
        return bool(document)
    if isinstance(document, dict):
        return any(isinstance(value, list) and value for value in document.values()) or bool(document.get("count"))
    return False


def verify(run: Run) -> str:
    not_in_dry_run(run)
    spec = spec_of(run)
    checks = []
    scale_up_done = next((s.get("finishedAt") for s in run.status.get("steps", []) if s["name"] == "ScaleUp"), None)
    deadline_passed = scale_up_done and (utcnow() - parse_timestamp(scale_up_done)).total_seconds() > \
        spec.verify.timeout_seconds
    for url, what in ((spec.verify.health_url, "health"), (spec.verify.accounts_url, "accounts")):
        if not url:
            checks.append(f"{what} not checked (spec.verify.{what}Url is unset)")
            continue
        headers = {}
        if what == "accounts" and spec.verify.auth_header_secret_ref:
            ref = spec.verify.auth_header_secret_ref
            headers["Authorization"] = require_secret_keys(run, ref.name, (ref.key,), "the accounts auth header")[ref.key]
        status, body = _get(url, headers)
        ok = status == 200 and (what == "health" or _has_data(body))
        if not ok:
            problem = f"{what} check {url} answered {status or body.decode()}" + (
                "" if status != 200 else " without data")
            if deadline_passed:
                raise StepFailed("VerifyFailed", f"{problem} after {spec.verify.timeout_seconds}s")
            raise Wait(problem, delay=poll(run))
        checks.append(f"{what} OK")
    return "; ".join(["pods Ready", *checks])


