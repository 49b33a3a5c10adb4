"""pytest fixtures for the object store: one MinIO server per session, a fresh bucket per test."""

from __future__ import annotations

import secrets

import pytest

from devstack.s3 import S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket(f"walwarden-test-{secrets.token_hex(4)}")
