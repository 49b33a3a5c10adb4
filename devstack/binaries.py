"""Where the local stack's Go-built binaries live, and building them when they are missing.

The binaries are built once by build-binaries.sh into a cache outside the clone, keyed by the
pinned versions in versions.env, so a fresh clone (and CI on the same machine) finds them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
BUILD_SCRIPT = HERE / "build-binaries.sh"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("WALWARDEN_CACHE", Path.home() / ".cache" / "walwarden"))


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every binary the local stack runs."""

    versions: dict[str, str]
    root: Path

    def _dir(self, component: str, version_key: str) -> Path:
        return self.root / "bin" / f"{component}-{self.versions[version_key]}"

    @property
    def kubernetes_version(self) -> str:
        return self.versions["KUBERNETES_VERSION"]

    @property
    def etcd(self) -> Path:
        return self._dir("etcd", "ETCD_VERSION") / "etcd"

    def kube(self, command: str) -> Path:
        """kube-apiserver, kube-controller-manager, kube-scheduler or kubectl."""
        return self._dir("kubernetes", "KUBERNETES_VERSION") / command

    @property
    def kubectl(self) -> Path:
        return self.kube("kubectl")

    @property
    def kwok(self) -> Path:
        return self._dir("kwok", "KWOK_VERSION") / "kwok"

    @property
    def minio(self) -> Path:
        return self._dir("minio", "MINIO_VERSION") / "minio"

    @property
    def helm(self) -> Path:
        return self._dir("helm", "HELM_VERSION") / "helm"

    @property
    def argocd(self) -> Path:
        """Argo CD's one multi-call binary: the role comes from ARGOCD_BINARY_NAME (or argv[0])."""
        return self._dir("argocd", "ARGOCD_VERSION") / "argocd"

    def missing(self, components: list[str]) -> list[str]:
        paths = {
            "etcd": [self.etcd],
            "kubernetes": [
                self.kube(c) for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
            ],
            "kwok": [self.kwok],
            "minio": [self.minio],
            "helm": [self.helm],
            "argocd": [self.argocd],
        }
        return [c for c in components if not all(os.access(p, os.X_OK) for p in paths[c])]


def ensure_binaries(components: list[str] | None = None) -> Binaries:
    """Return the binaries, building whatever the cache lacks (slow only the first time)."""
    components = components or ["etcd", "kubernetes", "kwok", "minio", "helm", "argocd"]
    binaries = Binaries(read_versions(), cache_dir())
    missing = binaries.missing(components)
    if missing:
        subprocess.run(["bash", str(BUILD_SCRIPT), *missing], check=True)
        still = binaries.missing(missing)
        if still:
            raise RuntimeError(f"build-binaries.sh finished but {still} are still missing")
    return binaries
