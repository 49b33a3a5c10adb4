"""Restores that ran, so that one is not run again by accident (issue 12).

A restore throws away every write since its backup. GitOps makes running the same restore twice
easy: a RestoreRequest removed from git with prune and added back is a new object (its status,
and the fact that it finished, gone with the old one), and would stop the vault and restore the
same backup again. So every restore that succeeded is recorded in the namespace's ConfigMap
walwarden-restores, keyed by what it did: the backup's sha256, the mode and where it restored to
(server and database). A request with the same key is refused in Validate unless it says
spec.allowRepeat: true.
"""

from __future__ import annotations

import hashlib
import json

from walwarden.api import format_timestamp, utcnow
from walwarden.kube.secrets import read_config_map, update_ledger
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import Source, source_of
from walwarden.restore.target import target_database, target_secret
from walwarden.workflow.engine import StepFailed, Wait

HISTORY_CONFIGMAP = "walwarden-restores"


def _what_it_does(run: RestoreRun, found: Source) -> tuple[str, str]:
    """(ledger key, how a message names the target) of this request's restore."""
    secret = target_secret(run)
    target = f"{secret.get('host')}:{secret.get('port', '5432')}/{target_database(run)}"
    identity = {"sha256": found.dump.sha256, "mode": str(run.spec.mode), "target": target}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:40]
    return key, target


def check_not_a_repeat(run: RestoreRun, found: Source) -> None:
    """Validate: refuse a restore that already ran (another request, same backup, mode and target)."""
    if run.spec.allow_repeat:
        return
    key, target = _what_it_does(run, found)
    recorded = (read_config_map(run.kube, run.namespace, HISTORY_CONFIGMAP) or {}).get(key)
    if not recorded:
        return
    earlier = json.loads(recorded)
    if earlier.get("uid") == run.uid:
        return  # this request itself (a resumed pass after it was recorded)
    raise StepFailed(
        "RestoreAlreadyRan",
        f"RestoreRequest {earlier.get('request')} already restored {found.label} ({run.spec.mode}) into {target} "
        f"at {earlier.get('restoredAt')}: running it again would stop the vault and throw away every write since. "
        "If a GitOps tool re-created this request (removed from git with prune, then added back), keep it out of "
        "git once it ran; to restore that backup there again on purpose, create a request with "
        "spec.allowRepeat: true. Nothing was touched: every service is still running",
    )


def record_restore(run: RestoreRun) -> None:
    """After a successful Verify: this restore ran (the record a repeat is refused by)."""
    key, target = _what_it_does(run, source_of(run))
    entry = json.dumps(
        {"request": run.name, "uid": run.uid, "restoredAt": format_timestamp(utcnow()), "target": target},
        sort_keys=True,
    )

    def record(data: dict[str, str]) -> dict[str, str]:
        if key in data and json.loads(data[key]).get("uid") == run.uid:
            return data  # recorded by an earlier pass
        return {**data, key: entry}

    if update_ledger(run.kube, run.namespace, HISTORY_CONFIGMAP, record) is None:
        raise Wait("the restore history ConfigMap is busy", delay=1)
