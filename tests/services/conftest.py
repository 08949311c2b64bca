"""A small world for the service tests: an artifact store with a served model (``models/faces`` =
baseline-lbp) and a gallery ``default`` enrolled, through the core Pipeline, from generated people's first
photos; group photos are made of their other photos. With the team's shared photos, a second gallery ``frk``
holds the people of ``face_recognition_knn`` (real faces, real names)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from iznet.config import shared_data_dir
from iznet.gallery import GalleryStore
from iznet.registry import create_embedder
from iznet.imageio import decode_image, encode_image, read_image
from iznet.pipeline import Pipeline
from iznet.registry import create_detector
from iznet.serving import publish_model
from iznet.store import ArtifactStore
from iznet.synthetic import make_people

ENROLLED = 6  # photos per person in the gallery; the rest make group photos
MODEL = "faces"


@dataclass
class World:
    root: Path
    store: ArtifactStore
    people: list[str]
    others: dict[str, list[Path]]  # person -> photos not enrolled in which the detector finds one face
    has_frk: bool

    def pipeline(self, gallery: str = "default") -> Pipeline:
        """The same labelling in this process (the reference the gateway's answers are compared with)."""
        return Pipeline.from_store(self.store.root, gallery)

    def group_photo(self, names: list[str], k: int = 0) -> bytes:
        """A row of portraits of ``names`` (the k-th unenrolled photo of each) on a grey canvas, JPEG bytes."""
        tiles = [read_image(self.others[n][k % len(self.others[n])]) for n in names]
        h = max(t.shape[0] for t in tiles)
        canvas = np.full((h + 40, sum(t.shape[1] for t in tiles) + 20 * (len(tiles) + 1), 3), 128, np.uint8)
        x = 20
        for t in tiles:
            canvas[20:20 + t.shape[0], x:x + t.shape[1]] = t
            x += t.shape[1] + 20
        return encode_image(canvas, ".jpg", 95)

    def groups(self, size: int = 2) -> list[bytes]:
        """Group photos of ``size`` people in which the detector finds every face (the Haar cascade misses
        some in a composite; these photos test the services, not the detector)."""
        detector, out = create_detector("haar"), []
        for i in range(len(self.people)):
            names = [self.people[(i + j) % len(self.people)] for j in range(size)]
            photo = self.group_photo(names)
            if len(detector.detect(decode_image(photo))) == size:
                out.append(photo)
        return out


def build_world(root: Path, people: int = 5, photos: int = 12, seed: int = 0) -> World:
    make_people(root / "photos", people=people, photos=photos, seed=seed)
    store = ArtifactStore(root / "store")
    publish_model(store, MODEL, "baseline-lbp")
    detector = create_detector("haar")
    enroll, others = root / "enroll", {}
    for person_dir in sorted((root / "photos").iterdir()):
        files = sorted(person_dir.iterdir())
        (enroll / person_dir.name).mkdir(parents=True)
        for f in files[:ENROLLED]:
            shutil.copy(f, enroll / person_dir.name / f.name)
        others[person_dir.name] = [f for f in files[ENROLLED:] if len(detector.detect(read_image(f))) == 1]
    gs = GalleryStore(store)
    embedder = create_embedder("baseline-lbp")
    g = gs.create("default", embedder.version, detector="haar")  # the detector that enrolls them
    Pipeline(detector, embedder, g).enroll_folder(enroll)
    gs.save(g, action="enroll")
    frk = shared_data_dir() / "face_recognition_knn" / "train"
    if frk.is_dir():  # real people: everyone but Obama (he must come out unknown)
        g = gs.create("frk", embedder.version, detector="haar")
        src = root / "frk"
        for p in frk.iterdir():
            if p.name != "obama":
                shutil.copytree(p, src / p.name)
        Pipeline(detector, embedder, g).enroll_folder(src)
        gs.save(g, action="enroll")
    return World(root, store, sorted(p for p in others if others[p]), others, frk.is_dir())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))
