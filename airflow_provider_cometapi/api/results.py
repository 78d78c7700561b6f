"""What an edit returns: the decoded images, the token usage and the request id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.compositing import Drift, MaskedOutput

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True)
class EditedImage:
    """One decoded output image."""

    data: bytes = field(repr=False)
    mime_type: str
    revised_prompt: str | None = None
    url: str | None = None
    check: MaskedOutput | None = field(default=None, repr=False)
    """With a mask: the output's check (``api/compositing.py``), without its bytes."""

    @property
    def drift(self) -> Drift | None:
        """With a mask: what the model changed where the mask keeps pixels (before
        compositing)."""
        return self.check.drift if self.check is not None else None

    @property
    def extension(self) -> str:
        """File extension of the real format: ``png``, ``jpg`` or ``webp``."""
        return EXTENSIONS[self.mime_type]


@dataclass(frozen=True)
class ImageEditResult:
    """The outcome of one edit call."""

    created: int
    images: list[EditedImage]
    usage: dict[str, Any]
    request_id: str | None = None
    retries: int = 0

    def to_xcom(self) -> dict[str, Any]:
        """JSON-friendly summary, without image bytes."""
        return {
            "created": self.created,
            "request_id": self.request_id,
            "usage": self.usage,
            "images": [
                {
                    "mime_type": image.mime_type,
                    "bytes": len(image.data),
                    **({"revised_prompt": image.revised_prompt} if image.revised_prompt else {}),
                    **({"url": image.url} if image.url else {}),
                    **({"drift": image.drift.to_json()} if image.drift else {}),
                }
                for image in self.images
            ],
        }


@dataclass(frozen=True)
class WrittenImage:
    """One output written into a sink: its slot there, its type and size, never its bytes.

    The streaming decoder makes one per ``b64_json`` value; a downloaded output also keeps its URL.
    """

    slot: int
    mime_type: str
    size: int
    revised_prompt: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class EditOutcome:
    """What one edit call streamed into a sink, with the usage and how many retries it took."""

    created: int
    usage: dict[str, Any]
    request_id: str | None
    images: list[WrittenImage]
    retries: int = 0
