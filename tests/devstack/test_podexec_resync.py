"""The local pod executor's resync never stops a pod's process that the watch started while the
resync was listing pods (it used to, and the pod's process then ran a second time)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from devstack import podexec


def a_run(uid: str, tmp_path: Path) -> podexec.PodRun:
    return podexec.PodRun("ns", f"pod-{uid}", uid, "127.2.0.9", tmp_path, "Never", 30)


def test_a_run_the_watch_started_during_the_list_is_not_taken_for_a_gone_pod(tmp_path, monkeypatch):
    stopped: list[str] = []
    executor = podexec.Executor(core=None, state_dir=tmp_path)  # type: ignore[arg-type]
    executor.runs["gone"] = a_run("gone", tmp_path)  # its pod was deleted: not in the list

    def list_pods(label_selector: str):
        # While the API server answers, the watch starts a new pod: the list does not show it yet.
        executor.runs["new"] = a_run("new", tmp_path)
        return SimpleNamespace(items=[])

    executor.core = SimpleNamespace(list_pod_for_all_namespaces=list_pods)  # type: ignore[assignment]
    monkeypatch.setattr(executor, "_stop", lambda run, remove_pod: stopped.append(run.uid))
    executor.resync_once()
    assert stopped == ["gone"]
