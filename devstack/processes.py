"""Starting and stopping the local stack's long-running processes, and small helpers they share."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    # If the test session is killed, its servers must not outlive it and hold ports or files.
    # Linux sends the signal when the *thread* that forked the child ends, not the process: start
    # children from a thread that lives as long as the session (see _SPAWNER).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


# Every ManagedProcess is forked from this one long-lived thread, so that a process started from a
# short-lived thread (an HTTP handler's, a watch callback's) is not sent SIGTERM when that thread ends.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack-spawner")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.2,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    detail = on_timeout() if on_timeout else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def run_until_interrupted(check_alive: Callable[[], None]) -> None:
    """For a stack started by hand: keep it up until Ctrl-C; raise if one of its processes exits."""
    try:
        while True:
            time.sleep(5)
            check_alive()
    except KeyboardInterrupt:
        pass


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_ok(url: str, process: ManagedProcess) -> bool:
    """True when `url` answers 200; raises if the process that should serve it has exited."""
    process.check_alive()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


# A process sent SIGKILL is reaped as soon as the kernel has torn it down: quick, but on a busy
# machine not within a fraction of a second. This bound is for a process that never goes (stuck
# in uninterruptible sleep), never a deadline a slow machine could miss.
REAP_SECONDS = 60


class ManagedProcess:
    """A child process (the leader of its own process group) with its output in a log file.

    stop(): SIGTERM to the group, a grace period, then SIGKILL. kill(): SIGKILL at once, a crash.
    Both return once the process was reaped."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = _SPAWNER.submit(
                subprocess.Popen,
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
            ).result()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = self.popen.returncode if self.popen else None
            raise RuntimeError(f"{self.name} exited ({code}); last log lines:\n{log_tail(self.log_path)}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the process group; after `timeout` seconds of grace, SIGKILL. Returns once
        the process was reaped, however slow the machine."""
        if not self.alive():
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole process group at once (a crash: nothing gets to clean up), then
        wait until the process was reaped."""
        if not self.alive():
            return
        # Not reaped yet (alive() just said so; only we reap it), so its pid, and with it the
        # group id, cannot have been reused by an unrelated process.
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(REAP_SECONDS)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{self.name} (pid {self.popen.pid}) was sent SIGKILL but is still not gone after "
                f"{REAP_SECONDS}s: stuck in uninterruptible sleep (state D)?"
            ) from None

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass  # the whole group is gone already; wait() still reaps the leader
