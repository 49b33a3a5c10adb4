"""Approval tokens: a restore needs a valid, unexpired, single-use token when the operator runs
with approvals on. Used token ids are recorded in a ConfigMap of the operator's own namespace,
where a requester cannot write: deleting the ledger never makes a spent token good again."""

from __future__ import annotations

import time

from walwarden.kube.secrets import read_secret, update_ledger
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import Source
from walwarden.security import tokens
from walwarden.workflow.engine import StepFailed, Wait

USED_TOKENS_CONFIGMAP = "walwarden-approvals"


def check_approval(run: RestoreRun, found: Source) -> None:
    spec, settings = run.spec, run.settings
    if run.status.approval_token_id:
        return  # consumed by this request already (a resumed pass)
    if not spec.approval_token:
        if settings.approvals_required and not spec.dry_run:
            raise StepFailed(
                "ApprovalRequired",
                "this operator requires an approval token: someone holding the approval key runs `walwarden token "
                "issue --request <this request's file>` and you set spec.approvalToken in a new request of that "
                "file (the token binds its name and spec)",
            )
        return
    where = f"Secret {settings.operator_namespace}/{settings.approval_key_secret}"
    key = (read_secret(run.kube, settings.operator_namespace, settings.approval_key_secret) or {}).get("key")
    if not key:
        raise StepFailed("ApprovalKeyMissing", f"{where} with the approval key (key 'key') does not exist")
    try:
        approval = tokens.Approval.of_request(run.namespace, run.name, spec, found.dump.sha256)
        claims = tokens.verify_token(key.encode(), spec.approval_token, approval)
    except tokens.TokenError as error:
        raise StepFailed(str(error.reason), f"approval token refused: {error.message}") from None
    except ValueError as error:  # e.g. a key too short to be safe
        raise StepFailed("ApprovalKeyInvalid", f"the approval key in {where} is not usable: {error}") from None
    if not spec.dry_run:
        _consume(run, claims)
    run.status.approval_token_id = claims.token_id


def prune_expired_tokens(used: dict[str, str], now: float) -> dict[str, str]:
    """Used token ids whose token has expired can go: an expired token is refused anyway. Keeps the
    ConfigMap from growing with every restore."""

    def expired(record: str) -> bool:
        _, _, expires = record.rpartition(" expires ")
        return expires.isdigit() and int(expires) < now

    return {token_id: record for token_id, record in used.items() if not expired(record)}


def _consume(run: RestoreRun, claims: tokens.TokenClaims) -> None:
    """Single use: the token id is recorded in a ConfigMap; a second request with it is refused."""
    me = f"{run.kind}/{run.namespace}/{run.name}/{run.uid}"

    def record(used: dict[str, str]) -> dict[str, str]:
        used = prune_expired_tokens(used, time.time())
        user = used.get(claims.token_id)
        if user and not user.startswith(me):
            raise StepFailed(
                "TokenReused",
                f"approval token {claims.token_id} was already used by {user.split()[0]}; issue a new token",
            )
        used[claims.token_id] = f"{me} expires {claims.expires_at}"
        return used

    if update_ledger(run.kube, run.settings.operator_namespace, USED_TOKENS_CONFIGMAP, record) is None:
        raise Wait("the approvals ConfigMap is busy", delay=1)
