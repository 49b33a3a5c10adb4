"""pytest fixtures for GitOps tests: a real Argo CD on the session's cluster (devstack/argocd.py),
and a local git repository per test for its Applications to sync from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.argocd import ArgoCD
from devstack.cluster import ClusterAccess
from devstack.gitrepo import LocalGitRepo


@pytest.fixture(scope="session")
def argocd(cluster: ClusterAccess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """Argo CD (redis, repo server, application controller) with Walwarden's health checks installed."""
    with ArgoCD(tmp_path_factory.mktemp("argocd"), cluster) as instance:
        yield instance


@pytest.fixture
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> LocalGitRepo:
    """A new, empty git repository; Argo CD reads it at `git_repo.url` (file://)."""
    return LocalGitRepo(tmp_path_factory.mktemp("git"))
