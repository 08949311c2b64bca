"""`iznet demo` from the command line, as a user runs it: generated people (no shared data), the quick size.

What a user would notice: every stage reported, an annotated group photo with red boxes where the faces are,
a JSON answer that names people who are really there, the analysis report, and no server left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iznet.detection.boxes import iou_matrix
from iznet.imageio import read_image

ROOT = Path(__file__).resolve().parents[1]


def run_demo(tmp_path: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           # No shared photos: the demo must make its own, as on a fresh machine.
           "IZNET_SHARED_DATA": str(tmp_path / "no-shared-data"), "IZNET_STORE": str(tmp_path / "default-store")}
    return subprocess.run([sys.executable, "-m", "iznet", "demo", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def red_pixels(image: np.ndarray) -> np.ndarray:
    b, g, r = (image[..., k].astype(int) for k in range(3))
    return (r > 180) & (g < 80) & (b < 80)


def processes_using(store: Path) -> list[str]:
    """Live processes started for this store (the stack gives its services IZNET_STORE=<store>; Ray's
    processes inherit it from the gateway)."""
    marker = f"IZNET_STORE={store}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:120]
                found.append(f"{proc.name}: {cmdline!r}")
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_labels_a_generated_group_photo_through_the_stack(tmp_path):
    out = tmp_path / "out"
    proc = run_demo(tmp_path, "--out", str(out), "--size", "quick")
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for stage in range(1, 8):
        assert f"[{stage}/7]" in proc.stdout, f"stage {stage} not reported:\n{proc.stdout}"

    record = json.loads((out / "demo.json").read_text())
    shown = record["photos"][0]
    photo, annotated = read_image(shown["photo"]), read_image(shown["annotated"])
    assert annotated.shape == photo.shape
    answer = json.loads(Path(shown["json"]).read_text())
    assert answer["faces"], "no face found in the group photo"
    # Red boxes where the faces are: the box edges are red in the annotated photo, not in the photo.
    for face in answer["faces"]:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        x1, x2 = max(0, x1), min(photo.shape[1] - 1, x2)
        edge = annotated[min(max(0, y2), photo.shape[0] - 1), x1:x2 + 1]
        assert red_pixels(edge).mean() > 0.8, f"no red box edge at {face['box']}"
    assert red_pixels(annotated).sum() > 20 * red_pixels(photo).sum() + 200

    # Every face is named from the gallery or `unknown`, with the threshold calibrated on the dev pairs.
    enrolled = {p.name for p in (out / "photos").iterdir()}
    for face in answer["faces"]:
        assert face["name"] == "unknown" if face["unknown"] else face["name"] in enrolled
        assert face["threshold"] == pytest.approx(record["gallery"]["threshold"]["value"], abs=1e-5)
    assert record["gallery"]["threshold"]["source"].endswith("pairs_dev.txt")
    assert answer["gallery"]["name"] == "demo" and answer["embedder"]["digest"].startswith("sha256:")

    assert Path(record["report"]).is_file() and (Path(record["report"]).parent / "tsne.png").is_file()
    assert "dev verification accuracy" in proc.stdout
    # The stack is gone: no process of this demo's store, and none of the stack's recorded processes.
    assert not processes_using(out / "store")
    for name, pid in record["stack_pids"].items():
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower(), \
            f"{name} (pid {pid}) still running"

    # The names, matched to who really stands there (the generator's record of the group), in all the photos.
    right, strangers_named = [], []
    for photo in record["photos"]:
        truth = json.loads(Path(photo["photo"]).with_suffix(".truth.json").read_text())["faces"]
        faces = json.loads(Path(photo["json"]).read_text())["faces"]
        if not faces:
            continue
        overlap = iou_matrix(np.array([t["box"] for t in truth], float), np.array([f["box"] for f in faces], float))
        right += [t["name"] for i, t in enumerate(truth) if t["known"] and overlap[i].max() >= 0.2
                  and faces[int(overlap[i].argmax())]["name"] == t["name"]]
        strangers_named += [faces[int(overlap[i].argmax())]["name"] for i, t in enumerate(truth)
                            if not t["known"] and overlap[i].max() >= 0.2 and not faces[int(overlap[i].argmax())]["unknown"]]
    # The quick demo is deterministic (fixed seeds, fixed step count): it names at least one enrolled person
    # right (Ada, on the last runs) and never puts a name on the stranger nobody enrolled.
    assert right, f"no enrolled person named correctly in the generated group photos: {record['photos']}"
    assert not strangers_named, f"a stranger nobody enrolled was named {strangers_named}"


def test_an_empty_data_folder_is_a_clear_error(tmp_path):
    (tmp_path / "photos").mkdir()
    proc = run_demo(tmp_path, "--out", str(tmp_path / "out"), "--data", str(tmp_path / "photos"))
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "no photos found" in proc.stderr and "Traceback" not in proc.stderr


def test_photos_without_faces_are_a_clear_error(tmp_path):
    from iznet.imageio import write_image

    rng = np.random.default_rng(0)
    for person in ("ann", "bob"):
        for k in range(3):
            write_image(tmp_path / "photos" / person / f"{k}.jpg", rng.integers(0, 255, (120, 120, 3), np.uint8))
    proc = run_demo(tmp_path, "--out", str(tmp_path / "out"), "--data", str(tmp_path / "photos"))
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "no face found" in proc.stderr and "Traceback" not in proc.stderr
