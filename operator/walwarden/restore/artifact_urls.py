"""Short-lived presigned URLs for the runner Jobs, handed over in Secrets: the Jobs hold no
object-store credentials, and a URL is a bearer credential while it lives (DESIGN §4)."""

from __future__ import annotations

from walwarden.api import S3Storage
from walwarden.kube.api import call
from walwarden.restore import job as restore_jobs
from walwarden.restore.run import RestoreRun
from walwarden.workflow.steps import s3_client

PRESIGNED_URL_SECONDS = 15 * 60


def presign_get(run: RestoreRun, storage: S3Storage, bucket: str, key: str, expires: int) -> str:
    url: str = s3_client(run, storage).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )
    return url


def url_secret(
    run: RestoreRun,
    role: str,
    bucket: str,
    key: str,
    storage: S3Storage,
    extra: dict[str, str] | None = None,
    expires: int = PRESIGNED_URL_SECONDS,
) -> None:
    """A fresh presigned GET URL in the Secret the runner Job of `role` reads (with `extra` keys)."""
    url = presign_get(run, storage, bucket, key, expires)
    secret_name = restore_jobs.url_secret_name(run.name, run.uid, role)
    core = run.kube.core
    call(core.delete_namespaced_secret, secret_name, run.namespace)
    call(
        core.create_namespaced_secret,
        run.namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret_name, "ownerReferences": [run.owner]},
            "stringData": {restore_jobs.URL_SECRET_URL_KEY: url, **(extra or {})},
        },
    )
