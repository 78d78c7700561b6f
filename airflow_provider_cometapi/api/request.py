"""The image-edit request: check every parameter, then lay out the multipart form."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_provider_cometapi.api.images import (
    MAX_IMAGES,
    ImageInput,
    ImagePart,
    check_image,
    check_mask,
    read_image_input,
)
from airflow_provider_cometapi.exceptions import CometAPIValidationError

EDIT_PATH = "/v1/images/edits"
MODELS_PATH = "/v1/models"
MAX_PROMPT_CHARS = 32_000
QUALITIES = ("high", "medium", "low", "auto", "standard")
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
_SIZE = re.compile(r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")
_OWN_FIELDS = {"image", "image[]", "mask", "prompt", "model", "n", "quality", "size"} | {
    "response_format",
    "output_format",
}


@dataclass(frozen=True)
class EditRequest:
    """A checked edit request: text fields and file parts, in the order they are sent."""

    fields: list[tuple[str, str]]
    images: list[ImagePart] = field(repr=False)
    mask: ImagePart | None = field(default=None, repr=False)
    model: str = ""
    response_format: str | None = None

    @property
    def image_field(self) -> str:
        """``image`` for one image, ``image[]`` for several (as the ``openai`` SDK sends)."""
        return "image" if len(self.images) == 1 else "image[]"

    def file_parts(self) -> list[tuple[str, tuple[str, bytes, str]]]:
        """Multipart file parts as ``(field, (filename, data, mime type))``."""
        parts = [(self.image_field, (p.filename, p.data, p.mime_type)) for p in self.images]
        if self.mask is not None:
            parts.append(("mask", (self.mask.filename, self.mask.data, self.mask.mime_type)))
        return parts


@dataclass(frozen=True)
class EditParams:
    """Every edit parameter but the images: the one list the hook, operators and trigger share.

    JSON-friendly, so it travels to the triggerer as ``to_dict()``.
    """

    prompt: str
    model: str
    n: int | None = None
    quality: str | None = None
    size: str | None = None
    output_format: str | None = None
    response_format: str | None = None
    extra_fields: Mapping[str, Any] | None = None

    def checked(self) -> EditParams:
        """These parameters, checked by ``form_fields``, with ``n`` as a number; raise
        ``CometAPIValidationError`` on the first fault, naming the field."""
        self.form_fields()
        return replace(
            self,
            n=check_n(self.n) if self.n is not None else None,
            extra_fields=dict(self.extra_fields) if self.extra_fields else None,
        )

    def form_fields(self) -> list[tuple[str, str]]:
        """The checked text fields, in the order they are sent."""
        fields = [("prompt", check_prompt(self.prompt)), ("model", _check_model(self.model))]
        if self.n is not None:
            fields.append(("n", str(check_n(self.n))))
        for name, value, options in (
            ("quality", self.quality, QUALITIES),
            ("response_format", self.response_format, RESPONSE_FORMATS),
            ("output_format", self.output_format, OUTPUT_FORMATS),
        ):
            if value is not None:
                fields.append((name, check_choice(name, value, options)))
        if self.size is not None:
            fields.append(("size", check_size(self.size)))
        fields.extend(_extra(self.extra_fields))
        return fields

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict."""
        return asdict(self)


def edit_request(
    image: ImageInput | Sequence[ImageInput], params: EditParams, *, mask: ImageInput | None = None
) -> EditRequest:
    """The checked request for ``params`` and these images (read already) and mask."""
    fields = params.form_fields()
    images = [check_image(*read_image_input(item, "image"), "image") for item in _as_list(image)]
    mask_part = check_mask(*read_image_input(mask, "mask"), images[0]) if mask is not None else None
    return EditRequest(
        fields=fields,
        images=images,
        mask=mask_part,
        model=params.model,
        response_format=params.response_format,
    )


def check_prompt(prompt: Any) -> str:
    """A non-blank prompt of at most 32,000 characters."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise CometAPIValidationError(
            "prompt is empty: describe the edit, e.g. 'Add a small red ribbon to the boat.'",
            param="prompt",
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise CometAPIValidationError(
            f"prompt has {len(prompt)} characters, over the {MAX_PROMPT_CHARS} limit: shorten it.",
            param="prompt",
        )
    return prompt


def check_n(n: Any) -> int:
    """``n`` is a whole number from 1 to 10."""
    if isinstance(n, bool) or not isinstance(n, (int, str)) or not str(n).strip().isdigit():
        raise CometAPIValidationError(f"n is {n!r}; use a whole number from 1 to 10.", param="n")
    value = int(n)
    if not 1 <= value <= 10:
        raise CometAPIValidationError(f"n is {value}; use a number from 1 to 10.", param="n")
    return value


def check_choice(name: str, value: Any, options: Sequence[str]) -> str:
    """``value`` is one of the documented ``options``."""
    if value not in options:
        raise CometAPIValidationError(
            f"{name} is {value!r}; use one of: {', '.join(options)}.", param=name
        )
    return str(value)


def check_size(size: Any) -> str:
    """``auto`` or ``WIDTHxHEIGHT``."""
    if not isinstance(size, str) or not _SIZE.match(size):
        raise CometAPIValidationError(
            f"size is {size!r}; use 'auto' or WIDTHxHEIGHT such as '1024x1024'.", param="size"
        )
    return size


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise CometAPIValidationError(
            "model is empty: name a model such as 'gpt-image-2'.", param="model"
        )
    return model


def _as_list(image: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(image, list) or (isinstance(image, tuple) and not _is_named_pair(image)):
        items = list(image)
    else:
        items = [image]
    if not items:
        raise CometAPIValidationError("image is empty: give at least one image.", param="image")
    if len(items) > MAX_IMAGES:
        raise CometAPIValidationError(
            f"image has {len(items)} images; send at most {MAX_IMAGES} in one edit.",
            param="image",
        )
    return items


def _is_named_pair(value: tuple[Any, ...]) -> bool:
    return (
        len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], (bytes, bytearray))
    )


def _extra(extra_fields: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not extra_fields:
        return []
    if not isinstance(extra_fields, Mapping):
        raise CometAPIValidationError(
            "extra_fields must be a mapping of field names to values.", param="extra_fields"
        )
    fields = []
    for name, value in extra_fields.items():
        if name in _OWN_FIELDS:
            raise CometAPIValidationError(
                f"extra_fields sets {name!r}; pass it as the {name.strip('[]')} argument instead.",
                param="extra_fields",
            )
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, (str, int, float)):
            raise CometAPIValidationError(
                f"extra_fields[{name!r}] is a {type(value).__name__}; use a string or number.",
                param="extra_fields",
            )
        fields.append((str(name), str(value)))
    return fields
