"""The origin signature of a backup's manifest (DESIGN §4; security/origin.py): an Ed25519
signature the operator adds once VerifyArtifact proved the manifest is its own Job's, so that
another environment holding only the public key can prove where the artifact came from.

The operator signs, not the runner Job: the private key stays in the operator's memory, read from
its Secret on each use, and never reaches a Job's environment, a log, status or S3. The key is the
request's spec.originSigningKey (a Secret of its namespace), else the operator's
WALWARDEN_ORIGIN_SIGNING_KEY_SECRET (a Secret of the operator's namespace, key "privateKey"), else
none: the manifest then carries the per-request HMAC only, as before.
"""

from __future__ import annotations

from typing import Any

from walwarden.backup import job as backup_job
from walwarden.backup.run import BackupRun
from walwarden.kube.secrets import read_secret
from walwarden.security import origin
from walwarden.settings import ORIGIN_SIGNING_KEY_SECRET_KEY
from walwarden.storage import manifest as manifests
from walwarden.workflow.engine import StepFailed


def signing_key(run: BackupRun) -> origin.Ed25519PrivateKey | None:
    """The key that signs this backup's origin, or None; StepFailed when it is named but unusable."""
    ref = run.spec.origin_signing_key
    if ref is not None:
        namespace, name, key = run.namespace, ref.name, ref.key
        named_by = "spec.originSigningKey"
    elif run.settings.origin_signing_key_secret:
        namespace, name, key = (
            run.settings.operator_namespace,
            run.settings.origin_signing_key_secret,
            ORIGIN_SIGNING_KEY_SECRET_KEY,
        )
        named_by = "the operator's WALWARDEN_ORIGIN_SIGNING_KEY_SECRET"
    else:
        return None
    where = f"key {key} of Secret {namespace}/{name} ({named_by})"
    value = (read_secret(run.kube, namespace, name) or {}).get(key)
    if not value:
        raise StepFailed(
            "OriginKeyNotFound",
            f"{where} does not exist: create it (`walwarden keys generate` writes the Secret and the public "
            "key to trust), or name no origin signing key",
        )
    try:
        return origin.load_private_key(value, where)
    except origin.OriginError as error:
        raise StepFailed(error.reason, error.message) from None


def signing_key_id(run: BackupRun) -> str | None:
    """The id of the key that will sign this backup's origin (checked usable), or None."""
    key = signing_key(run)
    return None if key is None else origin.key_id(key.public_key())


def sign_manifest_origin(
    run: BackupRun, client: Any, bucket: str, key: str, manifest: manifests.Manifest
) -> manifests.Manifest:
    """The manifest with its origin signature, written back to S3 unless it holds it already (a
    resumed pass: Ed25519 signatures are deterministic, so signing again gives the same bytes)."""
    private_key = signing_key(run)
    if private_key is None:
        return manifest
    identity = manifest.backup
    if (identity.namespace, identity.name, identity.uid) != (run.namespace, run.name, run.uid):
        # The signature vouches for the namespace the manifest names: only this request's.
        raise StepFailed(
            "ManifestNotThisBackups",
            f"the manifest names the backup {identity.namespace}/{identity.name} ({identity.uid or 'no uid'}), not "
            f"this request: it is not signed. Take a new backup",
        )
    signed = manifests.sign_origin(manifest, private_key)
    if signed.origin != manifest.origin:
        manifests.write_manifest(client, bucket, key, signed, backup_job.object_lock(run.spec, run.created))
    return signed
