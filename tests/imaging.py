"""Small image factories for tests."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def image_bytes(size=(64, 48), fmt="PNG", mode="RGB", color=(30, 120, 200)) -> bytes:
    """Encode a solid image of ``size`` in ``fmt``."""
    if mode in ("RGBA", "LA") and len(color) == 3:
        color = (*color, 255) if mode == "RGBA" else (color[0], 255)
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def mask_bytes(size=(64, 48), hole=(8, 8, 24, 24)) -> bytes:
    """An RGBA mask: opaque everywhere except a transparent ``hole`` (left, top, right, bottom)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def declared_size_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + png_chunk(b"IEND", b"")
    )


def decode(data: bytes) -> Image.Image:
    """Open and fully load image bytes."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
