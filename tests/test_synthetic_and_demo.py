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
    report = build_dataset(tmp_path / "photos", tmp_path / "ds", BuildConfig(split_by="identity"), workers=1,
                           progress=False)
    assert report.identities == 3 and report.counts["kept"] >= 12
