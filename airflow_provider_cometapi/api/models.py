"""What each family of image-edit models takes, from CometAPI's model pages: the table the
request is checked against before anything is sent.

A model is matched by its exact name, as its page spells it: no page documents a name pattern,
and prefixes would mislead (``gpt-image-1`` starts ``gpt-image-1.5``, and a future
``gpt-image-2-mini`` may take other sizes). A model the table does not know gets only the rules
every model shares (``SHARED_FIELDS``, ``GENERAL_LIMITS``); its other fields go to the server
as they are, so the provider never blocks a model the gateway serves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_cometapi.api.images import GENERAL_LIMITS, MB, MIB, ImageLimits
from airflow_provider_cometapi.api.text import excerpt
from airflow_provider_cometapi.exceptions import CometAPIValidationError

if TYPE_CHECKING:
    from airflow_provider_cometapi.api.request import EditParams

_WHOLE = re.compile(r"[+-]?[0-9]+")
_DIMENSIONS = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")


@dataclass(frozen=True)
class FieldRule:
    """The values one form field takes: one of ``choices``, a whole number or a number from
    ``low`` to ``high`` (either bound may be open), true or false, or any non-blank text."""

    name: str
    kind: Literal["choice", "whole", "number", "boolean", "text"] = "choice"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def allowed(self) -> str:
        """The allowed values, in words."""
        if self.kind == "choice":
            return "one of: " + ", ".join(self.choices)
        if self.kind == "boolean":
            return "True or False"
        if self.kind == "text":
            return "a non-blank string"
        noun = "a whole number" if self.kind == "whole" else "a number"
        low, high = (self._shown(bound) for bound in (self.low, self.high))
        if low and high:
            return f"{noun} from {low} to {high}"
        return f"{noun}, {low} or more" if low else noun

    def _shown(self, bound: float | None) -> str:
        if bound is None:
            return ""
        return str(int(bound)) if self.kind == "whole" else str(float(bound))

    def check(self, value: Any, *, label: str, model: str | None) -> str:
        """``value`` as it is sent; raise ``CometAPIValidationError`` naming ``label`` (and
        ``model``, whose rule this is, if given) when it is not allowed."""
        sent = self._as_sent(value)
        if sent is None:
            raise refusal(self.name, value, self.allowed(), label=label, model=model)
        return sent

    def _as_sent(self, value: Any) -> str | None:
        if self.kind == "choice":
            return value if isinstance(value, str) and value in self.choices else None
        if self.kind == "text":
            return value if isinstance(value, str) and value.strip() else None
        if self.kind == "boolean":
            if isinstance(value, bool):
                return "true" if value else "false"
            text = value.strip().lower() if isinstance(value, str) else None
            return text if text in ("true", "false") else None
        number = _number(value, whole=self.kind == "whole")
        if number is None:
            return None
        if (self.low is not None and number < self.low) or (
            self.high is not None and number > self.high
        ):
            return None
        return str(number) if self.kind == "whole" else str(value).strip()


@dataclass(frozen=True)
class SizeRule:
    """The ``size`` values a model takes: the ``named`` ones; ``WIDTHxHEIGHT`` with both sides
    multiples of ``multiple_of`` (when set), within ``max_ratio`` and ``max_box``; anything
    else only when ``open`` (the page names a value but does not say the others are refused)."""

    named: tuple[str, ...]
    multiple_of: int | None = None
    max_ratio: float | None = None
    max_box: tuple[int, int] | None = None
    """The longest side and the shortest side's largest values (either orientation)."""
    open: bool = False

    def allowed(self) -> str:
        """The allowed sizes, in words."""
        named = ", ".join(repr(name) for name in self.named)
        if self.open:
            return f"{named}, or other text for the server to judge"
        if self.multiple_of is None:
            return f"one of: {named}"
        text = f"{named} or WIDTHxHEIGHT with both sides multiples of {self.multiple_of}"
        if self.max_ratio is not None:
            text += f", a ratio within {self.max_ratio:g}:1"
        if self.max_box is not None:
            text += f", at most {self.max_box[0]}x{self.max_box[1]} in either orientation"
        return text + ", such as '1024x1024'"

    def check(self, value: Any, *, label: str, model: str | None) -> str:
        """``value`` as it is sent; raise ``CometAPIValidationError`` naming ``model`` and the
        rule it breaks when it is not allowed."""
        if isinstance(value, str) and (value in self.named or (self.open and value.strip())):
            return value
        found = _DIMENSIONS.fullmatch(value) if isinstance(value, str) else None
        problem = None
        if found is not None and self.multiple_of is not None:
            problem = self._problem(int(found[1]), int(found[2]), self.multiple_of)
            if not problem:
                return str(value)
        raise refusal("size", value, self.allowed(), label=label, model=model, problem=problem)

    def _problem(self, width: int, height: int, multiple_of: int) -> str:
        """Which rule ``WIDTHxHEIGHT`` breaks; ``""`` for none."""
        longest, shortest = max(width, height), min(width, height)
        if width % multiple_of or height % multiple_of:
            return f"both sides must be multiples of {multiple_of}"
        if self.max_ratio is not None and longest > self.max_ratio * shortest:
            return f"its ratio {longest / shortest:.2f}:1 is beyond {self.max_ratio:g}:1"
        if self.max_box is not None and (longest > self.max_box[0] or shortest > self.max_box[1]):
            return f"it does not fit in {self.max_box[0]}x{self.max_box[1]} either way"
        return ""


@dataclass(frozen=True)
class ServiceDefault:
    """A default the service applies when ``field`` is not sent, which users do not expect."""

    field: str
    value: str
    effect: str
    """What the service then does, and how to avoid it."""


@dataclass(frozen=True)
class ModelRules:
    """One family's rules: the models it covers (exact names), the fields it checks, its sizes,
    images and mask, what its answer carries, and its surprising defaults."""

    family: str
    models: tuple[str, ...]
    answer: Literal["b64_json", "url"]
    usage_keys: tuple[str, ...]
    fields: tuple[FieldRule, ...] = ()
    size: SizeRule | None = None
    images: ImageLimits = GENERAL_LIMITS
    service_defaults: tuple[ServiceDefault, ...] = ()

    def rule(self, name: str) -> FieldRule | SizeRule | None:
        """This family's rule for field ``name``, if it has one."""
        if name == "size":
            return self.size
        return next((rule for rule in self.fields if rule.name == name), None)


SHARED_FIELDS = {
    rule.name: rule
    for rule in (
        FieldRule("n", "whole", low=1),
        FieldRule("quality", "text"),
        FieldRule("size", "text"),
        FieldRule("output_format", choices=("png", "jpeg", "webp")),
        FieldRule("response_format", choices=("url", "b64_json")),
    )
}
"""What every model's own parameters must be: ``output_format`` names the outputs' files and
``response_format`` says which of the two answers the provider reads (the route's page)."""

GPT_IMAGE_2 = ModelRules(
    family="GPT image",
    models=("gpt-image-2",),
    answer="b64_json",
    usage_keys=(
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details.image_tokens",
        "input_tokens_details.text_tokens",
    ),
    fields=(
        FieldRule("n", "whole", low=1, high=10),
        FieldRule("quality", choices=("high", "medium", "low", "auto", "standard")),
        FieldRule("background", choices=("transparent", "opaque", "auto")),
        FieldRule("input_fidelity", choices=("high", "low")),
        FieldRule("output_compression", "whole", low=0, high=100),
        FieldRule("user", "text"),
    ),
    size=SizeRule(named=("auto",), multiple_of=16, max_ratio=3, max_box=(3840, 2160)),
    # "under 4 MB": a limit is the largest size taken, so 4,000,000 bytes are refused
    images=replace(GENERAL_LIMITS, mask_max_bytes=4 * MB - 1),
)
GPT_IMAGE_1 = replace(
    GPT_IMAGE_2,
    models=("gpt-image-1.5", "gpt-image-1"),
    size=SizeRule(named=("1024x1024", "1536x1024", "1024x1536", "auto")),
)
SEEDEDIT = ModelRules(
    family="SeedEdit / Seedream",
    models=("bytedance-seedEdit-3.0-i2i", "doubao-seededit-3-0-i2i-250628", "seedream-4-0-250828"),
    answer="url",
    usage_keys=("generated_images", "output_tokens", "total_tokens"),
    fields=(
        FieldRule("seed", "whole", low=-1, high=2_147_483_647),
        FieldRule("guidance_scale", "number", low=1.0, high=10.0),
        FieldRule("watermark", "boolean"),
    ),
    size=SizeRule(named=("adaptive",), open=True),
    images=replace(
        GENERAL_LIMITS,
        max_bytes=10 * MB,  # "at most 10 MB"
        mime_types=("image/png", "image/jpeg"),
        max_ratio=3,
        min_side=15,
    ),
    service_defaults=(
        ServiceDefault(
            "watermark",
            "true",
            "the service adds a watermark unless watermark=False is set in extra_fields.",
        ),
    ),
)
MODEL_RULES = (GPT_IMAGE_2, GPT_IMAGE_1, SEEDEDIT)
_BY_NAME = {model: rules for rules in MODEL_RULES for model in rules.models}


def rules_for(model: str) -> ModelRules | None:
    """The rules of ``model`` (its exact name), or ``None`` for a model the table does not know."""
    return _BY_NAME.get(model)


def check_field(name: str, value: Any, model: str, *, label: str | None = None) -> str:
    """``value`` of field ``name`` as it is sent: checked by ``model``'s rule for it, else by the
    rule every model shares, else passed as it is (a string, number or boolean).

    :param label: how messages name the field (``extra_fields['seed']``); ``name`` if unset.
    """
    rules = rules_for(model)
    rule = rules.rule(name) if rules else None
    if rule is not None:
        return rule.check(value, label=label or name, model=model)
    shared = SHARED_FIELDS.get(name)
    if shared is not None:
        return shared.check(value, label=label or name, model=None)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def refusal(
    name: str,
    value: Any,
    allowed: str,
    *,
    label: str,
    model: str | None,
    problem: str | None = None,
) -> CometAPIValidationError:
    """The error for a value that is not ``allowed``: it names the field, the model whose rule
    it breaks (none for a rule every model shares), the problem, and what to use instead."""
    owner = f" for {model}" if model else ""
    reason = f"{problem}; " if problem else ""
    return CometAPIValidationError(
        f"{label} is {excerpt(repr(value), 80)}{owner}: {reason}use {allowed}.", param=name
    )


def service_default_notes(params: EditParams) -> list[str]:
    """One line per surprising default the service applies to ``params.model`` because
    ``params.extra_fields`` leave its field unset, for an INFO log."""
    rules = rules_for(params.model)
    given = params.extra_fields if isinstance(params.extra_fields, Mapping) else {}
    return [
        f"{params.model}: {default.effect}"
        for default in (rules.service_defaults if rules else ())
        if given.get(default.field) is None
    ]


def rules_markdown() -> str:
    """The table as Markdown, one row per family and a last row for the rules every model
    shares (the README's "Models" section holds exactly this)."""
    rows = [
        ["Family", "Models", "`size`", "Fields checked", "Images", "Mask", "Answer", "Defaults"],
        ["---"] * 8,
    ]
    for rules in MODEL_RULES:
        fields = [f"`{rule.name}` {rule.allowed()}" for rule in rules.fields]
        rows.append(
            [
                rules.family,
                ", ".join(f"`{model}`" for model in rules.models),
                rules.size.allowed() if rules.size else "passed through",
                "; ".join(fields),
                _images_in_words(rules.images),
                _mask_in_words(rules.images),
                f"`data[].{rules.answer}`; usage " + ", ".join(f"`{k}`" for k in rules.usage_keys),
                ", ".join(f"`{d.field}={d.value}`" for d in rules.service_defaults) or "-",
            ]
        )
    shared = [
        f"`{name}` {rule.allowed()}" for name, rule in SHARED_FIELDS.items() if name != "size"
    ]
    rows.append(
        [
            "Every model (the only checks for a model not listed)",
            "any, e.g. `qwen-image-edit`",
            SHARED_FIELDS["size"].allowed() + ", passed through",
            "; ".join(["`prompt` not blank", *shared, "other fields passed through"]),
            _images_in_words(GENERAL_LIMITS),
            _mask_in_words(GENERAL_LIMITS),
            "`data[].b64_json` or `data[].url`; every usage key is kept",
            "-",
        ]
    )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def _images_in_words(limits: ImageLimits) -> str:
    formats = "/".join(mime.split("/")[1].upper() for mime in limits.mime_types)
    text = (
        f"1-{limits.max_images}; {formats} (others converted to PNG); "
        f"{_bytes_in_words(limits.max_bytes)} each"
    )
    if limits.min_side > 1:
        text += f"; sides of {limits.min_side} px or more"
    if limits.max_ratio is not None:
        text += f"; ratio within {limits.max_ratio:g}:1"
    return text


def _mask_in_words(limits: ImageLimits) -> str:
    if not limits.takes_mask:
        return "not taken"
    return f"PNG with alpha, the first image's size, {_bytes_in_words(limits.mask_max_bytes)}"


def _bytes_in_words(limit: int) -> str:
    """A byte limit (the largest size taken) as its page words it: ``at most 50 MiB`` for the
    general limit, ``at most 10 MB`` or ``under 4 MB`` (``4 * MB - 1``) for a model's own."""
    if limit % MIB == 0:
        return f"at most {limit // MIB} MiB"
    if (limit + 1) % MB == 0:
        return f"under {(limit + 1) // MB} MB"
    return f"at most {limit / MB:g} MB"


def _number(value: Any, *, whole: bool) -> float | None:
    """``value`` as a finite number (a whole one if ``whole``), from a number or its text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if whole:
        return int(value) if isinstance(value, str) and _WHOLE.fullmatch(value.strip()) else None
    try:
        number = float(value) if isinstance(value, (float, str)) else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None
