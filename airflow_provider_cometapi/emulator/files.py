"""In-memory store of the images answered as URLs (``response_format=url``)."""

from __future__ import annotations

import threading
import uuid


class FileStore:
    """Keeps encoded images by name until cleared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[bytes, str]] = {}

    def put(self, data: bytes, extension: str, media_type: str) -> str:
        """Store an image and return its new name, e.g. ``3f2a....png``.

        :param data: the encoded image.
        :param extension: the file extension without the dot.
        :param media_type: the content type to serve it with.
        """
        name = f"{uuid.uuid4().hex}.{extension}"
        with self._lock:
            self._files[name] = (data, media_type)
        return name

    def get(self, name: str) -> tuple[bytes, str] | None:
        """Return ``(data, media_type)`` of a stored image, or ``None``.

        :param name: the name :meth:`put` returned.
        """
        with self._lock:
            return self._files.get(name)

    def clear(self) -> None:
        """Forget every stored image."""
        with self._lock:
            self._files.clear()
