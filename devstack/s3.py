"""A real S3 server on loopback: MinIO, built from its Go module (see build-binaries.sh).

MinIO checks SigV4 signatures and presigned-URL expiry, which is what the restore Job's
short-lived presigned GET relies on.
"""

from __future__ import annotations

import os
import secrets
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from devstack.binaries import Binaries, ensure_binaries
from devstack.processes import ManagedProcess, free_port, log_tail, wait_until

REGION = "us-east-1"


class S3Server:
    def __init__(self, workdir: Path, binaries: Binaries | None = None):
        self.workdir = Path(workdir)
        self.binaries = binaries or ensure_binaries(["minio"])
        self.access_key = "devstack-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        self.port = 0
        self.process: ManagedProcess | None = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.port = free_port()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",  # no web console
            "MINIO_UPDATE": "off",  # never phone home for updates
            "MINIO_CI_CD": "1",  # no interactive hints
            "MINIO_REGION": REGION,
        }
        self.process = ManagedProcess(
            "minio",
            [
                str(self.binaries.minio),
                "server",
                str(data),
                f"--address=127.0.0.1:{self.port}",
                f"--console-address=127.0.0.1:{free_port()}",
                "--quiet",
            ],
            self.workdir / "minio.log",
            env=env,
        ).start()
        wait_until(
            self._live, 60, "MinIO /minio/health/live", on_timeout=lambda: "\n" + log_tail(self.process.log_path)
        )
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def _live(self) -> bool:
        self.process.check_alive()
        try:
            with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str, object_lock: bool = False) -> str:
        """A new bucket; with `object_lock`, created with S3 Object Lock enabled (and so versioned)."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def credentials_secret(self, name: str = "s3-credentials") -> dict:
        """A Kubernetes Secret manifest holding these credentials, as BackupRequests reference it."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"accessKeyId": self.access_key, "secretAccessKey": self.secret_key},
        }
