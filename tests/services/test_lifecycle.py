"""The stack's lifetime with real processes: `iznet up` restarts a service killed under load (calls fail only
while it is down), drains on SIGTERM (every call started before the signal completes), gives up with a non-zero
status after too many restarts, and takes its processes with it when it is SIGKILLed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from iznet.client import GatewayClient, GatewayError
from services.loopback import process_tree
from services.stack import Stack, StackConfig
from tests.services.conftest import MODEL

pytestmark = pytest.mark.slow
KEY = "lifecycle-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


class Load:
    """Label calls from ``workers`` threads until stopped; each call's start, end and outcome."""

    def __init__(self, address: str, photo: bytes, workers: int = 6):
        self.address, self.photo, self.calls = address, photo, []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def _run(self):
        with GatewayClient(self.address, api_key=KEY, timeout=30) as gw:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    gw.label(self.photo)
                    outcome = "OK"
                except GatewayError as exc:
                    outcome = exc.code
                with self.lock:
                    self.calls.append((start, time.monotonic(), outcome))
                if outcome != "OK":
                    time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        return list(self.calls)


def _pid_of(parent: int, module: str) -> int:
    for pid in process_tree([parent]):
        try:
            if module in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0"):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no {module} under {parent}")


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_iznet_up_restarts_a_killed_service_and_drains_on_sigterm(world, tmp_path):
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "IZNET_UP_API_KEYS": KEY}
    up = subprocess.Popen([sys.executable, "-m", "iznet", "up", "--store", str(world.store.root), "--model", MODEL,
                           "--detector", "haar", "--log-dir", str(logs), "--drain-timeout", "20",
                           "--max-restarts", "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    out: list[str] = []
    threading.Thread(target=lambda: [out.append(line) for line in up.stdout], daemon=True).start()
    try:
        _wait(lambda: any(line.startswith("ready:") for line in out) or up.poll() is not None, 300,
              "iznet up not ready")
        assert up.poll() is None, "".join(out)
        gateway = re.search(r"--server (\S+)", next(line for line in out if line.startswith("ready:"))).group(1)
        photo = world.groups(2)[0]

        # 1. SIGKILL the embedding service under load: calls fail only while it is down, then succeed again.
        load = Load(gateway, photo)
        time.sleep(3)
        emb = _pid_of(up.pid, "services.embedding")
        killed = time.monotonic()
        os.kill(emb, signal.SIGKILL)
        _wait(lambda: any(s > killed + 0.5 and o == "OK" for s, _, o in load.calls), 90, "no recovery")
        time.sleep(3)
        calls = load.finish()
        failed = [(s, o) for s, _, o in calls if o != "OK"]
        recovered = min(s for s, _, o in calls if s > killed and o == "OK") - killed
        print(f"restart: {len(failed)} of {len(calls)} calls failed during the outage, recovered in "
              f"{recovered:.1f}s")
        assert {o for _, o in failed} <= {"UNAVAILABLE"}, failed
        assert all(s >= killed - 1 for s, _ in failed), "a call failed before the service was killed"
        last_failure = max((s for s, _ in failed), default=killed)
        assert all(o == "OK" for s, _, o in calls if s > last_failure)  # once back, no call fails
        assert recovered < 60
        log = (logs / "embedding.log").read_text()
        assert "supervisor: embedding exited with status -9; restart 1" in log
        assert "supervisor: embedding restarted (restart 1)" in log
        ready = [json.loads(line[6:]) for line in log.splitlines() if line.startswith("READY ")][-1]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ready['metrics_port']}/metrics", timeout=5).read()
        assert b'iznet_restarts{service="embedding"} 1.0' in metrics
        assert up.poll() is None  # the others kept running, `iznet up` too

        # 2. SIGTERM with calls in flight: every call started before the signal completes.
        load = Load(gateway, photo, workers=8)
        time.sleep(4)
        signalled = time.monotonic()
        up.send_signal(signal.SIGTERM)
        assert up.wait(120) == 0, "".join(out)
        calls = load.finish()
        before = [(s, e, o) for s, e, o in calls if s < signalled]
        in_flight = [c for c in before if c[1] > signalled]
        print(f"drain: {len(in_flight)} call(s) in flight at SIGTERM, "
              f"{sum(o == 'OK' for *_, o in in_flight)} completed; {len(calls) - len(before)} refused after")
        assert len(in_flight) >= 4
        assert all(o == "OK" for *_, o in before), [c for c in before if c[2] != "OK"]
        assert "gateway: drained 1 replica(s)" in (logs / "gateway.log").read_text()
        assert "stopped: gateway (0), detection (0), embedding (0), gallery (0)" in "".join(out)
    finally:
        if up.poll() is None:
            up.kill()


def test_the_supervisor_gives_up_after_too_many_restarts(world, tmp_path):
    st = Stack(StackConfig(store=world.store.root, model=MODEL, detector="haar", log_dir=tmp_path, max_restarts=2,
                           restart_window_s=60, backoff_s=0.1))
    st.start_service("gallery")
    said, stopping = [], threading.Event()

    failed = []

    def killer():  # kill the gallery service each time it is up again
        try:
            for _ in range(3):
                # A restart puts its new Proc in place before it launches: wait for it to be up and ready.
                _wait(lambda: st.procs["gallery"].alive() and st.procs["gallery"].info, 60, "gallery not restarted")
                proc = st.procs["gallery"]
                os.kill(proc.popen.pid, signal.SIGKILL)
                _wait(lambda: st.procs["gallery"] is not proc or not proc.alive(), 60, "not dead")
                time.sleep(0.5)
        except BaseException as exc:  # noqa: BLE001 - end the supervision with the reason, do not hang
            failed.append(exc)
            stopping.set()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        reason = st.supervise(stopping, say=said.append, poll_s=0.1)  # on this (the main) thread, as iznet up
    finally:
        stopping.set()
        st.stop()
    t.join(10)
    assert not failed, failed
    assert reason is not None and "gallery died 3 times within 60s (last exit status -9); giving up" in reason
    assert [line.split(";")[0] for line in said if "exited" in line] == \
        ["gallery exited with status -9"] * 2
    assert st.restarts == {"gallery": 2}
    assert "supervisor: gallery died 3 times" in (tmp_path / "gallery.log").read_text()


def test_services_die_with_a_sigkilled_supervisor(world, tmp_path):
    script = (f"import sys, time\nsys.path.insert(0, {str(REPO)!r})\nfrom services.stack import Stack, StackConfig\n"
              f"st = Stack(StackConfig(store={str(world.store.root)!r}, model={MODEL!r}, detector='haar', "
              f"log_dir={str(tmp_path)!r}))\n"
              "for n in ('detection', 'gallery'):\n    st.start_service(n)\n"
              "print('PIDS', *st.pids(), flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line.startswith("PIDS"), line
        pids = [int(p) for p in line.split()[1:]]
        assert len(_alive(pids)) == 2
        parent.kill()  # SIGKILL: no chance to stop anything
        parent.wait()
        _wait(lambda: not _alive(pids), 30, f"orphans left: {_alive(pids)}")
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _alive(locals().get("pids", [])):
            os.kill(pid, signal.SIGKILL)
