"""The chart's containers really start: take the command, arguments and environment the chart renders for the
detection, embedding, gallery and gateway containers, run them as local processes (loopback and free ports in
place of the pod network and the fixed container ports, a temporary store in place of the volume), seed the
store with deploy/kind/seed_standin.py exactly as `make deploy-local` does, check each service with the
standard gRPC health service (what the chart's probes call), and label a photo through the gateway.

This is what `make deploy-local` does on kind, minus Kubernetes."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services import roles
from iznet.ports import free_port
from tests.chart.conftest import REPO, one, pod_spec, render

pytestmark = pytest.mark.slow

SERVICES = ("detection", "embedding", "gallery")


def _local(container: dict, store: Path, ports: dict[str, int], metrics: int) -> tuple[list[str], dict]:
    """The container's process for this machine: same command, arguments and environment, local addresses."""
    assert container["command"][:1] == ["python"]
    argv = [sys.executable, *container["command"][1:]]
    for a in container["args"]:
        k, eq, v = a.partition("=")
        if k == "--port":
            v = str(ports[container["args"][0]])
        elif k == "--metrics-port":
            v = str(metrics)
        elif k == "--host":
            v = "127.0.0.1"
        elif container["args"][0] == "gateway" and k in {f"--{s}" for s in SERVICES}:  # Service addresses
            v = f"127.0.0.1:{ports[k[2:]]}"
        argv.append(f"{k}={v}" if eq else a)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    env["IZNET_STORE"] = str(store)
    return argv, env


def _read_ready(proc: subprocess.Popen, timeout: float, log: Path) -> dict:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if line.startswith("READY "):
            return json.loads(line[6:])
    raise AssertionError(f"{proc.args[:5]} did not get ready (exit {proc.poll()}): {log.read_text()[-2000:]}")


class _Stack:
    """The rendered containers of some roles, running as local processes."""

    def __init__(self, helm, tmp_path: Path):
        self.docs = render(helm, "-f", str(REPO / "deploy" / "kind" / "values.yaml"))
        self.tmp, self.store, self.logs = tmp_path, tmp_path / "store", tmp_path / "logs"
        self.logs.mkdir()
        self.ports = {name: free_port() for name in (*SERVICES, "gateway")}
        self.procs: list[subprocess.Popen] = []

    def seed(self) -> None:
        """deploy/kind/seed_standin.py, as `make deploy-local` runs it inside the cpu worker."""
        seeded = subprocess.run([sys.executable, str(REPO / "deploy" / "kind" / "seed_standin.py")], text=True,
                                capture_output=True, env={**os.environ, "IZNET_STORE": str(self.store)}, timeout=300)
        assert seeded.returncode == 0, seeded.stderr
        assert "galleries ['default']" in seeded.stdout and "dlib-resnet" in seeded.stdout

    def start(self, name: str, timeout: float) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        c = pod_spec(one(self.docs, "Deployment", f"rel-iznet-{name}"))["containers"][0]
        assert c["args"][0] == name
        argv, env = _local(c, self.store, self.ports, free_port())
        log = self.logs / f"{name}.log"
        self.procs.append(subprocess.Popen(argv, env=env, cwd=self.tmp, text=True, stdout=subprocess.PIPE,
                                           stderr=open(log, "w")))
        ready = _read_ready(self.procs[-1], timeout, log)
        assert ready["port"] == self.ports[name]
        if roles.ROLES[name].probe == "grpc":  # what the chart's grpc: probes ask
            with grpc.insecure_channel(f"127.0.0.1:{self.ports[name]}") as ch:
                got = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                assert got.status == health_pb2.HealthCheckResponse.SERVING

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def stack(helm, tmp_path_factory):
    """The store seeded and the three services started from their rendered containers (once per module)."""
    s = _Stack(helm, tmp_path_factory.mktemp("chart-run"))
    try:
        s.seed()
        for name in SERVICES:
            s.start(name, 90)  # each answers the gRPC health check its probes make
        yield s
    finally:
        s.stop()


def test_rendered_service_containers_start_and_answer_their_probes(stack):
    assert [p.poll() for p in stack.procs] == [None] * len(SERVICES)


def test_rendered_gateway_labels_a_photo(stack):
    """The whole path deploy-local.sh ends with: a held-out photo through the gateway to the three services."""
    stack.start("gateway", 240)
    from iznet.client import GatewayClient
    from iznet.synthetic import make_people

    make_people(stack.tmp / "photos", people=4, photos=12, seed=0)
    person = sorted((stack.tmp / "photos").iterdir())[0]
    photo = sorted(person.iterdir())[8]  # not enrolled by seed_standin.py
    with GatewayClient(f"127.0.0.1:{stack.ports['gateway']}") as gw:
        result = gw.label(photo.read_bytes(), image_id=photo.name)
    assert not result.error, result.error
    assert result.faces, "no face found in a generated portrait"
    assert result.gallery.name == "default"
    people = {p.name for p in (stack.tmp / "photos").iterdir()}
    assert result.faces[0].name in people | {"unknown"}, [(f.name, f.score) for f in result.faces]
