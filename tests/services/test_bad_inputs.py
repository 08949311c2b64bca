"""Bad input, careless or hostile, over gRPC and the CLI: each case gets its code and a clear message, and the
stored galleries are byte-identical afterwards (the gallery folders are hashed before and after).

One real stack for the module (the three services and the Ray Serve gateway on loopback, as ``iznet up``
starts them, with a write key and a read key); the CLI cases run the real command in this process.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from iznet.cli import main
from iznet.client import GatewayClient, GatewayError
from iznet.gallery import GalleryStore
from iznet.gallery import gallery as gallery_mod
from iznet.imageio import encode_image
from iznet.registry import create_embedder
from iznet.v1 import common_pb2, detection_pb2, detection_pb2_grpc, embedding_pb2, embedding_pb2_grpc
from iznet.v1 import gallery_pb2, gallery_pb2_grpc, gateway_pb2
from iznet.errors import UserInputError
from services.common import keyed_channel
from services.stack import Stack, StackConfig
from tests.services.conftest import MODEL

pytestmark = pytest.mark.slow

WRITE_KEY = "writer-key-0123456789"
READ_KEY = "reader-key-0123456789"
UNAUTH, DENIED, INVALID = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                           grpc.StatusCode.INVALID_ARGUMENT)


def tree_hash(folder: Path) -> str:
    """Every file under ``folder`` (path and bytes), but the writers' lock (its time changes, not its bytes)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".lock":
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def stack(world):
    st = Stack(StackConfig(store=world.store.root, model=MODEL, detector="haar", api_keys=[WRITE_KEY],
                           read_keys=[READ_KEY], poll_s=0.3))
    st.start()
    yield st
    st.stop()


@pytest.fixture()
def galleries(world):
    """Asserts on the way out that no stored gallery changed."""
    root = world.store.root / "galleries"
    before = tree_hash(root)
    yield root
    assert tree_hash(root) == before, "a refused call changed a stored gallery"


def gallery_stub(stack, key):
    return gallery_pb2_grpc.GalleryStub(keyed_channel(stack.procs["gallery"].address, key))


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


@pytest.fixture(scope="module")
def served(world):
    """A valid vector of the gallery's model, its digest, and a person in the gallery."""
    emb = create_embedder("baseline-lbp")
    crop = np.full((160, 160, 3), 120, np.uint8)
    vec = common_pb2.Vector(values=emb.embed([crop])[0].tolist())
    return vec, emb.version["digest"], world.people[0]


# ------------------------------------------------------------------------------------ 1. keys on every service


def write_calls(vec, digest, person):
    return {
        "Enroll": lambda s: s.Enroll(gallery_pb2.EnrollRequest(person="forged", model_digest=digest,
                                                               exemplars=[gallery_pb2.Exemplar(vector=vec)]), timeout=10),
        "RenamePerson": lambda s: s.RenamePerson(gallery_pb2.RenamePersonRequest(person=person, new_name="obama"),
                                                 timeout=10),
        "RemovePerson": lambda s: s.RemovePerson(gallery_pb2.RemovePersonRequest(person=person), timeout=10),
    }


def test_writes_without_a_key_or_with_a_wrong_one_are_unauthenticated(stack, served, galleries):
    for key in (None, "wrong-key"):
        for name, call in write_calls(*served).items():
            code, details = code_of(lambda: call(gallery_stub(stack, key)))
            assert code == UNAUTH, (name, key, code)
            assert ("missing" if key is None else "wrong") + f" API key for {name}" in details
            assert "x-api-key" in details


def test_writes_with_a_read_key_or_the_service_token_are_permission_denied(stack, served, galleries):
    for key in (READ_KEY, stack.token):  # the gateway's token may only read
        for name, call in write_calls(*served).items():
            code, details = code_of(lambda: call(gallery_stub(stack, key)))
            assert code == DENIED, (name, code)
            assert f"{name} changes state and needs an API key with write rights" in details


def test_reads_need_a_key_on_every_service(world, stack, served):
    vec, digest, _ = served
    crop = common_pb2.Image(data=encode_image(np.full((96, 96, 3), 90, np.uint8), ".png"))
    photo = common_pb2.Image(data=world.groups(2)[0])
    calls = {
        ("gallery", "Search"): lambda ch: gallery_pb2_grpc.GalleryStub(ch).Search(
            gallery_pb2.SearchRequest(vectors=[vec], model_digest=digest), timeout=10),
        ("gallery", "ListPeople"): lambda ch: gallery_pb2_grpc.GalleryStub(ch).ListPeople(
            gallery_pb2.ListPeopleRequest(), timeout=10),
        ("gallery", "GetVersion"): lambda ch: gallery_pb2_grpc.GalleryStub(ch).GetVersion(
            gallery_pb2.GetVersionRequest(), timeout=10),
        ("detection", "Detect"): lambda ch: detection_pb2_grpc.DetectionStub(ch).Detect(
            detection_pb2.DetectRequest(images=[photo]), timeout=30),
        ("detection", "GetModel"): lambda ch: detection_pb2_grpc.DetectionStub(ch).GetModel(
            common_pb2.GetModelRequest(), timeout=10),
        ("embedding", "Embed"): lambda ch: embedding_pb2_grpc.EmbeddingStub(ch).Embed(
            embedding_pb2.EmbedRequest(crops=[crop]), timeout=10),
        ("embedding", "GetModel"): lambda ch: embedding_pb2_grpc.EmbeddingStub(ch).GetModel(
            common_pb2.GetModelRequest(), timeout=10),
    }
    for (service, method), call in calls.items():
        address = stack.procs[service].address
        code, details = code_of(lambda: call(grpc.insecure_channel(address)))
        assert code == UNAUTH and f"missing API key for {method}" in details, (service, method, code)
        code, _ = code_of(lambda: call(keyed_channel(address, "not-a-key")))
        assert code == UNAUTH, (service, method)
        for key in (READ_KEY, stack.token, WRITE_KEY):  # every key may read
            call(keyed_channel(address, key))
        # health stays open: Kubernetes' probes send no metadata
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_keys_travel_by_environment_never_on_a_command_line(stack):
    for name, proc in stack.procs.items():
        cmdline = Path(f"/proc/{proc.popen.pid}/cmdline").read_bytes().decode()
        for secret in (WRITE_KEY, READ_KEY, stack.token):
            assert secret not in cmdline, name
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{proc.popen.pid}/environ").read_bytes().decode()
                       .split("\0") if "=" in e)
        if name == "gateway":  # it sends the token, and holds no key the services take for writes
            assert environ["IZNET_SERVICE_TOKEN"] == stack.token and "IZNET_API_KEYS" not in environ
            assert "RAY_AUTH_TOKEN" not in environ  # made by the gateway itself for its Ray processes
        else:
            assert environ["IZNET_API_KEYS"] == WRITE_KEY and "IZNET_SERVICE_TOKEN" not in environ
            assert environ["IZNET_READ_KEYS"].split() == [stack.token, READ_KEY]


# ------------------------------------------------------------------------- 3. bad arguments to the gallery service


def test_search_refuses_a_missing_digest_bad_thresholds_and_bad_vectors(stack, served, galleries):
    vec, digest, _ = served
    gal = gallery_stub(stack, READ_KEY)
    code, details = code_of(lambda: gal.Search(gallery_pb2.SearchRequest(vectors=[vec]), timeout=10))
    assert code == INVALID and "model_digest is required" in details
    for bad in (math.nan, -0.5, 1.5, math.inf, -math.inf):
        code, details = code_of(lambda: gal.Search(gallery_pb2.SearchRequest(vectors=[vec], model_digest=digest,
                                                                              threshold=bad), timeout=10))
        assert code == INVALID and "threshold" in details and "out of range" in details, bad
    nan_vec = common_pb2.Vector(values=[math.nan] * len(vec.values))
    code, details = code_of(lambda: gal.Search(gallery_pb2.SearchRequest(vectors=[nan_vec], model_digest=digest),
                                               timeout=10))
    assert code == INVALID and "finite" in details
    code, details = code_of(lambda: gal.Search(gallery_pb2.SearchRequest(
        vectors=[common_pb2.Vector(values=[1.0, 0.0])], model_digest=digest), timeout=10))
    assert code == INVALID and "128 values" in details
    code, details = code_of(lambda: gal.Search(gallery_pb2.SearchRequest(vectors=[vec], model_digest=digest,
                                                                          top_k=10**6), timeout=10))
    assert code == INVALID and "top_k" in details
    code, details = code_of(lambda: gal.Search(gallery_pb2.SearchRequest(vectors=[vec], model_digest="sha256:other"),
                                               timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "reindex" in details
    ok = gal.Search(gallery_pb2.SearchRequest(vectors=[vec], model_digest=digest, threshold=0.5), timeout=10)
    assert ok.matches[0].identity.threshold == pytest.approx(0.5)


def test_not_found_names_the_gallery_asked_for_not_the_servers_paths(world, stack, served, galleries):
    vec, digest, _ = served
    gal = gallery_stub(stack, READ_KEY)
    for call in (lambda: gal.Search(gallery_pb2.SearchRequest(gallery="nobody-here", vectors=[vec],
                                                              model_digest=digest), timeout=10),
                 lambda: gal.ListPeople(gallery_pb2.ListPeopleRequest(gallery="nobody-here"), timeout=10),
                 lambda: gal.GetVersion(gallery_pb2.GetVersionRequest(gallery="nobody-here"), timeout=10)):
        code, details = code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND and details == "no gallery 'nobody-here' on this server"
        assert str(world.store.root) not in details and "default" not in details  # nor its other galleries
    code, details = code_of(lambda: gal.ListPeople(gallery_pb2.ListPeopleRequest(gallery="../etc"), timeout=10))
    assert code == INVALID and "bad artifact name '../etc'" in details


def test_bad_writes_with_the_write_key_change_nothing(stack, served, galleries):
    vec, digest, person = served
    gal = gallery_stub(stack, WRITE_KEY)
    nan_vec = common_pb2.Vector(values=[math.nan] * len(vec.values))
    cases = [
        (lambda: gal.Enroll(gallery_pb2.EnrollRequest(person="x", model_digest=digest,
                                                      exemplars=[gallery_pb2.Exemplar(vector=nan_vec)]), timeout=10),
         INVALID, "finite"),
        (lambda: gal.Enroll(gallery_pb2.EnrollRequest(person="x", exemplars=[gallery_pb2.Exemplar(vector=vec)]),
                            timeout=10), INVALID, "model_digest is required"),
        (lambda: gal.Enroll(gallery_pb2.EnrollRequest(model_digest=digest, exemplars=[gallery_pb2.Exemplar(vector=vec)]),
                            timeout=10), INVALID, "no person"),
        (lambda: gal.Enroll(gallery_pb2.EnrollRequest(person="x", model_digest="sha256:other",
                                                      exemplars=[gallery_pb2.Exemplar(vector=vec)]), timeout=10),
         grpc.StatusCode.FAILED_PRECONDITION, "reindex"),
        (lambda: gal.Enroll(gallery_pb2.EnrollRequest(person="x", model_digest=digest,
                                                      exemplars=[gallery_pb2.Exemplar(vector=vec, crop=b"junk")]),
                            timeout=10), INVALID, "exemplar 0"),
        (lambda: gal.RemovePerson(gallery_pb2.RemovePersonRequest(person="nobody"), timeout=10),
         grpc.StatusCode.NOT_FOUND, "no person 'nobody'"),
        (lambda: gal.RemovePerson(gallery_pb2.RemovePersonRequest(), timeout=10), INVALID, "no person"),
        (lambda: gal.RenamePerson(gallery_pb2.RenamePersonRequest(person=person, new_name=""), timeout=10),
         INVALID, "new name"),
        (lambda: gal.RenamePerson(gallery_pb2.RenamePersonRequest(person="nobody", new_name="y"), timeout=10),
         grpc.StatusCode.NOT_FOUND, "no person 'nobody'"),
    ]
    for call, want, text in cases:
        code, details = code_of(call)
        assert code == want and text in details, (want, text, code, details)


# ---------------------------------------------------------------------------------------- through the gateway


def test_gateway_refuses_bad_thresholds_and_hides_internal_addresses(world, stack, galleries):
    photo = world.groups(2)[0]
    with GatewayClient(stack.gateway, api_key=READ_KEY, timeout=60) as gw:
        for bad in (math.nan, -0.5, 1.5):
            with pytest.raises(UserInputError, match="threshold"):  # the client checks its options first
                gw.label(photo, threshold=bad)
            # ... and the gateway refuses them from any other client
            raw = gateway_pb2.LabelRequest(image=common_pb2.Image(data=photo),
                                           options=gateway_pb2.LabelOptions(threshold=bad))
            with pytest.raises(grpc.RpcError) as e:
                gw.stub.Label(raw, timeout=60, metadata=gw.metadata)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "threshold" in e.value.details(), bad
        with pytest.raises(GatewayError) as e:
            gw.label(photo, gallery="nobody-here")
        assert e.value.code == "NOT_FOUND" and "nobody-here" in e.value.details
        assert str(world.store.root) not in e.value.details
        stack.procs["detection"].kill()
        try:
            with pytest.raises(GatewayError) as e:
                gw.label(photo, timeout=30)
            assert e.value.code == "UNAVAILABLE" and e.value.details.startswith("detection: ")
            assert "127.0.0.1" not in e.value.details and stack.procs["detection"].address not in e.value.details
        finally:
            stack.restart_service("detection")
    with GatewayClient(stack.gateway, timeout=60) as anonymous:
        with pytest.raises(GatewayError) as e:
            anonymous.label(photo)
        assert e.value.code == "UNAUTHENTICATED"


def test_with_the_write_key_a_write_goes_through(stack, served, world):
    """The keys refuse the wrong callers, not the right one (last: it makes a new version)."""
    vec, digest, person = served
    gal = gallery_stub(stack, WRITE_KEY)
    before = GalleryStore(world.store).current_version("default")
    renamed = gal.RenamePerson(gallery_pb2.RenamePersonRequest(person=person, new_name=person + "-2"), timeout=10)
    assert renamed.name == person + "-2"
    assert GalleryStore(world.store).current_version("default") == before + 1
    gal.RenamePerson(gallery_pb2.RenamePersonRequest(person=person + "-2", new_name=person), timeout=10)


# ------------------------------------------------------------------------------------------ 2. loopback only


def test_nothing_of_the_stack_listens_beyond_loopback(stack):
    found = stack.listeners()
    ports = {item.port for item in found}
    # the services, their metrics, the gateway's gRPC ingress: all found, all on loopback
    for name, info in stack.addresses().items():
        assert info["port"] in ports, name
        if "metrics_port" in info:
            assert info["metrics_port"] in ports, name
    ray = [item for item in found if item.command in {"gcs_server", "raylet"} or item.command.startswith("ray::")]
    assert len(ray) >= 4, found  # Ray's own servers are among them (GCS, raylet, controller, proxy, ...)
    assert stack.listeners_beyond_host() == [], [str(x) for x in found if not x.loopback]


def test_rays_ports_refuse_a_local_process_without_the_gateways_token(stack):
    """Ray's own ports take no IZ*Net key; its token authentication, with the gateway's own token (passed to
    the Ray processes by environment, not the shared ~/.ray/auth_token), keeps other local processes out."""
    gcs = [item for item in stack.listeners() if item.command == "gcs_server"]
    assert gcs, "no GCS among the gateway's processes"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # dial 127.0.0.1 as given (see services/loopback.py)
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{gcs[0].port}'); "
                            "print('connected')"], env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 and "connected" not in probe.stdout
    assert "uthentication" in probe.stderr or "Failed to connect" in probe.stderr, probe.stderr[-1000:]


# ---------------------------------------------------------------------------------------------------- 3. CLI


@pytest.fixture()
def cli(capsys):
    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def one_error(err: str, *texts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for t in texts:
        assert t in lines[0], (t, err)


def test_cli_store_and_output_path_problems_are_one_error_line(world, cli, tmp_path, galleries):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    photo = tmp_path / "p.jpg"
    photo.write_bytes(world.group_photo(world.people[:1]))
    store = world.store.root
    cases = [
        (["gallery", "list", "--store", afile], "not a directory"),
        (["gallery", "list", "default", "--store", afile], "not a directory"),
        (["gallery", "list", "default", "--store", afile / "sub"], f"({afile} is a file)"),
        (["gallery", "enroll", "g", tmp_path, "--store", afile], "not a directory"),
        (["gallery", "enroll", "g", tmp_path, "--store", afile / "sub"], "cannot create it"),
        (["gallery", "enroll", "g", tmp_path, "--store", "/proc/iznet-store"], "cannot create it"),
        (["label", photo, "--store", afile], "not a directory"),
        (["label", photo, "--store", store, "-o", afile], f"output folder {afile}: not a directory"),
        (["label", photo, "--store", store, "-o", afile / "o"], "cannot create it"),
        (["label", photo, "--store", store, "-o", "/proc"], "output folder /proc: not writable"),
        (["label", photo, "--server", "127.0.0.1:1", "-o", afile], "output folder"),
        (["up", "--store", afile], "not a directory"),
        (["up", "--store", afile / "x"], f"({afile} is a file)"),
        (["up", "--store", store, "--log-dir", afile], f"log folder {afile}: not a directory"),
        (["up", "--store", store, "--gallery", "nobody-here"], "no gallery 'nobody-here'"),
    ]
    for args, text in cases:
        code, out, err = cli(*args)
        assert code == 2, (args, code, err)
        one_error(err, text)
        assert "Traceback" not in err
    assert not afile.with_name("iznet-store").exists()


def test_cli_thresholds_must_be_finite_and_in_range(world, cli, tmp_path, galleries):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(world.group_photo(world.people[:1]))
    for opt, bad in [("--threshold", "nan"), ("--threshold", "-0.1"), ("--threshold", "1.5"), ("--threshold", "inf"),
                     ("--threshold", "0"), ("--min-score", "nan"), ("--min-score", "2")]:
        code, _, err = cli("label", photo, "--store", world.store.root, opt, bad)
        assert code == 2 and f"Invalid value for '{opt}'" in err, (opt, bad, err)
    for bad in ("nan", "0", "1", "-1"):
        code, _, err = cli("gallery", "enroll", "default", tmp_path, "--far", bad, "--store", world.store.root)
        assert code == 2 and "Invalid value for '--far'" in err, (bad, err)


def test_cli_enroll_of_nothing_writes_no_version_and_says_why(world, cli, tmp_path, galleries):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "junk.jpg").write_bytes(b"not an image")
    (bad / "blank.png").write_bytes(encode_image(np.full((120, 120, 3), 200, np.uint8), ".png"))
    code, out, err = cli("gallery", "enroll", "default", bad, "--person", "Zed", "--store", world.store.root, "--quiet")
    assert code == 2
    assert "rejected" in err and "junk.jpg" in err and "blank.png" in err
    assert "nothing enrolled into gallery 'default' (2 rejected" in err
    assert "no new version written, version" in err and "stays current" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli("gallery", "enroll", "default", empty, "--person", "Zed", "--store", world.store.root)
    assert code == 2
    one_error(err, f"{empty}: no photos in it to enroll as Zed")
    code, out, err = cli("gallery", "enroll", "brand-new", bad, "--person", "Zed", "--store", world.store.root,
                         "--quiet", "--model", "baseline-lbp", "--detector", "haar")
    assert code == 2 and "it was not created" in err
    assert not (world.store.root / "galleries" / "brand-new").exists()


def _stray(folder: Path, age_s: float) -> Path:
    stray = folder / f".staging-{os.urandom(6).hex()}"
    (stray / "crops").mkdir(parents=True)
    (stray / "crops" / "face.jpg").write_bytes(b"\xff" * 4096)  # a killed writer's face crop
    t = os.path.getmtime(stray) - age_s
    os.utime(stray, (t, t))
    return stray


def test_stale_staging_is_removed_on_open_and_by_gc_but_not_a_live_writers(world, cli, tmp_path):
    base = world.store.root / "galleries" / "default"
    before = tree_hash(world.store.root / "galleries")
    stray = _stray(base, 60)
    GalleryStore(world.store.root)  # opening the store removes it
    assert not stray.exists()
    stray = _stray(base, 60)
    job = base / ".staging-job-abc"  # a job's resumable folder is not the store's to remove
    job.mkdir()
    code, out, err = cli("gallery", "gc", "--dry-run", "--store", world.store.root)
    assert code == 0 and "would remove" in out and stray.exists()
    code, out, err = cli("gallery", "gc", "default", "--store", world.store.root)
    assert code == 0 and f"removed {stray}" in out and "1 stale staging folder(s)" in out and not stray.exists()
    assert job.exists()
    job.rmdir()
    code, out, err = cli("gallery", "gc", "nobody-here", "--store", world.store.root)
    assert code == 2 and "no gallery 'nobody-here'" in err
    assert tree_hash(world.store.root / "galleries") == before

    # While a writer holds the lock: its own staging folder stays, an older stray one goes.
    gs = GalleryStore(world.store.root)
    g = gs.load("default")
    old = _stray(base, 3600)
    seen, paused, go = {}, threading.Event(), threading.Event()

    def hook(step):
        if step == "staged":
            seen["live"] = [p for p in base.glob(".staging-*") if p != old]
            paused.set()
            go.wait(30)

    gallery_mod.STEP_HOOK = hook
    try:
        writer = threading.Thread(target=lambda: gs.save(g, action="test: a live writer"))
        writer.start()
        assert paused.wait(30)
        removed = GalleryStore(world.store.root, gc=False).gc("default")
        assert [r.path for r in removed] == [old] and not old.exists()
        assert all(p.exists() for p in seen["live"]) and len(seen["live"]) == 1
        go.set()
        writer.join(30)
    finally:
        gallery_mod.STEP_HOOK = None
        go.set()
    assert not list(base.glob(".staging-*"))
