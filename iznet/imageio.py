"""Reading images safely: every failure becomes an :class:`ImageError` with a reason a person can act on.

Images are NumPy arrays in OpenCV's BGR order, uint8, shape (H, W, 3). Grayscale sources (PGM) come back as
three equal channels so that every later stage sees one layout.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from iznet.errors import ImageError, NotFoundError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".webp", ".tif", ".tiff"})

DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# Pillow's own bomb guard would warn or raise with its own wording; we check the size ourselves.
Image.MAX_IMAGE_PIXELS = None


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"not a readable image ({exc.__class__.__name__})") from None


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, PGM, ...) into a BGR uint8 array.

    The header is checked before decoding so that a huge image is refused without allocating it.
    EXIF orientation is applied (OpenCV's default), so phone photos come out upright.
    """
    if not data:
        raise ImageError("empty image (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"image file too large: {len(data):,} bytes > limit {max_bytes:,}")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} = {width * height:,} pixels > limit {max_pixels:,}")
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if array is None:
        raise ImageError("corrupt image: the decoder could not read its pixels")
    return array


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Read an image file into BGR uint8; missing, unreadable, corrupt or huge files raise with the reason."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageError(f"{path}: file too large: {size:,} bytes > limit {max_bytes:,}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def encode_image(image: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext.lower() in {".jpg", ".jpeg"} else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ImageError(f"cannot encode image as {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike[str], image: np.ndarray, quality: int = 95) -> None:
    """Write atomically (temporary file, then rename), so a crash never leaves half an image behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_image(image, path.suffix or ".jpg", quality)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class PixelBudget:
    """A bound on decoded pixels held at once by one process: each call reserves its image's pixel count
    (read from the header) before decoding, waits up to ``wait_s`` for room, else is refused with
    :class:`~iznet.errors.ResourceExhaustedError`. Four 64-Mpx photos at once then cost at most the budget,
    not 4 x 0.75 GB. One image larger than the whole budget runs alone, when nothing else holds any."""

    def __init__(self, max_pixels: int):
        import threading

        self.max_pixels, self.held = int(max_pixels), 0
        self._cond = threading.Condition()

    def hold(self, pixels: int, wait_s: float = 5.0):
        import contextlib
        import time

        from iznet.errors import ResourceExhaustedError

        @contextlib.contextmanager
        def held():
            deadline = time.monotonic() + max(0.0, wait_s)
            with self._cond:
                while self.held and self.held + pixels > self.max_pixels:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ResourceExhaustedError(
                            f"busy: {self.held:,} decoded pixels in flight, this photo needs {pixels:,} more "
                            f"(budget {self.max_pixels:,}); send it again shortly")
                    self._cond.wait(left)
                self.held += pixels
            try:
                yield
            finally:
                with self._cond:
                    self.held -= pixels
                    self._cond.notify_all()

        return held()
