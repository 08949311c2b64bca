"""A small world of generated people for the service tests: a store with the stand-in model and a gallery
enrolled from each person's first photos, and group photos made of their held-out photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from iznet.detection.teachers import make_teacher
from iznet.imageio import encode_image, read_image
from iznet.standin import enroll_folders, load_embedder_dir, publish_standin_model
from iznet.store import ArtifactStore
from iznet.synthetic import make_people

ENROLLED = 10  # photos per person in the gallery; the rest are held out


@dataclass
class World:
    root: Path
    store: ArtifactStore
    people: list[str]
    held_out: dict[str, list[Path]]  # person -> photos not in the gallery whose face the detector finds

    def group_photo(self, names: list[str], k: int = 0) -> bytes:
        """A row of held-out portraits of ``names`` (the k-th of each) on a grey canvas, as JPEG bytes."""
        tiles = [read_image(self.held_out[n][k % len(self.held_out[n])]) for n in names]
        h = max(t.shape[0] for t in tiles)
        canvas = np.full((h + 40, sum(t.shape[1] for t in tiles) + 20 * (len(tiles) + 1), 3), 128, np.uint8)
        x = 20
        for t in tiles:
            canvas[20:20 + t.shape[0], x:x + t.shape[1]] = t
            x += t.shape[1] + 20
        return encode_image(canvas, ".jpg", 95)

    def groups(self, size: int = 2) -> list[tuple[bytes, list[str]]]:
        """Group photos of ``size`` people in which the detector finds every face (the Haar cascade misses
        some faces in a composite; recognition is what these photos test), with the names left to right."""
        from iznet.imageio import decode_image

        detector, out = make_teacher("haar"), []
        for i in range(len(self.people)):
            names = [self.people[(i + j) % len(self.people)] for j in range(size)]
            photo = self.group_photo(names)
            if len(detector.detect(decode_image(photo))) == size:
                out.append((photo, names))
        return out


def build_world(root: Path, people: int = 5, photos: int = 16, seed: int = 0) -> World:
    make_people(root / "photos", people=people, photos=photos, seed=seed)
    enroll = root / "enroll"
    store = ArtifactStore(root / "store")
    publish_standin_model(store, "standin-pixels", seed=1)
    embedder = load_embedder_dir(store.current("models", "standin-pixels"))
    detector = make_teacher("haar")
    held_out = {}
    for person_dir in sorted((root / "photos").iterdir()):
        files = sorted(person_dir.iterdir())
        (enroll / person_dir.name).mkdir(parents=True)
        for f in files[:ENROLLED]:
            (enroll / person_dir.name / f.name).symlink_to(f)
        held_out[person_dir.name] = [f for f in files[ENROLLED:] if len(detector.detect(read_image(f))) == 1]
    enroll_folders(store, "default", enroll, embedder, detector)
    return World(root, store, sorted(held_out), held_out)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))
