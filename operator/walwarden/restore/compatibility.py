"""Whether a backup fits the server and environment it is restored into: the PostgreSQL major
version, and the Encryptor Master Password its key shares were encrypted with (a restore with
another EMP leaves an irrecoverable vault). Shared by a restore's Preflight and a drill's."""

from __future__ import annotations

from walwarden import postgres
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import Source
from walwarden.security import fingerprints
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import require_secret_keys


def check_target_version(target: str, source: str) -> None:
    """A dump restores into the same or a newer major version only; unreadable versions are not refused."""
    target_major, source_major = postgres.major_version(target), postgres.major_version(source)
    if target_major and source_major and target_major < source_major:
        raise StepFailed(
            "TargetServerTooOld",
            f"the backup is of a PostgreSQL {source} server, the target runs "
            f"{target}: a dump restores into the same or a newer major version "
            "only. Nothing was touched: restore into a server of that major "
            "version or newer",
        )


def check_encryptor_fingerprints(run: RestoreRun, found: Source, required: bool = True) -> str:
    """spec.encryptorSecrets against the fingerprints the backup recorded. `required`: a backup taken
    with EMPs needs them named (a restore); a drill checks them only when they are named."""
    expected = {entry.secret: entry for entry in found.manifest.encryptor_fingerprints}
    given = {f"{emp.name}/{emp.key}": emp for emp in run.spec.encryptor_secrets}
    if expected and not given and required:
        raise StepFailed(
            "EncryptorSecretsMissing",
            f"the backup was taken with the Encryptor Master Password(s) "
            f"{', '.join(expected)}; name the target environment's EMP "
            "secrets in spec.encryptorSecrets so they can be compared",
        )
    for secret_name, emp in given.items():
        fingerprint = expected.get(secret_name) or (next(iter(expected.values())) if len(expected) == 1 else None)
        if fingerprint is None:
            raise StepFailed("EncryptorMismatch", f"the backup's manifest has no fingerprint for {secret_name}")
        value = require_secret_keys(run, emp.name, (emp.key,), "an Encryptor Master Password")[emp.key]
        if not fingerprints.matches(value, fingerprint):
            raise StepFailed(
                "EncryptorMismatch",
                f"the Encryptor Master Password in {secret_name} differs from the "
                "one the backup was taken with: restoring would leave the vault's "
                "key shares and encrypted configuration undecryptable, an "
                "irrecoverable vault. Nothing was changed. Restore into an "
                "environment with the backup's EMP, or choose another backup",
            )
    return "EMP fingerprints match" if given else "EMP fingerprints not checked (no spec.encryptorSecrets)"
