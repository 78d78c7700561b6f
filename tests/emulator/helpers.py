"""Constants and small helpers shared by the emulator tests."""

from __future__ import annotations

import base64

from tests.imaging import decode, image_bytes

KEY = "test-key-0123456789"
PROMPT = "Add a small red ribbon"


def png_part(data: bytes | None = None, name: str = "image.png", field: str = "image"):
    """One multipart file part for ``requests``, a 64x48 PNG by default."""
    return (field, (name, image_bytes() if data is None else data, "image/png"))


def outputs(response):
    """Decode every ``b64_json`` image of an edit response."""
    return [decode(base64.b64decode(item["b64_json"])) for item in response.json()["data"]]
