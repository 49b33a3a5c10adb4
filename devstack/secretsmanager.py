"""A real AWS Secrets Manager-compatible HTTP server on loopback: moto's standalone server.

This is moto's implementation of the Secrets Manager API (`python -m moto.server` from the
`moto[server]` package), run as a separate process on 127.0.0.1 and spoken to over HTTP by a real
boto3 client, so requests go through botocore's signing, serialization, retries and error parsing
exactly as against AWS. It is a functional API server: secrets, versions and stages
(AWSCURRENT/AWSPREVIOUS), deletion and error codes behave like Secrets Manager, but it holds
everything in memory, does not encrypt with KMS, and enforces no IAM: any access key is accepted
and every action allowed.

For tests of permission errors, `enforce_iam()` switches moto's own (partial) IAM checks on for a
while; `restricted_credentials()` makes an IAM user in moto whose keys may only do the given
actions. While enforcement is on, only keys made in moto's IAM work (the server's own fake keys do
not), so a test restores the default before it ends — the context manager does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from devstack.processes import ManagedProcess, free_port, log_tail, wait_until

REGION = "eu-west-1"  # not us-east-1, so a client that ignores the region would notice


class SecretsManagerServer:
    def __init__(self, workdir: Path, region: str = REGION):
        self.workdir = Path(workdir)
        self.region = region
        # moto accepts any credentials; random ones keep tests from relying on fixed strings.
        self.access_key = "devstack-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        self.port = 0
        self.process: ManagedProcess | None = None

    def __enter__(self) -> SecretsManagerServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SecretsManagerServer:
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(
            {
                # The server never needs real credentials; these keep boto3 inside moto from looking for any.
                "AWS_ACCESS_KEY_ID": "moto-server",
                "AWS_SECRET_ACCESS_KEY": "moto-server",
                "AWS_DEFAULT_REGION": self.region,
            }
        )
        self.process = ManagedProcess(
            "moto-server",
            [
                sys.executable,
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            self.workdir / "moto.log",
            env=env,
            cwd=self.workdir,
        ).start()
        wait_until(
            self._live, 60, "moto server /moto-api/data.json", on_timeout=lambda: "\n" + log_tail(self.process.log_path)
        )
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def _live(self) -> bool:
        self.process.check_alive()
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def client(self, access_key: str | None = None, secret_key: str | None = None, service: str = "secretsmanager"):
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def create_secret(self, name: str, values: dict | str) -> str:
        """Create a secret whose SecretString is `values` (JSON-encoded unless a string); its ARN."""
        text = values if isinstance(values, str) else json.dumps(values)
        return self.client().create_secret(Name=name, SecretString=text)["ARN"]

    # -- moto's IAM, for permission tests ---------------------------------------------------------

    def restricted_credentials(self, actions: list[str], user: str | None = None) -> tuple[str, str]:
        """An IAM user in moto allowed only `actions` (e.g. ["secretsmanager:GetSecretValue"]) on
        every resource; its (access key, secret key). Takes effect under `enforce_iam()`."""
        iam = self.client(service="iam")
        user = user or "devstack-" + secrets.token_hex(4)
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName="only",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextlib.contextmanager
    def enforce_iam(self):
        """Within: moto checks signatures and IAM policies of every request (its reset-auth API)."""
        previous = self._reset_auth("0")
        try:
            yield self
        finally:
            self._reset_auth(previous)

    def _reset_auth(self, count: str) -> str:
        # Not form-encoded (urllib's default), or Flask would consume the body as a form.
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
