"""``training.chips``: real photos -> the teacher's aligned chips as a face folder, with its vectors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from iznet.registry import create_embedder

pytestmark = pytest.mark.shared_data


def test_chips_are_the_teachers_own_crops_with_its_vectors(shared_data, tmp_path):
    from training.chips import main

    src = tmp_path / "photos"
    for person in ("John_Salley", "John_Savage"):
        (src / person).mkdir(parents=True)
        for f in sorted((shared_data / "dlib_johns" / person).glob("*.jpg"))[:2]:
            (src / person / f.name).write_bytes(f.read_bytes())
    (src / "John_Savage" / "blank.jpg").write_bytes(cv2.imencode(".jpg", np.full((120, 120, 3), 90, np.uint8))[1])
    out = tmp_path / "chips"
    info = main(["--photos", str(src), "--out", str(out)])
    assert info["chips"] == 4 and info["no_face"] == ["John_Savage/blank.jpg"]
    z = np.load(out / "teacher.npz")
    assert sorted(z["paths"]) == sorted(str(p.relative_to(out)) for p in out.glob("*/*.png"))
    assert str(z["chip"]) == "dlib:150:0.25" and json.loads(str(z["teacher"]))["name"] == "dlib-resnet"
    chip = cv2.imread(str(out / z["paths"][0]))
    assert chip.shape == (150, 150, 3)
    teacher = create_embedder("dlib-resnet")
    v = teacher.embed([chip, chip[:, ::-1].copy()])
    assert np.allclose(v[0], z["embedding"][0], atol=2e-3) and np.allclose(v[1], z["embedding_flip"][0], atol=2e-3)
    # two photos of one person are closer than photos of two people
    e = {str(p): z["embedding"][i] for i, p in enumerate(z["paths"])}
    same = [k for k in e if k.startswith("John_Salley")]
    other = [k for k in e if k.startswith("John_Savage")][0]
    assert e[same[0]] @ e[same[1]] > e[same[0]] @ e[other]
