"""Untrusted images, as extraction and the Serve image query both meet them: checked from the
header before any pixel is decoded, every failure a reason (never an exception), and no
intermediate image larger than the source."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from metamodal.extract.decode import MAX_PIXELS, load_image


def png(w: int, h: int, colour=(200, 30, 30)) -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="PNG")
    buf.seek(0)
    return buf


def png_header_only(w: int, h: int) -> io.BytesIO:
    """A PNG whose IHDR declares ``w`` x ``h`` and whose data is garbage: a decompression bomb's
    header, without the bomb."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return io.BytesIO(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x00" * 64))


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (lambda: png_header_only(65535, 65535), "image_too_large"),
        (lambda: png_header_only(13000, 13000), "image_too_large"),  # under Pillow's error limit
        (lambda: png(3, 3000), "image_extreme_aspect"),
        (lambda: png(1, 40), "image_too_small"),
        (lambda: io.BytesIO(png(50, 50).getvalue()[:80]), "image_corrupt"),
        (lambda: io.BytesIO(b"GIF89a" + b"\x00" * 10), "image_unreadable"),
        (lambda: io.BytesIO(b"not an image at all"), "image_unreadable"),
        (lambda: "/no/such/file.jpg", "image_file_missing"),
    ],
)
def test_bad_images_become_reasons(image, reason) -> None:
    px, why = load_image(image(), 32)
    assert px is None and why == reason


def test_good_images_give_the_centre_square_at_the_size_asked() -> None:
    im = Image.new("RGB", (300, 100), (0, 0, 255))
    im.paste((255, 0, 0), (100, 0, 200, 100))  # the centre square is red, the sides blue
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    buf.seek(0)
    px, why = load_image(buf, 32)
    assert why == "" and px.shape == (32, 32, 3) and px.dtype == np.uint8
    assert (px[..., 0] > 200).all() and (px[..., 2] < 50).all()
    assert MAX_PIXELS < Image.MAX_IMAGE_PIXELS  # our cap sits below Pillow's own
