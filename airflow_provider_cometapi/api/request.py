"""The image-edit request: check every parameter by its model's rules, then lay out the
multipart form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_provider_cometapi.api.images import (
    GENERAL_LIMITS,
    ImageInput,
    ImageLimits,
    ImagePart,
    check_image,
    check_mask,
    read_image_input,
)
from airflow_provider_cometapi.api.models import check_field, rules_for
from airflow_provider_cometapi.exceptions import CometAPIValidationError

EDIT_PATH = "/v1/images/edits"
MODELS_PATH = "/v1/models"
PARAM_NAMES = ("n", "quality", "response_format", "output_format", "size")
"""The parameters ``EditParams`` holds besides the prompt and model, in the order they are sent."""
_OWN_FIELDS = {"image", "image[]", "mask", "prompt", "model", *PARAM_NAMES}


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
    preserve_unmasked: bool = False
    """With a mask, composite each output over the first image (never sent)."""
    feather: int = 0
    """Pixels over which a composite's seam is softened (never sent)."""
    max_outside_mask_drift: float | None = None
    """The largest share of the mask's kept pixels an output may change (never sent)."""

    def checked(self) -> EditParams:
        """These parameters, checked by ``form_fields``, with ``n`` as a number; raise
        ``CometAPIValidationError`` on the first fault, naming the field."""
        check_mask_options(
            self.preserve_unmasked,
            self.feather,
            self.max_outside_mask_drift,
            output_format=self.output_format,
        )
        n = dict(self.form_fields()).get("n")
        return replace(
            self,
            n=int(n) if n is not None else None,
            extra_fields=dict(self.extra_fields) if self.extra_fields else None,
        )

    def form_fields(self) -> list[tuple[str, str]]:
        """The text fields, checked by the model's rules (only the shared ones for a model the
        table does not know), in the order they are sent."""
        model = _check_model(self.model)
        fields = [("prompt", check_prompt(self.prompt)), ("model", model)]
        for name in PARAM_NAMES:
            value = getattr(self, name)
            if value is not None:
                fields.append((name, check_field(name, value, model)))
        fields.extend(_extra(self.extra_fields, model))
        return fields

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict."""
        return asdict(self)


def check_mask_options(
    preserve_unmasked: Any, feather: Any, max_drift: Any, *, output_format: Any = None
) -> None:
    """``preserve_unmasked`` a boolean (and then no JPEG ``output_format``, which cannot keep
    pixels exact), ``feather`` whole pixels (0 or more), ``max_outside_mask_drift`` a share
    from 0 to 1 (or ``None``)."""
    if not isinstance(preserve_unmasked, bool):
        raise CometAPIValidationError(
            f"preserve_unmasked is {preserve_unmasked!r}; use True or False.",
            param="preserve_unmasked",
        )
    if isinstance(feather, bool) or not isinstance(feather, int) or feather < 0:
        raise CometAPIValidationError(
            f"feather is {feather!r}; use a whole number of pixels, 0 or more.", param="feather"
        )
    if max_drift is not None and (
        isinstance(max_drift, bool)
        or not isinstance(max_drift, (int, float))
        or not 0 <= max_drift <= 1
    ):
        raise CometAPIValidationError(
            f"max_outside_mask_drift is {max_drift!r}; use a share of the kept pixels from 0 "
            "to 1, e.g. 0.01 for 1 %.",
            param="max_outside_mask_drift",
        )
    if preserve_unmasked and output_format == "jpeg":
        raise CometAPIValidationError(
            "preserve_unmasked keeps pixels exact, which JPEG cannot: use output_format "
            "'png' or 'webp' (written lossless), or leave preserve_unmasked off.",
            param="output_format",
        )


def edit_request(
    image: ImageInput | Sequence[ImageInput], params: EditParams, *, mask: ImageInput | None = None
) -> EditRequest:
    """The checked request for ``params`` and these images (read already) and mask: the
    model's own image limits if the table knows it, else the general ones."""
    fields = params.form_fields()
    rules = rules_for(params.model)
    limits, owner = (rules.images, params.model) if rules else (GENERAL_LIMITS, None)
    images = [
        check_image(*read_image_input(item, "image"), "image", limits, owner)
        for item in _as_list(image, limits, owner)
    ]
    mask_part = (
        check_mask(*read_image_input(mask, "mask"), images[0], limits, owner)
        if mask is not None
        else None
    )
    return EditRequest(
        fields=fields,
        images=images,
        mask=mask_part,
        model=params.model,
        response_format=params.response_format,
    )


def check_prompt(prompt: Any) -> str:
    """A non-blank prompt; no model page documents a length limit, so the server judges it."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise CometAPIValidationError(
            "prompt is empty: describe the edit, e.g. 'Add a small red ribbon to the boat.'",
            param="prompt",
        )
    return prompt


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise CometAPIValidationError(
            "model is empty: name a model such as 'gpt-image-2'.", param="model"
        )
    return model


def _as_list(
    image: ImageInput | Sequence[ImageInput], limits: ImageLimits, model: str | None
) -> list[ImageInput]:
    if isinstance(image, list) or (isinstance(image, tuple) and not _is_named_pair(image)):
        items = list(image)
    else:
        items = [image]
    if not items:
        raise CometAPIValidationError("image is empty: give at least one image.", param="image")
    if len(items) > limits.max_images:
        owner = f" for {model}" if model else ""
        raise CometAPIValidationError(
            f"image has {len(items)} images; send at most {limits.max_images} in one edit{owner}.",
            param="image",
        )
    return items


def _is_named_pair(value: tuple[Any, ...]) -> bool:
    return (
        len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], (bytes, bytearray))
    )


def _extra(extra_fields: Mapping[str, Any] | None, model: str) -> list[tuple[str, str]]:
    """The further fields, each a string, number or boolean, checked by ``model``'s rule for
    it if it has one, else passed as they are."""
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
        if not isinstance(value, (str, int, float)):
            raise CometAPIValidationError(
                f"extra_fields[{name!r}] is a {type(value).__name__}; use a string or number.",
                param="extra_fields",
            )
        fields.append(
            (str(name), check_field(str(name), value, model, label=f"extra_fields[{name!r}]"))
        )
    return fields
