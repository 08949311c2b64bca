"""dlib's face chips: the aligned 150x150 crops its ResNet descriptor was trained on, cut without dlib.

dlib aligns a face by its five landmarks (``shape_predictor_5_face_landmarks``) onto a fixed template
(``get_face_chip_details`` in ``dlib/image_transforms/interpolation.h``), then cuts the chip with bilinear
interpolation from an image pyramid when the face is much larger than the chip (``extract_image_chips``).
This module reproduces both:

    M = dlib_chip_matrix(points5)          # 2x3 affine, image pixels -> chip pixels
    chip = extract_chip(bgr, M, 150)       # BGR in, BGR out (the project's convention)
    rgb_chip = chip[..., ::-1]             # what DlibResNet wants

Pixel coordinates put pixel centres at integers (dlib's and OpenCV's convention). The five points are dlib's,
in its order: 0, 1 the outer and inner corner of the eye on the image's right (the person's left eye), 2, 3
the outer and inner corner of the other eye, 4 the base of the nose.

What dlib does, and so what is done here:

- the template is five points in the unit square, moved in by the padding: ``(padding + p) / (1 + 2 padding)``
  times the chip size; a least-squares similarity (Umeyama) maps the template onto the landmarks;
- that similarity is not the chip's mapping as such: dlib keeps only its angle, its scale ``s`` and where
  it sends the chip's centre ``(size/2, size/2)``, and builds a rectangle ``size * s`` wide around that centre
  whose corners become the chip's corner *pixels* (0 and size-1). So the chip's pixel ``size/2 - 1/2`` is the
  template's ``size/2``, and the chip is stretched by ``(size s - 1) / ((size - 1) s)`` (exactly half a pixel
  off the plain similarity for a face at the chip's scale, a little more at other scales);
- when half the chip's source rectangle still holds more pixels than the chip, dlib first builds a 2:1
  Gaussian pyramid (5x5 binomial ``[1 4 6 4 1]`` filter, integer sums, floor division by 256) over the
  chip's neighbourhood and samples the level whose halved rectangle would be too small; its own idea of
  where a level's pixels lie is ``p / 2 - (1.25, 0.75)``, which is used here too (it is what places dlib's
  chips);
- bilinear interpolation needs all four neighbours inside the image (else the pixel is black) and truncates
  to an integer. The same arithmetic in NumPy float64 gives chips pixel-identical to dlib 20.0.1's on
  every face tested (tests/test_chip.py); the mapping is computed in another order than dlib's, so a value
  that lands within ~1e-12 of an integer could still come out one grey level apart.

:func:`chip_from_template` warps arbitrary landmarks (say MTCNN's five) onto template points given in chip
pixels with a plain similarity and the same extraction.
"""

from __future__ import annotations

import math

import numpy as np

from iznet.errors import UserInputError

#: dlib's 5-point face template in the unit square (``get_face_chip_details``), in dlib's landmark order.
DLIB_5_TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014],   # eye on the image's right, outer corner
    [0.6460604764104, 0.2289674387677],   # eye on the image's right, inner corner
    [0.1205750620789, 0.2137274526848],   # eye on the image's left, outer corner
    [0.3340850613712, 0.2290642403242],   # eye on the image's left, inner corner
    [0.4901123135679, 0.6277975316475],   # base of the nose
])
#: The chip size and padding of dlib's face descriptor (``compute_face_descriptor``, ``get_face_chip``).
DLIB_CHIP_SIZE, DLIB_PADDING = 150, 0.25


def _points(pts, name: str, n: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserInputError(f"{name}: expected (N, 2) point coordinates") from None
    if a.ndim != 2 or a.shape[1] != 2 or (n is not None and a.shape[0] != n) or a.shape[0] < 2:
        want = f"({n}, 2)" if n is not None else "(N >= 2, 2)"
        raise UserInputError(f"{name}: expected {want} point coordinates, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise UserInputError(f"{name}: point coordinates must be finite")
    return a


def _size(size) -> tuple[int, int]:
    rows, cols = (size, size) if np.isscalar(size) else tuple(size)
    if int(rows) != rows or int(cols) != cols or rows < 2 or cols < 2:
        raise UserInputError(f"chip size must be at least 2x2 whole pixels, not {size!r}")
    return int(rows), int(cols)


def similarity_transform(src_pts, dst_pts, weights=None) -> np.ndarray:
    """The (weighted) least-squares similarity (rotation, uniform scale, translation) taking ``src_pts`` to
    ``dst_pts``, as a 2x3 matrix ``[s R | t]`` (Umeyama 1991, as dlib's ``find_similarity_transform`` when
    unweighted; a reflection is never chosen). ``weights`` (one per point, >= 0) lean the fit on the points
    that are placed best (MTCNN's eyes over its mouth corners)."""
    src, dst = _points(src_pts, "src_pts"), _points(dst_pts, "dst_pts")
    if src.shape != dst.shape:
        raise UserInputError(f"src_pts and dst_pts differ in shape: {src.shape} vs {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != len(src) or (w < 0).any() or w.sum() <= 0:
        raise UserInputError("similarity_transform needs one weight >= 0 per point, not all zero")
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    ds, dd = src - mean_src, dst - mean_dst
    sigma_src = float(w @ (ds ** 2).sum(1))
    cov = (w[:, None] * dd).T @ ds
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    det = np.linalg.det(cov)
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[(1, 1) if d[1] < d[0] else (0, 0)] = -1.0
    r = u @ s @ vt
    c = float(np.trace(np.diag(d) @ s) / sigma_src) if sigma_src != 0 else 1.0
    t = mean_dst - c * r @ mean_src
    return np.hstack([c * r, t[:, None]])


def invert_affine(m) -> np.ndarray:
    """The inverse of a 2x3 affine map."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise UserInputError(f"expected a finite 2x3 affine matrix, got shape {m.shape}")
    lin = m[:, :2]
    if abs(np.linalg.det(lin)) < 1e-12:
        raise UserInputError("the affine matrix is singular (it collapses the chip to a line or a point)")
    inv = np.linalg.inv(lin)
    return np.hstack([inv, -(inv @ m[:, 2])[:, None]])


def apply_affine(m, pts) -> np.ndarray:
    """Map (N, 2) points through a 2x3 affine matrix."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(m, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def dlib_template(size: int = DLIB_CHIP_SIZE, padding: float = DLIB_PADDING) -> np.ndarray:
    """dlib's five template points in chip coordinates, as ``get_face_chip_details`` places them (its
    ``from_points``). dlib's chip shows a point at template position ``p`` at pixel ``p - 0.5`` (exactly
    for a face at the chip's scale; see the module's notes): pass ``dlib_template() - 0.5`` to
    :func:`chip_from_template` to align other landmarks the way dlib does."""
    return (padding + DLIB_5_TEMPLATE) / (2 * padding + 1) * size


def dlib_chip_to_image(points5, size: int = DLIB_CHIP_SIZE, padding: float = DLIB_PADDING) -> np.ndarray:
    """The 2x3 affine from chip pixels to image pixels that dlib's ``extract_image_chip`` uses for
    ``get_face_chip_details(face, size, padding)`` (see the module's notes)."""
    pts = _points(points5, "points5", 5)
    if padding < 0 or size < 2:
        raise UserInputError(f"need padding >= 0 and size >= 2, not padding={padding}, size={size}")
    rows = cols = int(size)
    sim = similarity_transform(dlib_template(size, padding), pts)          # chip -> image
    p = sim[:, 0]                                                            # the image of (1, 0) minus t
    angle, scale = math.atan2(p[1], p[0]), math.hypot(p[0], p[1])
    centre = sim[:, :2] @ np.array([cols / 2.0, rows / 2.0]) + sim[:, 2]
    half_w, half_h = (cols * scale - 1) / 2, (rows * scale - 1) / 2         # dlib's centered_drect
    cos, sin = math.cos(angle), math.sin(angle)

    def corner(dx: float, dy: float) -> np.ndarray:  # a rectangle corner rotated about the centre
        return centre + np.array([cos * dx - sin * dy, sin * dx + cos * dy])

    tl, tr, bl = corner(-half_w, -half_h), corner(half_w, -half_h), corner(-half_w, half_h)
    return np.column_stack([(tr - tl) / (cols - 1), (bl - tl) / (rows - 1), tl])


def dlib_chip_matrix(points5, size: int = DLIB_CHIP_SIZE, padding: float = DLIB_PADDING) -> np.ndarray:
    """The 2x3 affine from image pixels to chip pixels of dlib's ``get_face_chip(img, face, size,
    padding)`` for a face whose five dlib landmarks are ``points5`` ((5, 2) x, y in dlib's order)."""
    return invert_affine(dlib_chip_to_image(points5, size, padding))


# --- extraction -----------------------------------------------------------------------------------------

def _lround(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def pyramid_down(img: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>``: a separable ``[1 4 6 4 1]`` filter and every other row and column, in
    integers, the sum floor-divided by 256. Output ``((rows - 3) // 2, (cols - 3) // 2)``; empty when a side is
    8 pixels or fewer. Its pixel (r, c) sits at dlib's ``point_down``: ``(2c + 2.5, 2r + 1.5)`` of the input."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0) + img.shape[2:], img.dtype)
    o = img.astype(np.int32)
    n, m = (w - 3) // 2, (h - 3) // 2
    tmp = (o[:, 0:2 * n:2] + 4 * o[:, 1:2 * n + 1:2] + 6 * o[:, 2:2 * n + 2:2] + 4 * o[:, 3:2 * n + 3:2]
           + o[:, 4:2 * n + 4:2])
    out = (tmp[0:2 * m:2] + 4 * tmp[1:2 * m + 1:2] + 6 * tmp[2:2 * m + 2:2] + 4 * tmp[3:2 * m + 3:2]
           + tmp[4:2 * m + 4:2]) // 256
    return out.astype(img.dtype)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's ``interpolate_bilinear`` at float64 points: black unless all four neighbours are inside,
    the weighted sum truncated to an integer. The float64 operations are dlib's, in dlib's order (so the
    pixels are dlib's); they run in place on gathered neighbours, which is what makes it fast."""
    h, w = img.shape[:2]
    left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    out = np.zeros(x.shape + img.shape[2:], np.uint8)
    if not ok.any():
        return out
    every = bool(ok.all())  # the usual case: the whole chip lies inside the photo
    li, ti = (left.ravel(), top.ravel()) if every else (left[ok], top[ok])
    lr, tb = ((x.ravel() - li)[:, None], (y.ravel() - ti)[:, None]) if every else \
        ((x[ok] - li)[:, None], (y[ok] - ti)[:, None])
    flat, i = img.reshape(h * w, -1), ti * w + li

    def pixel(k: np.ndarray) -> np.ndarray:
        return np.take(flat, k, axis=0).astype(np.float64)

    # v = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    upper = pixel(i)
    upper *= 1 - lr
    right = pixel(i + 1)
    right *= lr
    upper += right
    lower = pixel(i + w)
    lower *= 1 - lr
    right = pixel(i + w + 1)
    right *= lr
    lower += right
    upper *= 1 - tb
    lower *= tb
    upper += lower
    np.trunc(upper, out=upper)
    np.clip(upper, 0, 255, out=upper)
    vals = upper.astype(np.uint8)
    if img.ndim == 2:
        vals = vals[:, 0]
    if every:
        return vals.reshape(out.shape)
    out[ok] = vals
    return out


def extract_chip(image: np.ndarray, matrix, size) -> np.ndarray:
    """The ``size`` (int or (rows, cols)) chip that the 2x3 image -> chip affine ``matrix`` cuts from
    ``image``, the way dlib's ``extract_image_chip`` does (bilinear, from an image pyramid when the chip is
    much smaller than its source; see the module's notes).

    ``image`` is uint8, (H, W) or (H, W, C); channels are treated alike, so a BGR image (the project's
    convention) gives a BGR chip. Flip it (``chip[..., ::-1]``) for RGB consumers such as ``DlibResNet``.
    Chip pixels whose source lies outside the image are black.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise UserInputError(f"extract_chip takes a uint8 (H, W) or (H, W, C) image, not {img.dtype} "
                             f"{img.shape}")
    rows, cols = _size(size)
    a = invert_affine(matrix)                                   # chip -> image
    h, w = img.shape[:2]
    out_shape = (rows, cols) + img.shape[2:]
    lin, t = a[:, :2], a[:, 2]

    # dlib copies pixels when the chip is an unscaled, unrotated window of the image
    if np.allclose(lin, np.eye(2), rtol=0, atol=1e-12):
        x0, y0 = _lround(t[0]), _lround(t[1])
        chip = np.zeros(out_shape, np.uint8)
        ys, xs = slice(max(0, y0), min(h, y0 + rows)), slice(max(0, x0), min(w, x0 + cols))
        if ys.start < ys.stop and xs.start < xs.stop:
            chip[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = img[ys, xs]
        return chip

    corners = np.array([[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]], np.float64)
    img_corners = corners @ lin.T + t
    # the source rectangle's sides (dlib's drectangle width is right - left + 1) and the pyramid depth
    width = math.hypot(*(img_corners[1] - img_corners[0])) + 1
    height = math.hypot(*(img_corners[2] - img_corners[0])) + 1
    depth, grow = 0, 2.0
    ww, hh = (width - 1) / 2 + 1, (height - 1) / 2 + 1
    while ww * hh > rows * cols:
        ww, hh = (ww - 1) / 2 + 1, (hh - 1) / 2 + 1
        depth += 1
        grow = grow * 2 + 2
    # the neighbourhood dlib crops first: the chip's corners, grown, clipped to the image, rounded
    lo = np.maximum(img_corners.min(axis=0) - grow, 0)
    hi = np.minimum(img_corners.max(axis=0) + grow, [w - 1, h - 1])
    if lo[0] > hi[0] or lo[1] > hi[1]:
        return np.zeros(out_shape, np.uint8)
    bx0, by0, bx1, by1 = (_lround(v) for v in (lo[0], lo[1], hi[0], hi[1]))
    src = img[by0:by1 + 1, bx0:bx1 + 1]
    t = t - [bx0, by0]
    for _ in range(depth):
        src = pyramid_down(src)
        lin, t = lin / 2, t / 2 - [1.25, 0.75]                 # dlib's pyramid_down<2>::point_down
    if src.shape[0] == 0:
        return np.zeros(out_shape, np.uint8)
    c, r = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    x = lin[0, 0] * c + lin[0, 1] * r + t[0]
    y = lin[1, 0] * c + lin[1, 1] * r + t[1]
    return _bilinear(np.ascontiguousarray(src), x, y)


def dlib_chip(image: np.ndarray, points5, size: int = DLIB_CHIP_SIZE, padding: float = DLIB_PADDING) -> np.ndarray:
    """dlib's ``get_face_chip`` without dlib: the chip of a face with five dlib landmarks (BGR in, BGR out)."""
    return extract_chip(image, dlib_chip_matrix(points5, size, padding), size)


def chip_from_template(image: np.ndarray, points, template, size) -> np.ndarray:
    """The chip in which the least-squares similarity puts ``points`` (image pixels, (N, 2)) on
    ``template`` (the same N points in chip pixels), cut as :func:`extract_chip` does (BGR in, BGR out).
    With dlib's geometry: ``template = dlib_template() - 0.5`` for five points in dlib's order."""
    return extract_chip(image, similarity_transform(points, template), size)


__all__ = ["DLIB_5_TEMPLATE", "DLIB_CHIP_SIZE", "DLIB_PADDING", "apply_affine", "chip_from_template",
           "dlib_chip", "dlib_chip_matrix", "dlib_chip_to_image", "dlib_template", "extract_chip",
           "invert_affine", "pyramid_down", "similarity_transform"]

