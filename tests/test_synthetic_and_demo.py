"""Generated people work without any real photo: the teacher finds their faces and the builder keeps them."""

from iznet.data.builder import BuildConfig, build_dataset
from iznet.detection.teachers import HaarTeacher
from iznet.imageio import read_image
from iznet.synthetic import make_people


def test_generated_people_are_found_by_the_teacher_and_become_a_dataset(tmp_path):
    people = make_people(tmp_path / "photos", people=3, photos=6, seed=1)
    assert len({p.name for p in people}) == 3
    photos = sorted((tmp_path / "photos").rglob("*.jpg"))
    assert len(photos) == 18
    found = sum(bool(HaarTeacher().detect(read_image(p))) for p in photos)
    assert found >= 12, f"the Haar teacher found faces in only {found} of 18 generated photos"
    report = build_dataset(tmp_path / "photos", tmp_path / "ds", BuildConfig(split_by="identity", teacher="haar"), workers=1,
                           progress=False)
    assert report.identities == 3 and report.counts["kept"] >= 12


def test_generated_group_photos_say_who_stands_where_and_the_teacher_finds_them(tmp_path):
    import json

    import numpy as np

    from iznet.detection.boxes import iou_matrix
    from iznet.synthetic import make_group_photos

    people = make_people(tmp_path / "photos", people=6, photos=1, seed=0)
    paths = make_group_photos(tmp_path / "groups", people, photos=2, per_photo=4, strangers=1, seed=0)
    assert [p.name for p in paths] == ["group_01.jpg", "group_02.jpg"]
    found = total = 0
    for path in paths:
        image = read_image(path)
        faces = json.loads(path.with_suffix(".truth.json").read_text())["faces"]
        assert len(faces) == 5 and sum(not f["known"] for f in faces) == 1
        assert {f["name"] for f in faces if f["known"]} <= {p.name for p in people}
        boxes = np.array([f["box"] for f in faces], float)
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= image.shape[1]).all() and (boxes[:, 3] <= image.shape[0]).all()
        assert (np.diff(boxes[:, 0]) > 0).all(), "truth is listed left to right"
        detected = HaarTeacher().detect(image)
        if detected:
            overlap = iou_matrix(boxes, np.array([[d.x1, d.y1, d.x2, d.y2] for d in detected], float))
            found += int((overlap.max(axis=1) >= 0.3).sum())
        total += len(faces)
    assert found >= total // 2, f"the Haar teacher found only {found} of {total} generated group faces"
