"""A network namespace of the local stack's own, with nothing in it but a loopback interface.

For a process that listens on every interface with no flag to say otherwise (Argo CD's
application controller binds its metrics listener to 0.0.0.0): inside, every interface is a
loopback one, so nothing it opens is reachable from off the machine. The few loopback ports of
the host it must reach (the API server, redis, the repo server) are forwarded in, on the same
port numbers, so its flags and kubeconfig stay unchanged.

Needs root (as the pod executor's mount namespaces do), unshare(1), nsenter(1) and ip(8).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from devstack.processes import ManagedProcess, log_tail, wait_until

_CLONE_NEWNET = 0x40000000
_LOOPBACK = "127.0.0.1"
T = TypeVar("T")


class LoopbackNamespace:
    def __init__(self, log_path: Path):
        self.log_path = log_path
        # The namespace lives as long as this process sits in it.
        self.holder = ManagedProcess(
            "netns", ["unshare", "--net", "--", "sh", "-ec", "ip link set lo up; exec sleep infinity"], log_path
        )
        self._listeners: list[socket.socket] = []

    def start(self) -> LoopbackNamespace:
        missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
        if os.geteuid() != 0 or missing:
            raise RuntimeError(f"a network namespace needs root and unshare, nsenter, ip (missing: {missing})")
        self.holder.start()
        wait_until(self._ready, 60, "a network namespace with loopback up", on_timeout=self._log)
        return self

    def stop(self) -> None:
        for listener in self._listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would not
            except OSError:
                pass
            listener.close()
        self._listeners.clear()
        self.holder.stop()

    @property
    def path(self) -> str:
        popen = self.holder.popen
        if popen is None:
            raise RuntimeError("the network namespace was not started")
        return f"/proc/{popen.pid}/ns/net"

    def wrap(self, argv: list[str]) -> list[str]:
        """argv to run a command inside the namespace (nsenter execs it: same pid)."""
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def run(self, function: Callable[[], T]) -> T:
        """Call `function` on a thread of its own that has entered the namespace: sockets it opens
        are the namespace's (each thread has its own network namespace; this one then ends)."""
        result: list[T] = []
        error: list[BaseException] = []

        def inside() -> None:
            try:
                with open(self.path) as namespace:
                    if ctypes.CDLL("libc.so.6", use_errno=True).setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns({self.path})")
                result.append(function())
            except BaseException as exc:  # handed to the caller's thread
                error.append(exc)

        thread = threading.Thread(target=inside, name="netns-enter")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    def forward(self, port: int) -> None:
        """Connections to 127.0.0.1:`port` inside reach 127.0.0.1:`port` of the host."""
        listener = self.run(lambda: socket.create_server((_LOOPBACK, port)))
        self._listeners.append(listener)
        threading.Thread(target=self._accept, args=(listener, port), name=f"netns-forward-{port}", daemon=True).start()

    def _accept(self, listener: socket.socket, port: int) -> None:
        while True:
            try:
                inner, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                outer = socket.create_connection((_LOOPBACK, port), timeout=30)
                outer.settimeout(None)
            except OSError:
                inner.close()
                continue
            threading.Thread(target=_bridge, args=(inner, outer), name=f"netns-forward-{port}", daemon=True).start()

    def _ready(self) -> bool:
        self.holder.check_alive()
        try:
            if os.readlink(self.path) == os.readlink("/proc/self/ns/net"):
                return False  # unshare has not made the namespace yet
            # Binding a loopback address succeeds only once lo is up.
            self.run(lambda: socket.create_server((_LOOPBACK, 0)).close())
        except OSError:
            return False
        return True

    def _log(self) -> str:
        return "\n" + log_tail(self.log_path)


def _bridge(inner: socket.socket, outer: socket.socket) -> None:
    back = threading.Thread(target=_pump, args=(outer, inner), daemon=True)
    back.start()
    _pump(inner, outer)
    back.join()
    inner.close()
    outer.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)  # half-close: the other direction may still be talking
    except OSError:
        for end in (source, sink):  # a reset: end both directions, so the other pump returns too
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
