"""The local pod executor: a stand-in for a kubelet on this machine, for the local stack only.

kwok gives the local cluster nodes and fake pod lifecycles but never runs a container. Pods that
carry the label `devstack.walwarden.io/exec` (kwok's stages skip them) are run here instead: the
first container's command and args run as a local process (the image is ignored: the command must
exist on this machine), with the pod's environment resolved from literals, Secrets, ConfigMaps
and the downward API. The pod's status tells the truth: Running with a loopback pod IP, Ready when
the readiness probe (if any) answers, and the real exit code when the process ends, so Jobs
complete or fail as they would on a real node. Deleting the pod stops the process first (SIGTERM,
then SIGKILL after the grace period), then removes the pod, as a kubelet does.

Volumes: emptyDir, Secret and ConfigMap volumes are mounted where the pod asks, inside a private
mount namespace of the process (needs root; the mount point is created if missing).

This is scaffolding for tests and the demo; it is not part of the operator.
Run: python -m devstack.podexec --kubeconfig PATH --state-dir DIR
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import logging
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from devstack.processes import die_with_parent

EXEC_LABEL = "devstack.walwarden.io/exec"
# Exec pods get their own loopback address, so servers in them bind like pods on a real network.
POD_IP_NETWORK = ipaddress.ip_network("127.2.0.0/16")
TERMINATION_MESSAGE_LINES = 20
log = logging.getLogger("podexec")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigError(Exception):
    """The pod cannot start yet (missing Secret key, ...): reported like a kubelet does."""


# -- environment --------------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ escapes, others stay."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, value)


class EnvResolver:
    def __init__(self, core: client.CoreV1Api, pod, pod_ip: str):
        self.core, self.pod, self.pod_ip = core, pod, pod_ip
        self.namespace = pod.metadata.namespace
        self._secrets: dict[str, dict[str, str] | None] = {}
        self._config_maps: dict[str, dict[str, str] | None] = {}

    def secret(self, name: str) -> dict[str, str] | None:
        if name not in self._secrets:
            try:
                data = self.core.read_namespaced_secret(name, self.namespace).data or {}
                self._secrets[name] = {k: base64.b64decode(v).decode() for k, v in data.items()}
            except ApiException as error:
                if error.status != 404:
                    raise
                self._secrets[name] = None
        return self._secrets[name]

    def config_map(self, name: str) -> dict[str, str] | None:
        if name not in self._config_maps:
            try:
                self._config_maps[name] = self.core.read_namespaced_config_map(name, self.namespace).data or {}
            except ApiException as error:
                if error.status != 404:
                    raise
                self._config_maps[name] = None
        return self._config_maps[name]

    def _lookup(self, kind: str, source, optional: bool) -> str | None:
        data = self.secret(source.name) if kind == "Secret" else self.config_map(source.name)
        if data is None or source.key not in data:
            if optional:
                return None
            missing = (
                f'{kind.lower()} "{source.name}" not found'
                if data is None
                else f"couldn't find key {source.key} in {kind} {self.namespace}/{source.name}"
            )
            raise ConfigError(missing)
        return data[source.key]

    def field(self, path: str) -> str:
        meta, spec = self.pod.metadata, self.pod.spec
        simple = {
            "metadata.name": meta.name,
            "metadata.namespace": meta.namespace,
            "metadata.uid": meta.uid,
            "spec.nodeName": spec.node_name,
            "spec.serviceAccountName": spec.service_account_name,
            "status.podIP": self.pod_ip,
            "status.hostIP": "127.0.0.1",
        }
        if path in simple:
            return simple[path] or ""
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return ((meta.labels if match.group(1) == "labels" else meta.annotations) or {}).get(match.group(2), "")
        raise ConfigError(f"fieldRef {path} is not supported by the local pod executor")

    def resolve(self, container) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.env_from or []:
            prefix = source.prefix or ""
            if source.secret_ref:
                data = self.secret(source.secret_ref.name)
                if data is None and not source.secret_ref.optional:
                    raise ConfigError(f'secret "{source.secret_ref.name}" not found')
            else:
                data = self.config_map(source.config_map_ref.name)
                if data is None and not source.config_map_ref.optional:
                    raise ConfigError(f'configmap "{source.config_map_ref.name}" not found')
            env.update({prefix + k: v for k, v in (data or {}).items()})
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            source = var.value_from
            if source.secret_key_ref:
                value = self._lookup("Secret", source.secret_key_ref, bool(source.secret_key_ref.optional))
            elif source.config_map_key_ref:
                value = self._lookup("ConfigMap", source.config_map_key_ref, bool(source.config_map_key_ref.optional))
            elif source.field_ref:
                value = self.field(source.field_ref.field_path)
            else:
                raise ConfigError(f"env {var.name}: only secretKeyRef, configMapKeyRef and fieldRef are supported")
            if value is not None:
                env[var.name] = value
        return env

    def volume_files(self, volume) -> dict[str, str] | None:
        """Files of a Secret or ConfigMap volume; None for an emptyDir."""
        if volume.empty_dir is not None:
            return None
        if volume.secret is not None:
            data = self.secret(volume.secret.secret_name)
            if data is None and not volume.secret.optional:
                raise ConfigError(f'secret "{volume.secret.secret_name}" not found')
            items = volume.secret.items
        elif volume.config_map is not None:
            data = self.config_map(volume.config_map.name)
            if data is None and not volume.config_map.optional:
                raise ConfigError(f'configmap "{volume.config_map.name}" not found')
            items = volume.config_map.items
        else:
            raise ConfigError(f"volume {volume.name}: only emptyDir, secret and configMap are supported")
        data = data or {}
        if items:
            return {item.path: data[item.key] for item in items if item.key in data}
        return dict(data)


# -- one running pod ------------------------------------------------------------------------------


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    pod_ip: str
    workdir: Path
    restart_policy: str
    grace_seconds: int
    process: subprocess.Popen | None = None
    started_at: str = ""
    restart_count: int = 0
    ready: bool = False
    stopping: bool = False
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log_path(self) -> Path:
        return self.workdir / "container.log"


class Executor:
    def __init__(self, core: client.CoreV1Api, state_dir: Path):
        self.core = core
        self.state_dir = state_dir
        self.runs: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        # A random start: two local stacks on one machine must not hand out the same pod IPs.
        self._next_ip = random.randint(1, POD_IP_NETWORK.num_addresses // 2)
        self.base_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

    # The watch loop and periodic resync both funnel into `observe`.
    def serve(self) -> None:
        threading.Thread(target=self._resync_forever, daemon=True).start()
        while True:
            try:
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, label_selector=EXEC_LABEL, timeout_seconds=300
                )
                for event in stream:
                    self.observe(event["object"], deleted=event["type"] == "DELETED")
            except Exception as error:  # the API server restarting must not kill the executor
                log.warning("watch interrupted: %s", error)
                time.sleep(1)

    def _resync_forever(self) -> None:
        while True:
            time.sleep(3)
            try:
                self.resync_once()
            except Exception as error:
                log.warning("resync failed: %s", error)

    def resync_once(self) -> None:
        """Start what the watch missed; stop the runs whose pod is gone. Only runs known before the
        list was asked for can be judged gone by it: one the watch started meanwhile is not in
        that list yet, and stopping it would start its pod's process a second time."""
        with self.lock:
            known = set(self.runs)
        pods = self.core.list_pod_for_all_namespaces(label_selector=EXEC_LABEL).items
        seen = {pod.metadata.uid for pod in pods}
        for pod in pods:
            self.observe(pod)
        for uid in known - seen:
            with self.lock:
                run = self.runs.get(uid)
            if run is not None:
                self._stop(run, remove_pod=False)

    def observe(self, pod, deleted: bool = False) -> None:
        uid = pod.metadata.uid
        with self.lock:
            run = self.runs.get(uid)
            if deleted or pod.metadata.deletion_timestamp:
                if run and not run.stopping:
                    run.stopping = True
                    threading.Thread(target=self._stop, args=(run, not deleted), daemon=True).start()
                elif not run and not deleted:
                    self._remove_pod(pod.metadata.namespace, pod.metadata.name, uid)
                return
            if run or not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
                return
            run = self._new_run(pod)
            self.runs[uid] = run
        threading.Thread(target=self._start, args=(run, pod), daemon=True).start()

    def _new_run(self, pod) -> PodRun:
        pod_ip = str(POD_IP_NETWORK.network_address + self._next_ip)
        self._next_ip += 1
        workdir = self.state_dir / f"{pod.metadata.namespace}_{pod.metadata.name}_{pod.metadata.uid[:8]}"
        workdir.mkdir(parents=True, exist_ok=True)
        grace = pod.spec.termination_grace_period_seconds
        return PodRun(
            pod.metadata.namespace,
            pod.metadata.name,
            pod.metadata.uid,
            pod_ip,
            workdir,
            pod.spec.restart_policy or "Always",
            30 if grace is None else min(grace, 30),
        )

    # -- starting ------------------------------------------------------------------------------

    def _start(self, run: PodRun, pod) -> None:
        container = pod.spec.containers[0]
        try:
            argv, env = self._command(run, pod, container)
        except ApiException as error:  # the API server hiccuped: forget the run, resync retries
            log.warning("%s/%s not started: %s", run.namespace, run.name, error.reason)
            with self.lock:
                self.runs.pop(run.uid, None)
            return
        except ConfigError as error:
            # Like a kubelet: stay Pending with a reason, and try again on the next resync.
            self._patch_status(
                run,
                {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": container.name,
                            "image": container.image or "",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}},
                        }
                    ],
                },
            )
            with self.lock:
                self.runs.pop(run.uid, None)
            return
        self._spawn(run, argv, env)
        self._patch_status(run, self._running_status(run, container, pod))
        threading.Thread(target=self._probe_readiness, args=(run, pod, container), daemon=True).start()
        self._wait(run, pod, container, argv, env)

    def _command(self, run: PodRun, pod, container) -> tuple[list[str], dict[str, str]]:
        if not container.command:
            raise ConfigError("the local pod executor needs an explicit command (it cannot read an image's entrypoint)")
        resolver = EnvResolver(self.core, pod, run.pod_ip)
        env = {
            "PATH": self.base_path,
            "HOME": str(run.workdir),
            "LANG": "C.UTF-8",
            "HOSTNAME": pod.metadata.name,
            "PYTHONUNBUFFERED": "1",
        }
        # The "image" is this machine's Python: with the code under test, as the executor has it on
        # its path (a worktree's, not whatever checkout the venv was installed from).
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update(resolver.resolve(container))
        argv = [expand(part, env) for part in [*container.command, *(container.args or [])]]
        if shutil.which(argv[0], path=env["PATH"]) is None:
            raise ConfigError(f"command {argv[0]!r} not found on this machine's PATH")
        mounts = self._prepare_volumes(run, pod, container, resolver)
        if mounts:
            argv = self._in_mount_namespace(mounts, argv)
        return argv, env

    def _prepare_volumes(self, run: PodRun, pod, container, resolver: EnvResolver) -> list[tuple[Path, str]]:
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts = []
        for mount in container.volume_mounts or []:
            if mount.mount_path.startswith("/var/run/secrets/kubernetes.io"):
                continue  # the service-account token: no pod here talks to the API server
            volume = volumes.get(mount.name)
            if volume is None:
                raise ConfigError(f"volumeMount {mount.name} has no volume")
            files = resolver.volume_files(volume)
            if self._would_hide_the_stack(run, mount.mount_path):
                if files is None:
                    # An emptyDir at e.g. /tmp would hide the clone, the venv or the pod's own
                    # directory when they live there: the process uses the host directory instead.
                    log.info(
                        "%s/%s: emptyDir %s not mounted (it would hide this machine's %s)",
                        run.namespace,
                        run.name,
                        mount.name,
                        mount.mount_path,
                    )
                    continue
                raise ConfigError(f"volume {mount.name} at {mount.mount_path} would hide the local stack's files")
            host_dir = run.workdir / "volumes" / mount.name
            host_dir.mkdir(parents=True, exist_ok=True)
            for relative, content in (files or {}).items():
                target = host_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                target.chmod(0o400)
            mounts.append((host_dir, mount.mount_path))
        return mounts

    @staticmethod
    def _would_hide_the_stack(run: PodRun, mount_path: str) -> bool:
        target = Path(mount_path)
        needed = [run.workdir, Path(sys.prefix), Path(sys.executable).resolve(), Path(__file__).resolve()]
        return any(path == target or target in path.parents for path in needed)

    @staticmethod
    def _in_mount_namespace(mounts: list[tuple[Path, str]], argv: list[str]) -> list[str]:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise ConfigError("volumes need root and unshare(1) for a private mount namespace")
        script = "; ".join(
            f"mkdir -p {shlex.quote(path)} && mount --bind {shlex.quote(str(host))} {shlex.quote(path)}"
            for host, path in mounts
        )
        return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", f'{script}; exec "$@"', "sh", *argv]

    def _spawn(self, run: PodRun, argv: list[str], env: dict[str, str]) -> None:
        with open(run.log_path, "ab") as log_file:
            run.process = subprocess.Popen(
                argv,
                env=env,
                cwd=run.workdir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        run.started_at = now()
        log.info("started %s/%s pid %d: %s", run.namespace, run.name, run.process.pid, argv[0])

    def _running_status(self, run: PodRun, container, pod, ready: bool = False) -> dict:
        return {
            "phase": "Running",
            "podIP": run.pod_ip,
            "podIPs": [{"ip": run.pod_ip}],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": run.started_at,
            "conditions": self._conditions(ready, scheduled=True),
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image or "",
                    "imageID": "",
                    "ready": ready,
                    "started": True,
                    "restartCount": run.restart_count,
                    "state": {"running": {"startedAt": run.started_at}},
                }
            ],
        }

    @staticmethod
    def _conditions(ready: bool, scheduled: bool = True) -> list[dict]:
        status = "True" if ready else "False"
        return [
            {"type": "PodScheduled", "status": "True" if scheduled else "False", "lastTransitionTime": now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now()},
            {"type": "Ready", "status": status, "lastTransitionTime": now()},
        ]

    def _probe_readiness(self, run: PodRun, pod, container) -> None:
        probe = container.readiness_probe
        if probe is None or probe.http_get is None:
            if probe is not None:
                log.warning("%s/%s: only httpGet readiness probes are run; treating as ready", run.namespace, run.name)
            self._set_ready(run, container, pod, True)
            return
        time.sleep(probe.initial_delay_seconds or 0)
        port = probe.http_get.port
        if isinstance(port, str) and not port.isdigit():
            port = next(p.container_port for p in container.ports or [] if p.name == port)
        url = f"http://{probe.http_get.host or run.pod_ip}:{port}{probe.http_get.path or '/'}"
        period = probe.period_seconds or 1
        while not run.stopping and not run.finished and run.process and run.process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=probe.timeout_seconds or 1) as response:
                    ok = 200 <= response.status < 400
            except OSError:
                ok = False
            if ok != run.ready:
                self._set_ready(run, container, pod, ok)
            time.sleep(min(period, 1) if not run.ready else period)

    def _set_ready(self, run: PodRun, container, pod, ready: bool) -> None:
        with run.lock:
            if run.stopping or run.finished or run.process is None or run.process.poll() is not None:
                return
            run.ready = ready
            self._patch_status(run, self._running_status(run, container, pod, ready))

    # -- exiting -------------------------------------------------------------------------------

    def _wait(self, run: PodRun, pod, container, argv, env) -> None:
        while True:
            code = run.process.wait()
            finished_at = now()
            with run.lock:
                run.ready = False
                if run.stopping:
                    return
                restart = run.restart_policy == "Always" or (run.restart_policy == "OnFailure" and code != 0)
                terminated = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": run.started_at,
                    "finishedAt": finished_at,
                }
                if code != 0:
                    # terminationMessagePolicy FallbackToLogsOnError, as the operator reads it.
                    terminated["message"] = "\n".join(
                        run.log_path.read_text(errors="replace").splitlines()[-TERMINATION_MESSAGE_LINES:]
                    )
                if not restart:
                    run.finished = True
                    self._patch_status(
                        run,
                        {
                            "phase": "Succeeded" if code == 0 else "Failed",
                            "conditions": self._conditions(False),
                            "containerStatuses": [
                                {
                                    "name": container.name,
                                    "image": container.image or "",
                                    "imageID": "",
                                    "ready": False,
                                    "started": False,
                                    "restartCount": run.restart_count,
                                    "state": {"terminated": terminated},
                                }
                            ],
                        },
                    )
                    log.info("%s/%s exited %d", run.namespace, run.name, code)
                    return
            log.info("%s/%s exited %d; restarting (policy %s)", run.namespace, run.name, code, run.restart_policy)
            time.sleep(min(2**run.restart_count, 10))  # a kubelet's crash-loop back-off, shortened
            with run.lock:
                if run.stopping:
                    return
                run.restart_count += 1
                self._spawn(run, argv, env)
                self._patch_status(run, self._running_status(run, container, pod))
            threading.Thread(target=self._probe_readiness, args=(run, pod, container), daemon=True).start()

    def _stop(self, run: PodRun, remove_pod: bool) -> None:
        with run.lock:
            run.stopping = True
            process = run.process
        if process and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(run.grace_seconds)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            except ProcessLookupError:
                pass
            log.info("stopped %s/%s", run.namespace, run.name)
        with self.lock:
            self.runs.pop(run.uid, None)
        if remove_pod:
            self._remove_pod(run.namespace, run.name, run.uid)

    def _remove_pod(self, namespace: str, name: str, uid: str) -> None:
        # The process is gone: finish the deletion, as a kubelet does once containers stopped.
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("deleting %s/%s failed: %s", namespace, name, error.reason)

    def _patch_status(self, run: PodRun, status: dict) -> None:
        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, {"status": status})
        except ApiException as error:
            if error.status != 404:
                log.warning("status of %s/%s not written: %s", run.namespace, run.name, error.reason)

    def stop_all(self) -> None:
        """The executor is stopping (the cluster is going down): no pod process may outlive it."""
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.stopping = True
            if run.process and run.process.poll() is None:
                try:
                    os.killpg(run.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    executor = Executor(client.CoreV1Api(), args.state_dir)

    def terminate(signum, frame):
        executor.stop_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    executor.serve()


if __name__ == "__main__":
    main()
