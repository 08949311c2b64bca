"""dlib's face-chip geometry and extraction (iznet.data.chip), against dlib itself on real photos.

The parity tests need the test-only ``dlib`` package, the 5-point shape predictor (``imported_file``) and
the shared photos; each skips with its reason when one is missing. Measured here (dlib-bin 20.0.1): the
transform agrees with dlib's to ~1e-12 px and the chips are pixel-identical on every face tried (LFW
photos, large photos that go through dlib's image pyramid, rotated, scaled and cut-off faces).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from iznet.data.chip import (DLIB_5_TEMPLATE, apply_affine, chip_from_template, dlib_chip, dlib_chip_matrix,
                             dlib_chip_to_image, dlib_template, extract_chip, invert_affine, pyramid_down,
                             similarity_transform)
from iznet.errors import UserInputError

# --- without dlib -----------------------------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (6, 2))
    a, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    r = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = similarity_transform(src, src @ r.T + t)
    assert np.allclose(m[:, :2], r, atol=1e-12) and np.allclose(m[:, 2], t, atol=1e-10)


def test_similarity_transform_never_reflects_and_is_least_squares():
    src = np.array([[0.0, 0], [10, 0], [0, 4], [3, 9]])
    m = similarity_transform(src, src * [-1, 1])
    assert np.linalg.det(m[:, :2]) > 0  # a rotation (and shrink), not the mirror that would fit exactly
    # two points: the exact similarity; more, with noise: residuals smaller than any nearby similarity's
    noisy = src @ np.array([[0.9, -0.2], [0.2, 0.9]]).T + 3 + np.random.default_rng(1).normal(0, 0.5, (4, 2))
    best = ((apply_affine(similarity_transform(src, noisy), src) - noisy) ** 2).sum()
    for d in ([1e-3, 0, 0, 0], [0, 1e-3, 0, 0], [0, 0, 1e-2, 0], [0, 0, 0, 1e-2]):
        m = similarity_transform(src, noisy)
        a, b = m[0, 0] + d[0], m[1, 0] + d[1]
        other = np.array([[a, -b, m[0, 2] + d[2]], [b, a, m[1, 2] + d[3]]])
        assert ((apply_affine(other, src) - noisy) ** 2).sum() > best


def test_dlib_chip_matrix_puts_the_template_where_dlib_does():
    # a face already at the chip's scale: dlib's chip shows template point p at pixel p - 0.5
    tmpl = dlib_template()
    pts = tmpl + [40.0, 25.0]
    m = dlib_chip_matrix(pts)
    assert np.allclose(apply_affine(m, pts), tmpl - 0.5, atol=1e-9)
    # twice as large and rotated: the chip's corners map onto a rectangle 150 * 2 - 1 px wide
    rot = np.array([[math.cos(0.4), -math.sin(0.4)], [math.sin(0.4), math.cos(0.4)]]) * 2
    a = dlib_chip_to_image(tmpl @ rot.T + 100)
    assert np.hypot(*(a[:, 0] * 149)) == pytest.approx(299, abs=1e-9)
    assert np.allclose(invert_affine(invert_affine(a)), a)


def test_extract_chip_copies_an_unscaled_window_and_blackens_outside():
    img = np.arange(20 * 30 * 3, dtype=np.uint32).reshape(20, 30, 3).astype(np.uint8)
    m = np.array([[1.0, 0, -5], [0, 1, -3]])  # chip pixel (0, 0) is image (5, 3)
    assert np.array_equal(extract_chip(img, m, (10, 12)), img[3:13, 5:17])
    chip = extract_chip(img, np.array([[1.0, 0, 4], [0, 1, 2]]), 8)  # hangs off the top left
    assert chip[:2].max() == 0 and chip[:, :4].max() == 0 and np.array_equal(chip[2:, 4:], img[:6, :4])
    # an unscaled window at a fractional offset is copied from the rounded offset, as dlib does
    gray = np.tile(np.array([0, 101], np.uint8), (6, 3))
    assert np.array_equal(extract_chip(gray, np.array([[1.0, 0, -0.5], [0, 1, 0]]), 4), gray[:4, 1:5])
    # scaled: bilinear, truncated to an integer (50.5 -> 50), black where a neighbour is missing
    out = extract_chip(gray, np.array([[2.0, 0, 0], [0, 2, 0]]), (4, 12))
    assert (out[:, 0:10:2] == gray[0, :5]).all() and (out[:, 1:10:2] == 50).all() and (out[:, 11] == 0).all()
    assert extract_chip(img, np.array([[1.0, 0, 500], [0, 1, 0]]), 5).max() == 0


def test_pyramid_down_is_dlibs_integer_filter():
    flat = np.full((21, 17, 3), 200, np.uint8)
    out = pyramid_down(flat)
    assert out.shape == (9, 7, 3) and (out == 200).all()  # [1 4 6 4 1] x [1 4 6 4 1] sums to 256
    impulse = np.zeros((21, 21), np.uint8)
    impulse[6, 6] = 255
    w = [1, 4, 6, 4, 1]
    want = np.zeros((9, 9), np.int64)
    for r in range(9):
        for c in range(9):
            if 0 <= 6 - 2 * r <= 4 and 0 <= 6 - 2 * c <= 4:
                want[r, c] = 255 * w[6 - 2 * r] * w[6 - 2 * c] // 256  # output (r, c) reads rows 2r..2r+4
    assert np.array_equal(pyramid_down(impulse), want)
    assert pyramid_down(np.zeros((8, 40), np.uint8)).size == 0


def test_bad_input_is_a_user_error():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(UserInputError):
        dlib_chip_matrix(np.zeros((4, 2)))
    with pytest.raises(UserInputError):
        extract_chip(img.astype(np.float32), np.eye(2, 3), 5)
    with pytest.raises(UserInputError):
        extract_chip(img, np.zeros((2, 3)), 5)
    with pytest.raises(UserInputError):
        similarity_transform(np.zeros((3, 2)), np.zeros((4, 2)))


def test_chip_from_template_aligns_points_onto_the_template():
    img = np.zeros((300, 300, 3), np.uint8)
    tmpl = dlib_template() - 0.5
    pts = tmpl * 1.3 + [60.0, 40.0]
    for p in pts.round().astype(int):
        cv2.circle(img, tuple(int(v) for v in p), 3, (255, 255, 255), -1)
    chip = chip_from_template(img, pts, tmpl, 150)
    for q in tmpl:
        y, x = int(round(q[1])), int(round(q[0]))
        assert chip[y, x].min() > 100  # each dot lands on its template point
    assert len(DLIB_5_TEMPLATE) == 5


# --- against dlib --------------------------------------------------------------------------------------

def _dlib_chip_to_image(details) -> np.ndarray:
    """dlib's own chip -> image mapping, from its chip_details: the chip's corner pixels on the rotated rect."""
    r, a = details.rect, details.angle
    c = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    tl, tr, bl = (c + rot @ (np.array(p) - c) for p in
                  ((r.left(), r.top()), (r.right(), r.top()), (r.left(), r.bottom())))
    return np.column_stack([(tr - tl) / (details.cols - 1), (bl - tl) / (details.rows - 1), tl])


@pytest.fixture(scope="module")
def dlib_tools():
    dlib = pytest.importorskip("dlib")
    from iznet.imported import MissingModelError, imported_file

    try:
        sp = dlib.shape_predictor(str(imported_file("dlib-shape-5")))
    except MissingModelError as e:
        pytest.skip(str(e))
    return dlib, dlib.get_frontal_face_detector(), sp


def _landmarks(dlib, detector, sp, rgb: np.ndarray):
    """dlib's five landmarks of the largest face, found on a copy at most 400 px (fast) and fitted at full size."""
    s = min(1.0, 400 / max(rgb.shape[:2]))
    small = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else rgb
    dets = detector(small, 0)
    if not dets:
        return None
    d = max(dets, key=lambda r: r.area())
    rect = dlib.rectangle(int(d.left() / s), int(d.top() / s), int(d.right() / s), int(d.bottom() / s))
    return sp(rgb, rect)


def _photos(shared_data) -> list:
    lfw = sorted((shared_data / "lfw").glob("*/*.jpg"))
    big = sorted((shared_data / "face_recognition_knn" / "train").glob("*/*.jp*g"))
    if not lfw:
        pytest.skip("needs lfw/ in the shared data")
    return lfw[::550][:10] + big[:3]  # 10 LFW photos; 3 large ones (their faces go through the pyramid)


def _variants(bgr: np.ndarray):
    """The photo, plus rotated / scaled / shifted copies (angles, pyramid depths and image borders)."""
    yield "as is", bgr
    h, w = bgr.shape[:2]
    for angle, scale, shift in ((25, 1.0, 0), (-15, 3.5, 0), (0, 1.0, 0.35)):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[0, 2] += shift * w
        size = (int(w * max(scale, 1)), int(h * max(scale, 1)))
        yield f"rot {angle} x{scale} shift {shift}", cv2.warpAffine(bgr, m, size)


def _net():
    """The project's port of dlib's descriptor (None when its weights are not installed)."""
    from iznet.embedding.dlib_resnet import load_dlib_resnet
    from iznet.imported import MissingModelError

    try:
        return load_dlib_resnet()
    except MissingModelError:
        return None


def test_chips_match_dlib_get_face_chip(dlib_tools, shared_data):
    dlib, detector, sp = dlib_tools
    photos = _photos(shared_data)
    net = _net()
    n, worst_corner, worst_mean, exact, max_scale, worst_l2, sim_mean, sim_l2 = 0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0
    for i, path in enumerate(photos):
        bgr = cv2.imread(str(path))
        for name, img in (_variants(bgr) if i < 2 else [("as is", bgr)]):
            rgb = np.ascontiguousarray(img[..., ::-1])
            shape = _landmarks(dlib, detector, sp, rgb)
            if shape is None:
                continue
            pts = np.array([[shape.part(k).x, shape.part(k).y] for k in range(5)], np.float64)
            ref = dlib.get_face_chip(rgb, shape, 150, 0.25)
            details = dlib.get_face_chip_details(shape, 150, 0.25)
            mine_a = dlib_chip_to_image(pts)
            corners = np.array([[0, 0], [149, 0], [0, 149], [149, 149]], np.float64)
            corner_err = np.abs(apply_affine(mine_a, corners) - apply_affine(_dlib_chip_to_image(details),
                                                                             corners)).max()
            chip = dlib_chip(img, pts)[..., ::-1]  # BGR in, BGR out
            diff = np.abs(chip.astype(int) - ref.astype(int))
            max_scale = max(max_scale, math.hypot(*mine_a[:, 0]))  # image px per chip px
            assert corner_err < 1e-6, (path.name, name, corner_err)
            assert diff.mean() < 1.0 and (diff > 1).mean() < 0.01, (path.name, name, diff.mean())
            worst_corner, worst_mean = max(worst_corner, corner_err), max(worst_mean, diff.mean())
            exact += int(diff.max() == 0)
            n += 1
            # the plain-similarity path other landmarks (MTCNN's) will take, on dlib's template
            sim = chip_from_template(img, pts, dlib_template() - 0.5, 150)[..., ::-1]
            sim_mean = max(sim_mean, float(np.abs(sim.astype(int) - ref.astype(int)).mean()))
            if net is not None:
                with torch.no_grad():
                    d = net(torch.from_numpy(np.stack([chip, sim, ref])))
                worst_l2 = max(worst_l2, float((d[0] - d[2]).norm()))
                sim_l2 = max(sim_l2, float((d[1] - d[2]).norm()))
    assert n >= 12, f"dlib found faces in only {n} photos"
    assert max_scale > 2.2, "no face was large enough to go through dlib's image pyramid"
    assert worst_l2 < 0.05, worst_l2  # dlib's same-person threshold is 0.6
    assert sim_mean < 12 and sim_l2 < 0.15, (sim_mean, sim_l2)
    print(f"\n{n} chips: corner error <= {worst_corner:.1e} px, mean |pixel diff| <= {worst_mean:.4f}, "
          f"{exact} pixel-identical, descriptor L2 (mine vs dlib's chip) <= {worst_l2:.2e}; plain similarity "
          f"onto dlib_template() - 0.5: mean |pixel diff| <= {sim_mean:.2f}, descriptor L2 <= {sim_l2:.3f}")
