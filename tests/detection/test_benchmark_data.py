"""The benchmark sets as shipped in ../shared/data, and a teacher scored on one (skipped without the data)."""

import numpy as np
import pytest

from iznet.detection.evaluate import benchmark, format_table, load_cmu_mit, load_imglab_xml
from iznet.registry import create_detector

pytestmark = pytest.mark.shared_data


def test_cmu_mit_has_both_box_files_for_the_same_faces(shared_data):
    head = load_cmu_mit(shared_data / "detection" / "cmu_mit_frontal", "head")
    face = load_cmu_mit(shared_data / "detection" / "cmu_mit_frontal", "face")
    assert head.images == face.images and len(head.images) == 78
    assert head.num_faces == face.num_faces == 276
    assert sum(len(b) == 0 for b in head.boxes) > 0  # scenes without a face stay in (false positives count)
    # inner-face boxes sit inside the head boxes
    for h, f in zip(head.boxes, face.boxes):
        if len(h):
            assert (np.abs((h[:, :2] + h[:, 2:]) / 2 - (f[:, :2] + f[:, 2:]) / 2) < (h[:, 2:] - h[:, :2])).all()


def test_haar_on_the_pascal_test_set(shared_data):
    pascal = load_imglab_xml(shared_data / "detection" / "dlib_pascal_faces" / "testing.xml", "pascal_test")
    assert len(pascal.images) == 5 and pascal.num_faces == 25
    (r,) = benchmark([create_detector("haar")], [pascal], progress=False)
    assert 0.2 < r.ap50 <= r.ap30 <= 1.0
    assert r.ms_per_image > 0 and r.extra["ms_640x480"] > 0
    assert "pascal_test" in format_table([r])
