"""A real Argo CD on the session's cluster, as local processes on loopback: Debian's redis-server,
argocd-repo-server and argocd-application-controller, all from the one `argocd` binary that
build-binaries.sh builds from Argo CD's Go module (the role comes from ARGOCD_BINARY_NAME).

Installed the way a user installs Argo CD, minus the workloads (no image can be pulled here): the
CRDs of the module's manifests/crds/, the ConfigMaps and Secrets of its manifests/install.yaml,
then Walwarden's health checks patched into argocd-cm with argocd/argocd-cm-patch.yaml exactly as
docs/gitops.md tells users to. What Argo CD's server would add at its first start (the
server.secretkey of argocd-secret, the `default` AppProject) is added here, as it does.

Everything listens on 127.0.0.1. The application controller binds its metrics listener to
0.0.0.0 (it has no flag for the address), so it runs in a network namespace of its own that has
only a loopback interface (devstack/netns.py), with the API server, redis and the repo server
forwarded in. Git repositories are local: file:// URLs (devstack/gitrepo.py).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devstack.binaries import Binaries, cache_dir, ensure_binaries
from devstack.cluster import ClusterAccess
from devstack.netns import LoopbackNamespace
from devstack.processes import ManagedProcess, free_port, http_ok, log_tail, run_until_interrupted, wait_until

REPO = Path(__file__).resolve().parent.parent
# What users apply (docs/gitops.md): the project's shipped file, never a copy.
HEALTH_CHECKS_PATCH = REPO / "argocd" / "argocd-cm-patch.yaml"
MODULE = "github.com/argoproj/argo-cd/v3"
NAMESPACE = "argocd"
CRD_FILES = ("application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml")
CONFIG_KINDS = frozenset({"ConfigMap", "Secret"})  # of install.yaml; its workloads need images
# Generous: a busy 2-CPU machine must pass. Waits end as soon as the condition holds.
START_TIMEOUT = 180
# The controller re-compares every Application with git this often (Argo CD's default: 120 s);
# a test that pushes a commit annotates the Application to refresh at once instead.
APP_RESYNC_SECONDS = 10


def module_dir(versions: dict[str, str]) -> Path:
    """Argo CD's module in the Go module cache (downloaded by the build already)."""
    env = {**os.environ, "GOTOOLCHAIN": versions["ARGOCD_GO_TOOLCHAIN"], "GOWORK": "off", "GOFLAGS": ""}
    workdir = cache_dir()  # outside any go.mod
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{versions['ARGOCD_VERSION']}"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {MODULE} failed: {info.get('Error') or result.stderr}")
    return Path(info["Dir"])


class ArgoCD:
    """Start with `start()` (or as a context manager), on a cluster whose API server is on loopback."""

    def __init__(self, workdir: Path, cluster: ClusterAccess, binaries: Binaries | None = None):
        self.workdir = Path(workdir)
        self.cluster = cluster
        self.binaries = binaries or ensure_binaries(["argocd"])
        self.module = module_dir(self.binaries.versions)
        self.processes: list[ManagedProcess] = []
        self.network = LoopbackNamespace(self.workdir / "logs" / "netns.log")
        self.redis_port = self.repo_server_port = self.repo_server_metrics_port = self.controller_metrics_port = 0

    def __enter__(self) -> ArgoCD:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ArgoCD:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._install()
            self._start_redis()
            self._start_repo_server()
            self._start_controller()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # Applications first, while the controller still runs: their finalizers need it.
        if any(p.name == "argocd-application-controller" and p.alive() for p in self.processes):
            self.delete_applications()
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.network.stop()

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    # -- installation ------------------------------------------------------------------------

    def _install(self) -> None:
        kubectl = self.cluster.kubectl
        kubectl(["apply", "-f", "-"], stdin=json.dumps(_manifest("v1", "Namespace", NAMESPACE)))
        crds = self.module / "manifests" / "crds"
        # Server-side: the ApplicationSet CRD is too big for client-side apply's annotation.
        files = [f"--filename={crds / name}" for name in CRD_FILES]
        applied = kubectl(["apply", "--server-side", "--force-conflicts", "-o", "name", *files]).stdout.split()
        wait_until(lambda: self._established(applied), START_TIMEOUT, f"Argo CD's CRDs Established: {applied}")
        # 2 MB, mostly CRDs: libyaml's loader reads it in a second or two, pure Python's in ten.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        install = yaml.load_all((self.module / "manifests" / "install.yaml").read_text(), Loader=loader)
        config = [d for d in install if d and d["kind"] in CONFIG_KINDS]
        kubectl(
            ["apply", "--server-side", "--force-conflicts", "-n", NAMESPACE, "-f", "-"],
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": config}),
        )
        # Walwarden's health checks, the documented way.
        kubectl(
            ["-n", NAMESPACE, "patch", "configmap", "argocd-cm", "--type", "merge"]
            + [f"--patch-file={HEALTH_CHECKS_PATCH}"]
        )
        # What argocd-server's first start would do: a key for its tokens, the default project.
        key = secrets.token_urlsafe(32)
        kubectl(
            ["-n", NAMESPACE, "patch", "secret", "argocd-secret", "--type", "merge", "-p"]
            + [json.dumps({"data": {"server.secretkey": base64.b64encode(key.encode()).decode()}})]
        )
        project = _manifest("argoproj.io/v1alpha1", "AppProject", "default", NAMESPACE)
        project["spec"] = {
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        }
        kubectl(["apply", "-f", "-"], stdin=json.dumps(project))

    def _established(self, names: list[str]) -> bool:
        # `kubectl wait` on a CRD created a moment ago can fail instead of waiting: poll.
        result = self.cluster.kubectl(["get", *names, "-o", "json"], check=False)
        if result.returncode != 0:
            return False
        items = json.loads(result.stdout).get("items", [])

        def established(crd: dict[str, Any]) -> bool:
            conditions = (crd.get("status") or {}).get("conditions") or []  # null just after creation
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        return len(items) == len(names) and all(map(established, items))

    # -- processes ---------------------------------------------------------------------------

    def _run(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log", env=env).start()
        self.processes.append(process)
        return process

    def _argocd_env(self, role: str) -> dict[str, str]:
        home = self.workdir / role
        paths = {name: home / name for name in ("tmp", "ssh", "tls", "gnupg", "bin")}
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        # git-verify-wrapper.sh is run from PATH (the image has it in /usr/local/bin); the module
        # cache holds it read-only and not executable, so a copy with the exec bit. GIT_ASKPASS
        # is "argocd" on PATH: the binary's own directory.
        wrapper = paths["bin"] / "git-verify-wrapper.sh"
        shutil.copyfile(self.module / "hack" / "git-verify-wrapper.sh", wrapper)
        wrapper.chmod(0o755)
        return {
            **os.environ,
            "ARGOCD_BINARY_NAME": role,
            "PATH": os.pathsep.join([str(paths["bin"]), str(self.binaries.argocd.parent), os.environ["PATH"]]),
            "HOME": str(home),
            "TMPDIR": str(paths["tmp"]),
            "ARGOCD_SSH_DATA_PATH": str(paths["ssh"]),
            "ARGOCD_TLS_DATA_PATH": str(paths["tls"]),
            "ARGOCD_GNUPGHOME": str(paths["gnupg"]),
            "ARGOCD_GPG_ENABLED": "false",
            "GIT_CONFIG_NOSYSTEM": "1",
        }

    def _start_redis(self) -> None:
        self.redis_port = free_port()
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
        redis = self._run(
            "redis",
            [redis_server, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--dir", str(data)]
            + ["--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        )
        wait_until(lambda: self._redis_pong(redis), START_TIMEOUT, "redis-server PING", on_timeout=_tail(redis))

    def _start_repo_server(self) -> None:
        self.repo_server_port, self.repo_server_metrics_port = free_port(), free_port()
        repo_server = self._run(
            "argocd-repo-server",
            [
                str(self.binaries.argocd),
                f"--redis=127.0.0.1:{self.redis_port}",
                "--address=127.0.0.1",
                f"--port={self.repo_server_port}",
                "--metrics-address=127.0.0.1",
                f"--metrics-port={self.repo_server_metrics_port}",
                "--disable-tls",
                "--client-ca-path=",  # its default names a file of the image; empty: no mTLS
                "--loglevel=info",
            ],
            env=self._argocd_env("argocd-repo-server"),
        )
        url = f"http://127.0.0.1:{self.repo_server_metrics_port}/healthz"
        wait_until(
            lambda: http_ok(url, repo_server),
            START_TIMEOUT,
            "argocd-repo-server /healthz",
            on_timeout=_tail(repo_server),
        )

    def _start_controller(self) -> None:
        server = urllib.parse.urlsplit(self._api_server())
        if not (server.hostname or "").startswith("127."):
            raise RuntimeError(f"Argo CD in devstack needs an API server on loopback, not {server.geturl()}")
        self.network.start()
        for port in (server.port or 443, self.redis_port, self.repo_server_port):
            self.network.forward(port)
        self.controller_metrics_port = free_port()
        env = self._argocd_env("argocd-application-controller")
        # https://kubernetes.default.svc (the in-cluster destination) means the cluster of $KUBECONFIG.
        env |= {"ARGOCD_FAKE_IN_CLUSTER": "true", "KUBECONFIG": str(self.cluster.kubeconfig)}
        controller = self._run(
            "argocd-application-controller",
            self.network.wrap(
                [
                    str(self.binaries.argocd),
                    f"--kubeconfig={self.cluster.kubeconfig}",
                    f"--namespace={NAMESPACE}",
                    f"--redis=127.0.0.1:{self.redis_port}",
                    f"--repo-server=127.0.0.1:{self.repo_server_port}",
                    "--repo-server-plaintext",
                    f"--metrics-port={self.controller_metrics_port}",
                    f"--app-resync={APP_RESYNC_SECONDS}",
                    "--app-resync-jitter=0",
                    # Without it, per-resource health is in redis only, not in the Application's status.
                    "--persist-resource-health",
                    "--loglevel=info",
                ]
            ),
            env=env,
        )
        url = f"http://127.0.0.1:{self.controller_metrics_port}/healthz"
        wait_until(
            lambda: self.network.run(lambda: http_ok(url, controller)),
            START_TIMEOUT,
            "argocd-application-controller /healthz",
            on_timeout=_tail(controller),
        )

    def _api_server(self) -> str:
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
        return next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]["server"]

    def _redis_pong(self, redis: ManagedProcess) -> bool:
        redis.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=10) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    # -- Applications ------------------------------------------------------------------------

    def application(
        self, name: str, repo_url: str, path: str, namespace: str, automated: bool = True
    ) -> dict[str, Any]:
        """An Application of the default project syncing `path` of `repo_url` into `namespace` of
        the cluster Argo CD runs in, deleting what it made when it is deleted."""
        app = _manifest("argoproj.io/v1alpha1", "Application", name, NAMESPACE)
        app["metadata"]["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
        app["spec"] = {
            "project": "default",
            "source": {"repoURL": repo_url, "path": path, "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
        }
        if automated:
            app["spec"]["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
        return app

    @contextmanager
    def synced_application(
        self, name: str, repo_url: str, path: str, namespace: str, retry_limit: int | None = None
    ) -> Iterator[str]:
        """An automated Application (see `application`) for the body of a `with`, deleted after it.
        `retry_limit` sets syncPolicy.retry.limit (Argo CD retries a failed automated sync 5 times
        unless told otherwise; 0: a failed sync stays failed)."""
        app = self.application(name, repo_url, path, namespace)
        if retry_limit is not None:
            app["spec"]["syncPolicy"]["retry"] = {"limit": retry_limit}
        self.apply(app)
        try:
            yield name
        finally:
            self.delete_applications(name)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl(["apply", "-f", "-"], stdin=json.dumps(manifest))

    def get_application(self, name: str) -> dict[str, Any]:
        return self.cluster.kubectl_json(["get", "application", name, "-n", NAMESPACE]) or {}

    def refresh(self, name: str, hard: bool = False) -> None:
        """Compare with git now rather than at the next resync (what the UI's Refresh does; a hard
        refresh also drops the repo server's cached manifests)."""
        kind = "hard" if hard else "normal"
        self.cluster.kubectl(
            ["annotate", "--overwrite", "application", name, "-n", NAMESPACE, f"argocd.argoproj.io/refresh={kind}"]
        )

    def sync(self, name: str, initiated_by: str) -> None:
        """Start a sync of the target revision now, as `argocd app sync` does through the API server:
        by setting the Application's `operation`. The operation state names `initiated_by`."""
        operation = {"initiatedBy": {"username": initiated_by}, "sync": {"revision": "HEAD"}}
        self.cluster.kubectl(
            ["patch", "application", name, "-n", NAMESPACE, "--type=merge", "-p", json.dumps({"operation": operation})]
        )

    def delete_applications(self, *names: str, timeout: float = START_TIMEOUT) -> None:
        """Delete these Applications (all without names), waiting until their finalizers have
        removed what they made: before the namespaces they sync into go, or self-heal fights the
        namespace's deletion."""
        targets = list(names) or ["--all"]
        self.cluster.kubectl(
            ["delete", "applications", *targets, "-n", NAMESPACE, "--ignore-not-found", "--wait=false"]
        )

        def gone() -> bool:
            items = (self.cluster.kubectl_json(["get", "applications", "-n", NAMESPACE]) or {}).get("items", [])
            return not [i for i in items if not names or i["metadata"]["name"] in names]

        wait_until(gone, timeout, f"Argo CD Applications {names or 'all'} deleted", on_timeout=lambda: self.logs())

    def logs(self) -> str:
        """The tail of every process's log, for a failing test's message."""
        return "".join(f"\n--- {p.name} ---\n{log_tail(p.log_path)}" for p in self.processes)


def _manifest(api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def _tail(process: ManagedProcess):
    return lambda: "\n" + log_tail(process.log_path)


def main() -> None:  # pragma: no cover - manual use: python -m devstack.argocd KUBECONFIG [DIR]
    kubeconfig = Path(sys.argv[1]).resolve()
    workdir = Path(sys.argv[2] if len(sys.argv) > 2 else ".devstack/argocd").resolve()
    cluster = ClusterAccess(kubeconfig, ensure_binaries(["kubernetes"]).kubectl)
    with ArgoCD(workdir, cluster) as argocd:
        print(f"Argo CD up in namespace {NAMESPACE}; logs in {argocd.workdir / 'logs'}", flush=True)
        run_until_interrupted(argocd.check_alive)


if __name__ == "__main__":
    main()
