"""Jobs through a real Redis and real Celery worker processes: submit, follow, finish; a worker killed
mid-job; cancellation; one re-index for the same (gallery, model) however often it is submitted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_py

from iznet.store import ArtifactStore
from training.jobs.client import Jobs

pytestmark = pytest.mark.timeout(180)

PHOTOS = 64  # the `photos` fixture: 8 generated people x 8 photos


def iznet(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iznet", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def manifest_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def staging_manifest(store: Path, name: str, job_id: str) -> Path:
    return store / "datasets" / name / f".staging-job-{job_id}" / "manifest.jsonl"


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_submit_follow_and_finish_a_dataset_job(env, store, photos, start_worker):
    worker = start_worker()
    assert "iznet worker ready: queues cpu,gpu" in worker.text()

    run = iznet("jobs", "submit", "dataset", str(photos), "faces", "--set", "folds=2", "--set", "pairs_per_fold=5",
                "--follow", env=env)
    assert run.returncode == 0, run.stderr + run.stdout
    job_id = run.stdout.split("submitted dataset job ")[1].split()[0]
    assert "photos" in run.stderr and f"{PHOTOS}/{PHOTOS}" in run.stderr  # the progress bar followed the job to its end
    assert "SUCCESS" in run.stdout and "output dataset: datasets/faces/1" in run.stdout

    # The result links to its artifact, published atomically as version 1 and current.
    st = json.loads(iznet("jobs", "status", job_id, "--json", env=env).stdout)
    assert st["state"] == "SUCCESS" and st["kind"] == "dataset" and st["attempts"] == 1
    ds = ArtifactStore(store).current("datasets", "faces")
    assert Path(st["outputs"]["path"]) == ds and (ds / "dataset.json").is_file()
    assert manifest_lines(ds / "manifest.jsonl") == PHOTOS
    assert st["metrics"]["processed"] == PHOTOS and st["metrics"]["counts"]["kept"] > PHOTOS // 2
    assert not list((store / "datasets" / "faces").glob(".staging-*"))

    # The job record in the store: inputs, attempts, outputs, metrics.
    record = json.loads(Path(st["record"]).read_text())
    assert record["params"]["src"] == str(photos) and record["params"]["config"]["folds"] == 2
    assert record["state"] == "SUCCESS" and record["outputs"]["dataset"] == "datasets/faces/1"
    assert record["attempts"][0]["ended"] == "succeeded" and record["metrics"]["by_split"]["train"] > 0

    assert "iznet worker device: CPU only" in worker.text()  # says which device it uses (no GPU here)
    listed = iznet("jobs", "list", env=env)
    assert job_id in listed.stdout and "SUCCESS" in listed.stdout and "datasets/faces/1" in listed.stdout

    # Growing the dataset with the same photos processes nothing and publishes version 2.
    again = iznet("jobs", "submit", "dataset", str(photos), "faces", "--set", "folds=2", "--set", "pairs_per_fold=5",
                  "--follow", env=env)
    assert again.returncode == 0, again.stderr
    assert '"processed": 0' in again.stdout and "datasets/faces/2" in again.stdout


def test_a_killed_worker_s_job_is_redelivered_and_resumes_from_its_checkpoint(env, store, photos, start_worker):
    jobs = Jobs()
    first = start_worker(name="doomed")
    job_id, _ = jobs.submit("dataset", {"src": str(photos), "name": "faces", "checkpoint_every": 10,
                                        "config": {"folds": 2, "pairs_per_fold": 5}})
    manifest = staging_manifest(store, "faces", job_id)
    wait_for(lambda: manifest_lines(manifest) >= 10, 60, "the first checkpoint")
    first.kill()  # SIGKILL the worker and its pool process mid-job
    recorded = manifest_lines(manifest)
    assert 10 <= recorded < PHOTOS, "the job was not killed mid-way"

    # Nobody runs it now: the status says so once the dead worker's lock has expired.
    st = wait_for(lambda: (s := jobs.status(job_id)).get("note") and s, 10, "the lost worker to be noticed")
    assert st["state"] in ("PROGRESS", "STARTED") and "worker is gone" in st["note"]

    second = start_worker(name="rescuer")
    final = jobs.wait(job_id, timeout=90)
    assert final["state"] == "SUCCESS", final
    m = final["metrics"]
    # Only what the checkpoint had not recorded was processed again: no photo twice beyond the checkpoint.
    assert m["already_recorded"] == recorded and m["processed"] == PHOTOS - recorded and m["scanned"] == PHOTOS
    ds = ArtifactStore(store).current("datasets", "faces")
    sources = [json.loads(line)["source"] for line in (ds / "manifest.jsonl").read_text().splitlines()]
    assert len(sources) == len(set(sources)) == PHOTOS
    record = json.loads(Path(final["record"]).read_text())
    assert [a["worker"].split("@")[0] for a in record["attempts"]] == ["doomed", "rescuer"]
    assert record["attempts"][0]["ended"] == "worker lost (redelivered)"
    assert "redelivered job " + job_id in second.text()
    assert ArtifactStore(store).versions("datasets", "faces") == [1]


def test_a_killed_pool_process_gives_its_job_back_at_once(env, store, photos, start_worker):
    jobs = Jobs()
    worker = start_worker()
    job_id, _ = jobs.submit("dataset", {"src": str(photos), "name": "faces", "checkpoint_every": 10})
    wait_for(lambda: manifest_lines(staging_manifest(store, "faces", job_id)) >= 10, 60, "a checkpoint")
    for pid in worker.pool_pids():
        os.kill(pid, 9)  # the process running the job dies; the worker lives and the job is rejected + requeued
    final = jobs.wait(job_id, timeout=90)
    assert final["state"] == "SUCCESS" and final["attempts"] == 2
    assert final["metrics"]["processed"] + final["metrics"]["already_recorded"] == PHOTOS


def test_cancel_stops_a_running_job_and_publishes_nothing(env, store, photos, start_worker):
    jobs = Jobs()
    start_worker()
    job_id, _ = jobs.submit("dataset", {"src": str(photos), "name": "faces", "checkpoint_every": 10})
    wait_for(lambda: jobs.status(job_id)["state"] == "PROGRESS", 60, "the job to run", poll=0.1)
    run = iznet("jobs", "cancel", job_id, env=env, timeout=30)
    assert run.returncode == 0 and "REVOKED" in run.stdout
    record = json.loads((store / "jobs" / f"{job_id}.json").read_text())
    assert record["state"] == "REVOKED" and record["attempts"][-1]["ended"] == "cancelled"
    assert ArtifactStore(store).versions("datasets", "faces") == []


def test_the_same_reindex_submitted_twice_is_one_job(env, store, tmp_path, start_worker):
    jobs = Jobs()
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights v2")
    a = iznet("jobs", "submit", "reindex", "friends", str(model), env=env)
    b = iznet("jobs", "submit", "reindex", "friends", str(model), env=env)
    job_a = a.stdout.split("submitted reindex job ")[1].split()[0]
    assert f"already job {job_a} (not submitted twice)" in b.stdout
    assert redis_py.Redis.from_url(env["IZNET_REDIS_URL"]).llen("cpu") == 1  # one message queued, not two
    model.write_bytes(b"weights v3")  # another model is another re-index
    job_c, new = jobs.submit("reindex", {"gallery": "friends", "model": str(model)},
                             key="reindex:friends:" + __import__("training.jobs.client", fromlist=["x"]).file_digest(model))
    assert new and job_c != job_a

    start_worker()
    st = jobs.wait(job_a, timeout=60)
    # Until issue 5's gallery lands, the re-index task fails with a clear reason (and may then be resubmitted).
    assert st["state"] == "FAILURE" and "not available yet: needs issue 5" in st["error"]
    again = iznet("jobs", "submit", "reindex", "friends", str(model.with_name("other.pt")), env=env)
    assert "submitted reindex job" in again.stdout


def test_user_mistakes_are_one_line_errors(env, tmp_path):
    missing = iznet("jobs", "status", "no-such-job", env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no job 'no-such-job'")
    nosrc = iznet("jobs", "submit", "dataset", str(tmp_path / "nope"), "faces", env=env)
    assert nosrc.returncode == 2 and "no such folder" in nosrc.stderr
    down = iznet("jobs", "list", env={**env, "IZNET_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 2 and "cannot reach Redis" in down.stderr and "redis-server" in down.stderr
    assert "Traceback" not in missing.stderr + nosrc.stderr + down.stderr
