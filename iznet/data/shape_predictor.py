"""dlib's 5-point face landmark predictor, read and run in NumPy (no dlib at run time).

The model is an ensemble of regression trees (Kazemi & Sullivan, "One Millisecond Face Alignment with an
Ensemble of Regression Trees", CVPR 2014) in dlib's serialisation of ``dlib::shape_predictor``; the file is
``shape_predictor_5_face_landmarks.dat`` (CC0), found by :func:`iznet.imported.imported_file`. It gives five
landmarks to detectors that give none (Haar, Ultra-Light, the YOLO detector), so their faces can be aligned
onto dlib's face-chip geometry::

    sp = ShapePredictor.load()                    # the pinned dlib-shape-5 file, sha256-checked
    pts = sp.predict(image_bgr, box)              # (5, 2) float32, pixel coordinates
    many = sp.predict_many(image_bgr, boxes)      # (N, 5, 2)

The five points, in dlib's order ("left"/"right" as seen in the image, so the image-right eye is the
person's left eye):

    0  outer corner of the image-right eye     1  inner corner of the image-right eye
    2  outer corner of the image-left eye      3  inner corner of the image-left eye
    4  base of the nose (just under the tip, between the nostrils)

This is *not* :class:`iznet.detection.types.FaceBox`'s 5-landmark order (eyes, nose, mouth corners): see
:data:`POINT_NAMES` and :func:`eye_centres`.

Boxes are ``(x1, y1, x2, y2)`` with ``x2``/``y2`` exclusive, as everywhere in IZ*Net (width = x2 - x1).
dlib's ``rectangle(left, top, right, bottom)`` is inclusive, so it is the box ``(left, top, right + 1,
bottom + 1)`` (see :func:`box_from_dlib_rect`), and dlib's normalising transform maps (left, top) to (0, 0)
and (right, bottom) = (x2 - 1, y2 - 1) to (1, 1): a box's shape space spans width - 1 pixels, not width.
Integer boxes reproduce dlib exactly; fractional boxes are used as they are (dlib cannot take them).
Points are in pixel-index coordinates (pixel (i, j) has its centre at x = i, y = j), as dlib and OpenCV use.

What the algorithm does (dlib/image_processing/shape_predictor.h): the shape starts at the mean shape, in
the box's unit square. Each of the cascade's levels (15 here) samples its own pixels (800 here), each placed
relative to its nearest landmark of the mean shape (an anchor and a delta), moved with the similarity
transform that takes the mean shape onto the current one, mapped into the image and read at the nearest
pixel (rounding half up; outside the image reads 0) as grey (R + G + B) // 3. Every tree of the level
compares two of these intensities per node (left when a - b > threshold) down to a leaf, and adds that
leaf's shape update.

dlib does the shape arithmetic in float32 (the leaf updates are added one tree after another, so the sum's
rounding is sequential), the transforms in float64, and returns the points rounded to integers; here the
same arithmetic is done in the same precision and the points are returned unrounded (``dlib_rounding=True``
rounds them as dlib does: floor(x + 0.5)). The precision is not a nicety: summing the updates in float64
instead moved a nearest-pixel lookup often enough that 64 of 1,086 test faces ended up to 11 px from
dlib's points; in dlib's float32 order all 1,086 are identical.
"""

from __future__ import annotations

import bz2
import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from iznet.errors import UserInputError

KEY = "dlib-shape-5"

#: dlib's point order for the 5-point model (left/right as seen in the image).
POINT_NAMES = ("right_eye_outer", "right_eye_inner", "left_eye_outer", "left_eye_inner", "nose_base")

#: dlib's face-chip template for the 5 points (get_face_chip_details, dlib/image_transforms/interpolation.h):
#: where each point lands in a chip with no padding, as fractions of its side.
CHIP_TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                          [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                          [0.4901123135679, 0.6277975316475]], dtype=np.float64)


def box_from_dlib_rect(left: float, top: float, right: float, bottom: float) -> tuple[float, float, float, float]:
    """The IZ*Net box (x2, y2 exclusive) of dlib's inclusive ``rectangle(left, top, right, bottom)``."""
    return float(left), float(top), float(right) + 1.0, float(bottom) + 1.0


def eye_centres(points: np.ndarray) -> np.ndarray:
    """(..., 2, 2) image-left then image-right eye centres (mean of each eye's two corners) from dlib's 5 points:
    the two-eye landmarks of :class:`~iznet.detection.types.FaceBox`."""
    p = np.asarray(points, dtype=np.float32)
    return np.stack([(p[..., 2, :] + p[..., 3, :]) / 2, (p[..., 0, :] + p[..., 1, :]) / 2], axis=-2)


# --- dlib's serialisation ---------------------------------------------------------------------------------
#
# Every value in the file is an integer in dlib's variable-length format: a control byte whose low 4 bits
# give the number of payload bytes (1..8, little-endian magnitude) and whose 0x80 bit is the sign; bits 0x70
# are always 0 (dlib's older ASCII float format is told apart by them). A float or double is two integers,
# mantissa then exponent (value = mantissa * 2**exponent, exponent 32000/32001/32002 = inf/-inf/nan), so a
# file of floats is still one stream of integers. std::vector is its size then its items; dlib::matrix is
# -rows, -cols (negative in the current format) then the items row by row; dlib::vector<float,2> is x, y.

_BLOCK = 4096   # bytes per block when finding where the integers start (see _token_starts)
_SYNC = 512     # bytes into a block by which walks from any entry have met (checked; else a plain loop)


def _token_starts(buf: np.ndarray) -> np.ndarray:
    """Offsets where the integers of a dlib stream start: the chain 0, 0 + 1 + len0, ..., without a Python
    loop over the ~3 million integers.

    An integer is at most 9 bytes long, so the chain enters each block at one of its first 9 bytes, and the
    walks from those 9 entries meet within a few integers (they are then the same walk). So: walk every
    block from all 9 entries to the first offset past ``_SYNC`` bytes; where they all agree, that offset is
    on the chain whatever the entry. Then walk every block from its meeting point to the next block's,
    marking the starts. A block whose walks do not meet (never seen) sends the whole file to a plain loop.
    """
    n = len(buf)
    step = np.ones(n + 16, dtype=np.int32)
    step[:n] = 1 + (buf & 0x0F)  # a bad control byte (size 0) still moves on; it is reported later
    nblocks = -(-n // _BLOCK)
    base = np.arange(nblocks, dtype=np.int64) * _BLOCK
    pos = base[:, None] + np.arange(9, dtype=np.int64)[None, :]
    pos = np.minimum(pos, n)
    limit = np.minimum(base + _SYNC, n)[:, None]
    while True:
        active = pos < limit
        if not active.any():
            break
        pos += np.where(active, step[pos], 0)
    # (a block too short to meet in is the file's last: the chain just runs to the end there)
    met = (pos == pos[:, :1]).all(axis=1) | (limit[:, 0] >= n)
    if not met.all():
        return _token_starts_loop(buf)
    meet = np.where(limit[:, 0] >= n, n, pos[:, 0])
    # the chain from byte 0 reaches block 0's meeting point (entry 0 is one of the 9 walks)
    stop = np.append(meet[1:], n)
    is_start = np.zeros(n + 16, dtype=bool)
    is_start[0] = True
    cur = meet.copy()
    while True:
        active = cur < stop
        if not active.any():
            break
        is_start[cur[active]] = True
        cur += np.where(active, step[np.minimum(cur, n)], 0)
    if (cur != stop).any():  # a walk overshot the next meeting point: cannot happen for a real chain
        return _token_starts_loop(buf)
    # and the prefix of block 0 up to its meeting point
    p = 0
    while p < meet[0]:
        is_start[p] = True
        p += int(step[p])
    starts = np.flatnonzero(is_start[:n])
    _check_end(starts, step, n)
    return starts


def _token_starts_loop(buf: np.ndarray) -> np.ndarray:
    data = buf.tobytes()
    n, i, out = len(data), 0, []
    while i < n:
        out.append(i)
        i += 1 + (data[i] & 0x0F)
    starts = np.asarray(out, dtype=np.int64)
    step = np.ones(n + 16, dtype=np.int32)
    step[:n] = 1 + (buf & 0x0F)
    _check_end(starts, step, n)
    return starts


def _check_end(starts: np.ndarray, step: np.ndarray, n: int) -> None:
    last_end = int(starts[-1] + step[starts[-1]]) if len(starts) else 0
    if last_end != n:
        raise _FormatError(f"the last integer, at byte {int(starts[-1])}, runs past the end of the file "
                           "(truncated?)")


def _decode_ints(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """All the integers of a dlib stream as int64, and their byte offsets (for error messages)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) == 0:
        raise _FormatError("the file is empty")
    starts = _token_starts(buf)
    ctrl = buf[starts]
    size = ctrl & 0x0F
    bad = np.flatnonzero(((ctrl & 0x70) != 0) | (size == 0) | (size > 8))
    if len(bad):
        at = int(starts[bad[0]])
        raise _FormatError(f"byte {at} (0x{int(buf[at]):02x}) is not a dlib integer control byte")
    # each integer's 8 bytes after its control byte, read as one little-endian uint64, masked to its size
    padded = np.concatenate([buf, np.zeros(9, np.uint8)])
    rows = np.lib.stride_tricks.as_strided(padded, shape=(len(buf), 8), strides=(1, 1), writeable=False)
    mag = np.ascontiguousarray(rows[starts + 1]).view("<u8")[:, 0]
    full = np.uint64(0xFFFFFFFFFFFFFFFF)
    mask = np.where(size >= 8, full, (np.uint64(1) << (np.uint64(8) * size.astype(np.uint64))) - np.uint64(1))
    mag = mag & mask
    if (mag > np.uint64(2**63 - 1)).any():
        raise _FormatError("an integer does not fit in 64 bits")
    vals = mag.astype(np.int64)
    vals = np.where(ctrl & 0x80, -vals, vals)
    return vals, starts


class _FormatError(Exception):
    pass


class _Reader:
    """A cursor over the integer stream, with dlib's composite types on top."""

    def __init__(self, vals: np.ndarray, offsets: np.ndarray):
        self.v = vals
        self.off = offsets
        self.i = 0

    def where(self) -> str:
        return f"byte {int(self.off[self.i])}" if self.i < len(self.off) else "the end of the file"

    def take(self, k: int, what: str) -> np.ndarray:
        if k < 0 or self.i + k > len(self.v):
            raise _FormatError(f"the file ends inside {what} (truncated?)")
        out = self.v[self.i:self.i + k]
        self.i += k
        return out

    def count(self, what: str, limit: int = 1 << 24) -> int:
        at = self.where()
        n = int(self.take(1, what)[0])
        if not 0 <= n <= limit:
            raise _FormatError(f"{what} is {n} at {at}: not a sensible count")
        return n

    def floats(self, k: int, what: str) -> np.ndarray:
        return _floats(self.take(2 * k, what).reshape(k, 2), what)

    def column(self, what: str) -> np.ndarray:
        """A dlib::matrix<float,0,1>."""
        at = self.where()
        nr, nc = (int(x) for x in self.take(2, what))
        nr, nc = abs(nr), abs(nc)
        if nc != 1 or nr > 1 << 20:
            raise _FormatError(f"{what} at {at} is a {nr}x{nc} matrix, not a column vector")
        return self.floats(nr, what)


def _floats(pairs: np.ndarray, what: str) -> np.ndarray:
    """float32 values of (mantissa, exponent) pairs, as dlib's float_details converts them to float."""
    mant, expo = pairs[..., 0], pairs[..., 1]
    if (expo >= 32000).any():
        raise _FormatError(f"{what} holds an infinite or NaN value")
    if (np.abs(expo) > 300).any():
        raise _FormatError(f"{what} holds a float with exponent out of range")
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(mant.astype(np.float32), expo.astype(np.int32)).astype(np.float32)
    if not np.isfinite(out).all():
        raise _FormatError(f"{what} holds a value out of float range")
    return out


# --- the model --------------------------------------------------------------------------------------------

@dataclass
class Level:
    """One level of the cascade: its pixels (relative to the mean shape) and its forest of equal-depth trees."""

    anchor: np.ndarray    # (P,) int64: the mean-shape landmark each feature pixel hangs on
    deltas: np.ndarray    # (P, 2) float32: the pixel's offset from its anchor, in mean-shape units
    idx1: np.ndarray      # (T, S) int64: per split node (breadth-first), the two feature pixels compared ...
    idx2: np.ndarray      # (T, S) int64
    thresh: np.ndarray    # (T, S) float32: ... go left when value[idx1] - value[idx2] > thresh
    leaves: np.ndarray    # (T, S + 1, 2K) float32: the shape update at each leaf (x0, y0, x1, y1, ...)


class ShapePredictor:
    """dlib's shape_predictor as NumPy arrays; ``predict`` is thread-safe (the model is read only)."""

    def __init__(self, initial_shape: np.ndarray, levels: list[Level], version: dict[str, Any]):
        self.initial_shape = np.ascontiguousarray(initial_shape, dtype=np.float32).reshape(-1, 2)
        self.levels = levels
        self.version = version
        self.num_parts = len(self.initial_shape)
        self.depth = int(math.log2(levels[0].idx1.shape[1] + 1)) if levels else 0
        # The similarity transform mean shape -> current shape, as a (2K, 2) matrix W: [a, b] = shape @ W
        # (None: the identity, for a one-point mean shape).
        self._sim = _similarity_matrix(self.initial_shape)
        # Per-level tables for the vectorised traversal. With S <= 16 splits per tree (depth <= 4) every split
        # of every tree is evaluated at once (S x T comparisons, cheaper than a NumPy step per depth), the S
        # outcomes weighted into a code and a table maps code -> leaf; deeper trees walk depth by depth.
        self._use_table = bool(levels) and levels[0].idx1.shape[1] <= 16
        self._leaf_table = _leaf_table(levels[0].idx1.shape[1]) if self._use_table else None
        self._tables = []
        for lv in levels:
            t, sp = lv.idx1.shape
            self._tables.append(_LevelTables(
                axy=np.stack([lv.anchor * 2, lv.anchor * 2 + 1]),                   # (2, P) into a flat shape
                dx=np.ascontiguousarray(lv.deltas[:, 0]), dy=np.ascontiguousarray(lv.deltas[:, 1]),
                idx12=np.concatenate([lv.idx1.ravel(), lv.idx2.ravel()]), thresh=lv.thresh.ravel(),
                weights=(2.0 ** np.arange(sp)).astype(np.float32),
                leaves=lv.leaves.reshape(t * (sp + 1), -1),                         # tree t's leaves from t * L
                split0=np.arange(t, dtype=np.int64) * sp, leaf0=np.arange(t, dtype=np.int64) * (sp + 1),
                idx1=lv.idx1.ravel(), idx2=lv.idx2.ravel()))

    # --- loading ------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ShapePredictor":
        """Read a dlib shape predictor file (default: the pinned ``dlib-shape-5``); a ``.bz2`` is decompressed.

        Raises :class:`~iznet.errors.UserInputError` for a file that is not one (the message says where it
        went wrong), :class:`~iznet.imported.MissingModelError` when the default's package is not installed.
        """
        from iznet.imported import FILES, imported_file

        pinned = FILES[KEY]
        if path is None:
            path = imported_file(KEY)
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UserInputError(f"cannot read shape predictor file {path}: {e.strerror or e}") from None
        digest = hashlib.sha256(data).hexdigest()
        if data[:3] == b"BZh":
            try:
                data = bz2.decompress(data)
            except (OSError, ValueError, EOFError) as e:
                raise UserInputError(f"{path} looks bzip2-compressed but does not decompress: {e}") from None
        try:
            initial, levels = _parse(data)
        except _FormatError as e:
            raise UserInputError(f"{path} is not a dlib shape predictor file this code can read: {e}") from None
        known = digest == pinned.sha256
        version = {
            "name": KEY if known else path.stem, "version": f"{pinned.package} {pinned.version}" if known else "",
            "digest": "sha256:" + digest, "kind": "landmarks", "licence": pinned.licence if known else "",
            "num_parts": len(initial) // 2, "cascade_levels": len(levels),
            "trees_per_level": int(levels[0].idx1.shape[0]) if levels else 0,
            "tree_depth": int(math.log2(levels[0].idx1.shape[1] + 1)) if levels else 0,
            "feature_pixels_per_level": int(levels[0].anchor.shape[0]) if levels else 0,
        }
        return cls(initial.reshape(-1, 2), levels, version)

    def __repr__(self) -> str:
        v = self.version
        return (f"ShapePredictor({v['name']}, {self.num_parts} points, {len(self.levels)} levels x "
                f"{v['trees_per_level']} trees of depth {self.depth}, {v['digest'][:19]})")

    # --- running ------------------------------------------------------------------------------------------

    def predict(self, image: np.ndarray, box: Any, *, dlib_rounding: bool = False) -> np.ndarray:
        """(K, 2) float32 landmark pixel coordinates of the face in ``box`` (x1, y1, x2, y2 or a FaceBox).

        ``image`` is BGR (or RGB: the grey value is the channel mean), BGRA or grey, uint8.
        """
        return self.predict_many(image, [box], dlib_rounding=dlib_rounding)[0]

    def predict_many(self, image: np.ndarray, boxes: Sequence[Any] | np.ndarray, *,
                     dlib_rounding: bool = False) -> np.ndarray:
        """(N, K, 2) float32 landmarks for N boxes in one image, all faces run together."""
        img = _check_image(image)
        rects = _rects(boxes)
        n = len(rects)
        if n == 0:
            return np.zeros((0, self.num_parts, 2), np.float32)
        h, w = img.shape[:2]
        flat = img.reshape(h * w, -1)
        grey = flat.shape[1] == 1
        if grey:
            flat = flat.reshape(-1)
        # the unnormalising transform of dlib's rectangle: (0,0) -> (left, top), (1,1) -> (right, bottom)
        origin = rects[:, :2, None]                                                  # (n, 2, 1) float64
        scale = rects[:, 2:, None] - origin
        size = np.array([[w], [h]], dtype=np.uint64)
        k2 = 2 * self.num_parts
        shape = np.repeat(self.initial_shape.reshape(1, k2), n, axis=0)          # (n, 2K) float32
        n_trees = len(self._tables[0].split0) if self._tables else 0
        seq = np.empty((n, n_trees + 1, k2), dtype=np.float32)
        sign = np.array([[-1.0], [1.0]], dtype=np.float32)
        for tb in self._tables:
            # the similarity transform [[a, -b], [b, a]] (float64, then float32 as dlib casts it)
            if self._sim is None:
                ab = np.repeat(np.array([[[1.0], [0.0]]], np.float32), n, axis=0)
            else:
                ab = (shape.astype(np.float64) @ self._sim).astype(np.float32)[:, :, None]  # (n, 2, 1): a, b
            # each feature pixel in the current shape, float32 in dlib's order: tform * delta + anchor point,
            # i.e. x = (a dx + -b dy) + anchor x, y = (b dx + a dy) + anchor y
            uv = (ab * tb.dx + (ab[:, ::-1] * sign) * tb.dy) + np.take(shape, tb.axy, axis=1)  # (n, 2, P)
            # to pixels in float64, then the nearest pixel (rounding half up); outside the image reads 0
            pxy = np.floor(origin + scale * uv.astype(np.float64) + 0.5).astype(np.int64)
            inside = (pxy.view(np.uint64) < size).all(axis=1)                          # (n, P)
            lin = (pxy[:, 1] * w + pxy[:, 0]) * inside
            if grey:
                vals = np.take(flat, lin) * inside.astype(np.float32)
            else:  # dlib's get_pixel_intensity of a colour pixel: (R + G + B) // 3, alpha ignored
                px = np.take(flat, lin, axis=0).astype(np.uint16)
                vals = np.take(_THIRDS, px[..., 0] + px[..., 1] + px[..., 2]) * inside
            leaf = self._leaves(vals, tb)                                                  # (n, T)
            # dlib adds the trees' updates one after another in float32: a sequential cumulative sum
            seq[:, 0] = shape
            np.take(tb.leaves, tb.leaf0 + leaf, axis=0, out=seq[:, 1:], mode="clip")
            shape = np.add.accumulate(seq, axis=1)[:, -1]
        cur = shape.reshape(n, -1, 2).astype(np.float64)
        out = origin[:, None, :, 0] + scale[:, None, :, 0] * cur
        if dlib_rounding:
            out = np.floor(out + 0.5)
        return out.astype(np.float32)

    def _leaves(self, vals: np.ndarray, tb: "_LevelTables", walk: bool = False) -> np.ndarray:
        """(n, T) leaf index each tree reaches from each face's feature pixel values ``vals`` (n, P)."""
        n, t = len(vals), len(tb.split0)
        if self._use_table and not walk:
            g = vals.reshape(-1).take(tb.idx12)[None] if n == 1 else np.take(vals, tb.idx12, axis=1)
            half = len(tb.thresh)
            go_left = (g[:, :half] - g[:, half:]) > tb.thresh                     # (n, T * S)
            code = go_left.reshape(n * t, -1).astype(np.float32) @ tb.weights     # exact: sums of powers of 2
            return self._leaf_table[code.astype(np.int64)].reshape(n, t)
        rows = np.arange(n)[:, None] * vals.shape[1]
        flat = vals.ravel()
        node = np.zeros((n, t), dtype=np.int64)
        for _ in range(self.depth):
            s = tb.split0 + node
            node = 2 * node + 2 - ((flat[rows + tb.idx1[s]] - flat[rows + tb.idx2[s]]) > tb.thresh[s])
        return node - (2 ** self.depth - 1)


#: (R + G + B) // 3 for every channel sum, as float32
_THIRDS = (np.arange(3 * 255 + 1) // 3).astype(np.float32)


@dataclass
class _LevelTables:
    axy: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    idx12: np.ndarray
    thresh: np.ndarray
    weights: np.ndarray
    leaves: np.ndarray
    split0: np.ndarray
    leaf0: np.ndarray
    idx1: np.ndarray
    idx2: np.ndarray


def _similarity_matrix(initial: np.ndarray) -> np.ndarray | None:
    """(2K, 2) float64 W with [a, b] = shape @ W: the least-squares similarity [[a, -b], [b, a]] taking the
    mean shape onto a shape (flattened x0, y0, x1, ...). dlib solves it with Umeyama's SVD method, which for
    a proper rotation comes to the same closed form (a = sum r.c / sum |r|^2, b = sum r x c / sum |r|^2 with
    r the centred mean shape; centring c is not needed because r sums to 0)."""
    r = initial.astype(np.float64)
    r = r - r.mean(axis=0)
    var = float((r ** 2).sum())
    if var == 0 or len(r) < 2:  # dlib: the identity for one landmark (or a mean shape of one point)
        return None
    w = np.zeros((r.size, 2))
    w[0::2, 0], w[1::2, 0] = r[:, 0] / var, r[:, 1] / var       # a = sum(rx cx + ry cy) / var
    w[0::2, 1], w[1::2, 1] = -r[:, 1] / var, r[:, 0] / var      # b = sum(rx cy - ry cx) / var
    return w


_default: ShapePredictor | None = None
_default_lock = threading.Lock()


def default_predictor() -> ShapePredictor:
    """The pinned dlib-shape-5 predictor, loaded once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ShapePredictor.load()
        return _default


# --- helpers ------------------------------------------------------------------------------------------------

def _leaf_table(n_splits: int) -> np.ndarray:
    """For a full tree of ``n_splits`` nodes (breadth-first, children of i at 2i+1 and 2i+2): the leaf reached
    for each code whose bit i says "node i goes left"."""
    depth = int(math.log2(n_splits + 1))
    code = np.arange(1 << n_splits, dtype=np.int64)
    node = np.zeros_like(code)
    for _ in range(depth):
        node = 2 * node + 2 - ((code >> node) & 1)
    return (node - n_splits).astype(np.int64)


def _parse(data: bytes) -> tuple[np.ndarray, list[Level]]:
    vals, offsets = _decode_ints(data)
    r = _Reader(vals, offsets)
    version = int(r.take(1, "the version")[0])
    if version != 1:
        raise _FormatError(f"it starts with version {version}, not dlib shape_predictor's version 1")
    initial = r.column("the initial shape")
    if len(initial) == 0 or len(initial) % 2:
        raise _FormatError(f"the initial shape has {len(initial)} values, not 2 per landmark")
    k2 = len(initial)
    n_levels = r.count("the number of cascade levels", 1000)
    forests = []
    for lvl in range(n_levels):
        forests.append(_read_forest(r, lvl, k2))
    if r.count("the number of anchor lists", 1000) != n_levels:
        raise _FormatError("the anchor lists do not match the cascade levels")
    anchors = []
    for lvl in range(n_levels):
        p = r.count(f"level {lvl}'s number of feature pixels")
        a = r.take(p, f"level {lvl}'s anchors").copy()
        if (a < 0).any() or (a >= k2 // 2).any():
            raise _FormatError(f"level {lvl} has an anchor that is not one of the {k2 // 2} landmarks")
        anchors.append(a)
    if r.count("the number of delta lists", 1000) != n_levels:
        raise _FormatError("the pixel offsets do not match the cascade levels")
    levels = []
    for lvl in range(n_levels):
        p = r.count(f"level {lvl}'s number of pixel offsets")
        if p != len(anchors[lvl]):
            raise _FormatError(f"level {lvl} has {len(anchors[lvl])} anchors but {p} pixel offsets")
        d = r.floats(2 * p, f"level {lvl}'s pixel offsets").reshape(p, 2)
        idx1, idx2, thresh, leaves = forests[lvl]
        if idx1.size and (max(idx1.max(), idx2.max()) >= p or min(idx1.min(), idx2.min()) < 0):
            raise _FormatError(f"a tree of level {lvl} compares a pixel that level does not have ({p} pixels)")
        levels.append(Level(anchors[lvl], d, idx1, idx2, thresh, leaves))
    if r.i != len(vals):
        raise _FormatError(f"unexpected data after the model, from {r.where()}")
    depths = {lv.idx1.shape[1] for lv in levels}
    if len(depths) > 1:
        raise _FormatError(f"its levels have trees of different depths ({sorted(depths)} splits): not supported")
    return initial, levels


def _read_forest(r: _Reader, lvl: int, k2: int):
    """One level's trees, read as one regular block: every tree must have the first tree's shape."""
    n_trees = r.count(f"level {lvl}'s number of trees")
    if n_trees == 0:
        raise _FormatError(f"level {lvl} has no trees")
    start = r.i
    n_splits = r.count(f"level {lvl}'s first tree's number of splits", 1 << 16)
    r.i = start + 1 + 4 * n_splits
    n_leaves = r.count(f"level {lvl}'s first tree's number of leaves", 1 << 17)
    if n_leaves != n_splits + 1 or n_leaves & (n_leaves - 1):
        raise _FormatError(f"level {lvl}'s first tree has {n_splits} splits and {n_leaves} leaves: not a full "
                           "binary tree")
    r.i = start
    per_leaf = 2 + 2 * k2
    per_tree = 1 + 4 * n_splits + 1 + n_leaves * per_leaf
    block = r.take(n_trees * per_tree, f"level {lvl}'s trees").reshape(n_trees, per_tree)
    if (block[:, 0] != n_splits).any() or (block[:, 1 + 4 * n_splits] != n_leaves).any():
        raise _FormatError(f"the trees of level {lvl} are not all the same size: not supported")
    splits = block[:, 1:1 + 4 * n_splits].reshape(n_trees, n_splits, 4)
    leaf_part = block[:, 2 + 4 * n_splits:].reshape(n_trees, n_leaves, per_leaf)
    if (np.abs(leaf_part[..., 0]) != k2).any() or (np.abs(leaf_part[..., 1]) != 1).any():
        raise _FormatError(f"a leaf of level {lvl} is not a column of {k2} values (2 per landmark)")
    idx1, idx2 = splits[..., 0].copy(), splits[..., 1].copy()
    thresh = _floats(splits[..., 2:4], f"level {lvl}'s split thresholds")
    leaves = _floats(leaf_part[..., 2:].reshape(n_trees, n_leaves, k2, 2), f"level {lvl}'s leaf values")
    return idx1, idx2, thresh, np.ascontiguousarray(leaves)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise UserInputError(f"the shape predictor needs a uint8 image, not {img.dtype}")
    if img.ndim == 3 and img.shape[2] in (1, 3, 4):
        pass
    elif img.ndim != 2:
        raise UserInputError(f"the shape predictor needs an HxW grey or HxWx3 colour image, not shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise UserInputError("the image is empty")
    return np.ascontiguousarray(img)


def _rects(boxes: Sequence[Any] | np.ndarray) -> np.ndarray:
    """(N, 4) float64 dlib rectangles (left, top, right, bottom inclusive) from IZ*Net boxes."""
    out = []
    for b in (boxes if not isinstance(boxes, np.ndarray) else boxes.reshape(-1, 4)):
        if hasattr(b, "x1"):
            vals = (b.x1, b.y1, b.x2, b.y2)
        else:
            vals = tuple(b) if not isinstance(b, np.ndarray) else tuple(b.reshape(-1))
            if len(vals) != 4:
                raise UserInputError(f"a box is (x1, y1, x2, y2), not {len(vals)} numbers")
        try:
            x1, y1, x2, y2 = (float(v) for v in vals)
        except (TypeError, ValueError):
            raise UserInputError(f"a box must hold numbers, not {vals!r}") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise UserInputError(f"a box must be finite, not {vals!r}")
        out.append((x1, y1, x2 - 1.0, y2 - 1.0))
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)
