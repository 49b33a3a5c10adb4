"""The network namespace Argo CD's application controller runs in: a listener on every interface
inside is unreachable from the host, and forwarded host ports are reachable from inside."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading

import pytest

from devstack.netns import LoopbackNamespace
from devstack.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def netns(tmp_path):
    namespace = LoopbackNamespace(tmp_path / "netns.log").start()
    yield namespace
    namespace.stop()


def test_only_loopback_inside_and_nothing_inside_is_reachable_from_the_host(netns):
    interfaces = subprocess.run(netns.wrap(["ip", "-o", "link"]), capture_output=True, text=True, check=True)
    assert [line.split(":")[1].strip() for line in interfaces.stdout.splitlines()] == ["lo"]
    port = free_port()
    listener = netns.run(lambda: socket.create_server(("0.0.0.0", port)))
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        listener.close()


def test_a_forwarded_host_port_answers_inside(netns):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        netns.forward(port)
        fetch = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/').status)"
        inside = subprocess.run(netns.wrap(["python3", "-c", fetch]), capture_output=True, text=True, timeout=60)
        assert inside.stdout.strip() == "200", inside.stderr
    finally:
        server.shutdown()
