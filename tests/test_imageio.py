import struct
import zlib

import cv2
import numpy as np
import pytest

from iznet.errors import ImageError, NotFoundError
from iznet.imageio import decode_image, encode_image, read_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries no pixel data (a decompression-bomb shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_roundtrip_keeps_pixels_and_layout():
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    out = decode_image(encode_image(img, ".png"))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert np.array_equal(out, img)


def test_grayscale_comes_back_with_three_channels(tmp_path):
    gray = np.full((20, 10), 77, dtype=np.uint8)
    path = tmp_path / "g.pgm"
    cv2.imwrite(str(path), gray)
    img = read_image(path)
    assert img.shape == (20, 10, 3) and (img == 77).all()


def test_huge_image_refused_from_its_header_without_decoding():
    with pytest.raises(ImageError, match=r"too large: 100000x100000"):
        decode_image(png_header_only(100_000, 100_000))


@pytest.mark.parametrize("data, reason", [(b"", "empty"), (b"not an image at all", "not a readable image")])
def test_garbage_is_refused_with_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_corrupt(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode_image(img, ".jpg")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:40])
    with pytest.raises(ImageError, match=str(path)):
        read_image(path)


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="no such file"):
        read_image(tmp_path / "nope.jpg")


def test_the_pixel_budget_bounds_decoded_pixels_in_flight():
    import threading
    import time

    from iznet.errors import ResourceExhaustedError
    from iznet.imageio import PixelBudget

    budget, peak, lock = PixelBudget(100), [0], threading.Lock()

    def work():
        with budget.hold(60, wait_s=10):
            with lock:
                peak[0] = max(peak[0], budget.held)
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 60 and budget.held == 0  # one at a time: two would be 120 > 100
    with budget.hold(80):
        with pytest.raises(ResourceExhaustedError, match="busy"):
            with budget.hold(50, wait_s=0.1):
                pass
    with budget.hold(500):  # larger than the whole budget: runs alone
        assert budget.held == 500
