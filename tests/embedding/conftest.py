"""Fixtures: an LFW-style copy of att_orl in a temp dir (``<person>/<person>_NNNN.jpg`` + an LFW pairs file).

People s1..s30 are for training; s31..s40 appear only in the pairs of fold 1 (identity-disjoint dev pairs).
Skips with a reason when ``../shared/data`` is absent.
"""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path

import cv2
import pytest



@pytest.fixture(scope="session")
def orl_lfw(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    src = shared_data / "att_orl"
    if not (src / "s1" / "1.pgm").is_file():
        pytest.skip(f"needs att_orl in the shared data ({src} is missing)")
    root = tmp_path_factory.mktemp("orl_lfw")
    people = [f"s{i}" for i in range(1, 41)]
    for p in people:
        (root / p).mkdir()
        for k in range(1, 11):
            img = cv2.imread(str(src / p / f"{k}.pgm"), cv2.IMREAD_COLOR)
            # 92x112 -> a square 112x112 crop with the face centred, like the dataset builder's crops
            img = cv2.copyMakeBorder(img, 0, 0, 10, 10, cv2.BORDER_REPLICATE)
            cv2.imwrite(str(root / p / f"{p}_{k:04d}.jpg"), img)
    rng = random.Random(0)
    dev = people[30:]
    same = rng.sample([(p, i, j) for p in dev for i, j in combinations(range(1, 11), 2)], 100)
    diff = []
    while len(diff) < 100:
        a, b = rng.sample(dev, 2)
        diff.append((a, rng.randint(1, 10), b, rng.randint(1, 10)))
    lines = ["1\t100"] + ["\t".join(map(str, s)) for s in same] + ["\t".join(map(str, d)) for d in diff]
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return root, pairs
