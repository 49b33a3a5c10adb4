"""The Secrets a request names for the operator to send somewhere: a service's new database login
(spec.redirect.credentials, tried on the host the request names and written into the db-info
secrets) and the Verify auth header (sent to the URL the request names).

Whoever may create a RestoreRequest in a namespace may name any Secret there without being able
to read it, and the operator reads them all: so such a Secret is used only when whoever may write
Secrets in the namespace labelled it for that use. Unlabelled, the request is refused before
anything stops, naming the Secret and the label; nothing of its values is read out or sent.
"""

from __future__ import annotations

from walwarden.api.restore import OPT_IN_VALUE, RESTORE_CREDENTIALS_LABEL, VERIFY_HEADER_LABEL
from walwarden.kube.api import call
from walwarden.restore.run import RestoreRun
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import require_secret_keys

NOT_OPTED_IN = "SecretNotOptedIn"


def require_opted_in_secret(
    run: RestoreRun, name: str, keys: tuple[str, ...], label: str, purpose: str
) -> dict[str, str]:
    """The Secret's values when it carries `label: "true"`, else a failure that says which label to
    add (a missing Secret or key fails as require_secret_keys says)."""
    labels = _labels(run, name)
    if labels is not None and labels.get(label) != OPT_IN_VALUE:
        raise StepFailed(
            NOT_OPTED_IN,
            f"Secret {run.namespace}/{name} ({purpose}) is not labelled {label}={OPT_IN_VALUE}: a request may use "
            "a Secret for this only when whoever may write Secrets in the namespace allowed it. If this Secret is "
            f"meant for it: kubectl label secret -n {run.namespace} {name} {label}={OPT_IN_VALUE}",
        )
    return require_secret_keys(run, name, keys, purpose)


def new_login_secret(run: RestoreRun, name: str, keys: tuple[str, ...], service: str) -> dict[str, str]:
    """A Secret of spec.redirect.credentials: the new login of `service`."""
    purpose = f"the new login of {service} (spec.redirect.credentials)"
    return require_opted_in_secret(run, name, keys, RESTORE_CREDENTIALS_LABEL, purpose)


def verify_auth_header(run: RestoreRun) -> dict[str, str]:
    """The Authorization header spec.verify.authHeaderSecretRef gives the accounts check ({} when none)."""
    ref = run.spec.verify.auth_header_secret_ref
    if ref is None or not run.spec.verify.accounts_url:
        return {}
    data = require_opted_in_secret(run, ref.name, (ref.key,), VERIFY_HEADER_LABEL, "the accounts auth header")
    return {"Authorization": data[ref.key]}


def _labels(run: RestoreRun, name: str) -> dict[str, str] | None:
    """The Secret's labels ({} when it has none), None when it does not exist."""
    secret = call(run.kube.core.read_namespaced_secret, name, run.namespace)
    if secret is None:
        return None
    return dict(secret.metadata.labels or {}) if secret.metadata else {}
