"""The origin check of an artifact restored by URI (DESIGN §4; the policy is security/origin.py's):
which public keys this environment trusts, and which of them signed the artifact's manifest.

The trusted keys are the request's spec.source.trustedKeys (a ConfigMap or Secret of its
namespace), else the operator's WALWARDEN_TRUSTED_KEYS_CONFIG_MAP (a ConfigMap of the operator's
namespace), else none: then the origin is not checked, as before origin signatures existed.
A backupRef needs none of this: its BackupRequest's per-request key proves its manifest.
"""

from __future__ import annotations

from walwarden.api import OriginStatus, TrustedKeysKind, TrustedKeysRef
from walwarden.kube.secrets import read_config_map, read_secret
from walwarden.restore.run import RestoreRun
from walwarden.security import origin
from walwarden.storage import manifest as manifests
from walwarden.workflow.engine import StepFailed

UNTOUCHED = "Nothing was touched: every service is still running"


def trusted_keys_of(run: RestoreRun) -> tuple[TrustedKeysRef, str, str] | None:
    """(the trusted keys, their namespace, how a message names them), or None when there are none."""
    if run.spec.source.trusted_keys is not None:
        if not run.settings.request_trusted_keys_allowed(run.namespace):
            raise StepFailed(
                "RequestTrustedKeysNotAllowed",
                f"spec.source.trustedKeys names keys of the request's own choosing, and the operator trusts origins "
                f"only by its own keys for namespace {run.namespace}: remove spec.source.trustedKeys (the operator's "
                "trusted keys apply), or have its admin list the namespace in requestTrustedKeysNamespaces. "
                f"{UNTOUCHED}",
            )
        ref = run.spec.source.trusted_keys
        return ref, run.namespace, f"{ref.describe(run.namespace)} (spec.source.trustedKeys)"
    if run.settings.trusted_keys_config_map:
        ref = TrustedKeysRef(kind=TrustedKeysKind.CONFIG_MAP, name=run.settings.trusted_keys_config_map)
        namespace = run.settings.operator_namespace
        return ref, namespace, f"{ref.describe(namespace)} (the operator's WALWARDEN_TRUSTED_KEYS_CONFIG_MAP)"
    return None


def check_origin(run: RestoreRun, manifest: manifests.Manifest) -> OriginStatus | None:
    """Which trusted key signed `manifest`; None when no keys are trusted. StepFailed when refused.

    Checked on every pass until the services stop, so a manifest swapped after Validate is refused
    too; from then on the origin Validate proved stands (the Jobs still check the artifact's
    sha256), so an edit of the trusted keys mid-restore cannot fail a step in the stop window."""
    if run.status.origin is not None and run.status.scaled_down_at:
        return run.status.origin
    found = trusted_keys_of(run)
    if found is None:
        return None
    ref, namespace, where = found
    read = read_secret if ref.kind == TrustedKeysKind.SECRET else read_config_map
    entries = read(run.kube, namespace, ref.name)
    if entries is None:
        raise StepFailed(
            "TrustedKeysNotFound",
            f"{where} does not exist, so the artifact's origin cannot be checked: create it with the backup "
            f"environment's public key (`walwarden keys generate` writes one). {UNTOUCHED}",
        )
    try:
        signer = manifests.origin_signer(manifest, origin.trusted_keys(entries, where), where)
    except origin.OriginError as error:
        raise StepFailed(error.reason, f"{error.message}. {UNTOUCHED}") from None
    source_namespace = manifest.backup.namespace
    if not run.settings.may_restore_from(run.namespace, source_namespace):
        raise StepFailed(
            "OriginNamespaceNotAllowed",
            f"the manifest is signed by {signer.key_id} as a backup of namespace {source_namespace or '(none)'}, and "
            f"{run.namespace} restores only its own backups unless the operator's artifactSourceNamespaces lets it "
            f"restore {source_namespace or 'that'}'s. {UNTOUCHED}",
        )
    return OriginStatus(key_id=signer.key_id, trusted_keys=ref.describe(namespace), entry=signer.entry)
