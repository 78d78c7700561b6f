"""The user's prices, and what an edit cost by them.

No price ships with the provider: a table comes from the ``cometapi`` connection's extra
``pricing`` or, when the connection has none, from Airflow config ``[cometapi] pricing``::

    {"currency": "USD",
     "models": {"gpt-image-2": {"input_text_per_1m": 5.0, "input_image_per_1m": 8.0,
                                "output_per_1m": 30.0, "per_image": 0.0,
                                "output_tokens_per_image": {"1024x1024": 1056}}}}

Every rate is optional (absent = not charged); ``output_tokens_per_image`` (by ``size``) only
serves dry-run estimates. A cost is a number only when the usage holds every count that a
nonzero rate needs: image tokens are never priced at the text rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from airflow_provider_cometapi.exceptions import CometAPIValidationError

RATES = {
    "input_text_per_1m": "the price of 1M input text tokens",
    "input_image_per_1m": "the price of 1M input image tokens",
    "output_per_1m": "the price of 1M output tokens",
    "per_image": "the price of one returned image",
}
"""Each rate a model may have, and what it means (for messages)."""
TOKENS_PER_IMAGE = "output_tokens_per_image"
CONFIG_WHERE = "[cometapi] pricing"
EXTRA_WHERE = "connection extra 'pricing'"
_EXTRA_KEYS = ("pricing", "extra__cometapi__pricing")
_MILLION = Decimal(1_000_000)
_REPORTED = Decimal("0.000001")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class ModelPrice:
    """The rates of one model, in its table's currency; a rate of 0 is not charged.

    :param output_tokens_per_image: output tokens of one image by ``size``, for estimates.
    """

    input_text_per_1m: Decimal = _ZERO
    input_image_per_1m: Decimal = _ZERO
    output_per_1m: Decimal = _ZERO
    per_image: Decimal = _ZERO
    output_tokens_per_image: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Pricing:
    """A pricing table: one currency, and the rates of each model by its name."""

    currency: str
    models: Mapping[str, ModelPrice]

    @classmethod
    def parse(cls, table: Any, *, where: str) -> Pricing:
        """Check a table (a dict, or JSON text) strictly; every error names its key path.

        :param where: where the table came from, for messages (``EXTRA_WHERE``, ``CONFIG_WHERE``).
        """
        if isinstance(table, str):
            try:
                table = json.loads(table, parse_float=Decimal)
            except ValueError as exc:
                raise CometAPIValidationError(
                    f"In {where}, pricing is not JSON ({exc}): set it to a JSON object "
                    '{"currency": ..., "models": {...}}.',
                    param="pricing",
                ) from None
        top = _object(table, where, "pricing", '{"currency": ..., "models": {...}}')
        _known_keys(top, ("currency", "models"), where, "pricing")
        currency = top.get("currency")
        if not isinstance(currency, str) or not currency.strip():
            raise _bad(where, "pricing.currency", currency, 'set it to the currency, e.g. "USD"')
        models = _object(
            top.get("models"), where, "pricing.models", "an object of rates by model name"
        )
        return cls(
            currency=currency.strip(),
            models={
                str(name): _model(rates, where, f"pricing.models.{name}")
                for name, rates in models.items()
            },
        )

    def price_of(self, model: str) -> ModelPrice | None:
        """The rates of ``model``, or ``None`` when the table has none."""
        return self.models.get(model)


def load_pricing(extra: Mapping[str, Any]) -> Pricing | None:
    """The table in the connection's extras (``pricing``, or the form's prefixed name), else
    the one in Airflow config ``[cometapi] pricing``, else ``None``."""
    for key in _EXTRA_KEYS:
        if extra.get(key) not in (None, ""):
            return Pricing.parse(extra[key], where=EXTRA_WHERE)
    from airflow.configuration import conf

    configured = conf.get("cometapi", "pricing", fallback=None)
    if configured and configured.strip():
        return Pricing.parse(configured, where=CONFIG_WHERE)
    return None


def cost_of(price: ModelPrice, usage: Mapping[str, Any], images: int) -> Decimal | None:
    """The cost of one paid edit from its usage, or ``None`` when the usage lacks a count a
    nonzero rate needs.

    :param images: how many images the edit returned.
    """
    inputs = _input_cost(price, usage)
    output = token_count(usage, "output_tokens") if price.output_per_1m else 0
    if inputs is None or output is None:
        return None
    return inputs + output * price.output_per_1m / _MILLION + price.per_image * images


def estimate(price: ModelPrice, *, size: str | None, n: int, requests: int) -> Decimal | None:
    """Dry-run cost of ``requests`` edits of ``n`` images each, when it can be known.

    ``None`` when a nonzero input rate applies (input tokens are known only once sent), or when
    output tokens are charged and ``size`` is not in ``output_tokens_per_image``.
    """
    if price.input_text_per_1m or price.input_image_per_1m:
        return None
    output = _ZERO
    if price.output_per_1m:
        tokens = price.output_tokens_per_image.get(size) if size is not None else None
        if tokens is None:
            return None
        output = tokens * price.output_per_1m / _MILLION
    return (output + price.per_image) * n * requests


def money(amount: Decimal) -> float:
    """An amount as reported in JSON: rounded (half up) to 6 decimal places."""
    return float(amount.quantize(_REPORTED, rounding=ROUND_HALF_UP))


def _input_cost(price: ModelPrice, usage: Mapping[str, Any]) -> Decimal | None:
    """Input tokens by their split (text, image); the unsplit total only when which kind a
    token was does not matter (both kinds have the same rate, or there are none)."""
    text_rate, image_rate = price.input_text_per_1m, price.input_image_per_1m
    details = usage.get("input_tokens_details")
    split = details if isinstance(details, Mapping) else {}
    text, image = token_count(split, "text_tokens"), token_count(split, "image_tokens")
    if (text is not None or not text_rate) and (image is not None or not image_rate):
        return ((text or 0) * text_rate + (image or 0) * image_rate) / _MILLION
    total = token_count(usage, "input_tokens")
    if total == 0 or (total is not None and text_rate == image_rate):
        return total * text_rate / _MILLION
    return None


def token_count(usage: Mapping[str, Any], key: str) -> int | None:
    """A token count the usage holds (a whole number, 0 or more), or ``None``."""
    return _whole(usage.get(key))


def _whole(value: Any) -> int | None:
    number = _number(value)
    if number is None or number < 0 or number != number.to_integral_value():
        return None
    return int(number)


def _number(value: Any) -> Decimal | None:
    """A JSON number as a finite ``Decimal`` (floats as written: ``0.1`` is ``Decimal("0.1")``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = Decimal(str(value))
    return number if number.is_finite() else None


def _model(rates: Any, where: str, path: str) -> ModelPrice:
    expected = f"an object of rates ({', '.join(RATES)}, {TOKENS_PER_IMAGE})"
    found = _object(rates, where, path, expected)
    _known_keys(found, (*RATES, TOKENS_PER_IMAGE), where, path)
    checked = {
        name: _rate(found[name], where, f"{path}.{name}", meaning)
        for name, meaning in RATES.items()
        if name in found
    }
    sizes_path = f"{path}.{TOKENS_PER_IMAGE}"
    sizes = _object(found.get(TOKENS_PER_IMAGE, {}), where, sizes_path, "an object of sizes")
    return ModelPrice(
        **checked,
        output_tokens_per_image={
            str(size): _tokens(count, where, f"{sizes_path}.{size}")
            for size, count in sizes.items()
        },
    )


def _rate(value: Any, where: str, path: str, meaning: str) -> Decimal:
    number = _number(value)
    if number is None or number < 0:
        raise _bad(where, path, value, f"set it to a number, 0 or more ({meaning})")
    return number


def _tokens(value: Any, where: str, path: str) -> int:
    count = _whole(value)
    if count is None:
        fix = "set it to a whole number, 0 or more (the output tokens of one image of this size)"
        raise _bad(where, path, value, fix)
    return count


def _object(value: Any, where: str, path: str, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(where, path, value, f"set it to {expected}")
    return value


def _known_keys(found: Mapping[str, Any], known: tuple[str, ...], where: str, path: str) -> None:
    for key in found:
        if key not in known:
            fix = f"remove it, or use one of {', '.join(known)}"
            raise CometAPIValidationError(
                f"In {where}, {path}.{key} is not a known key: {fix}.", param=f"{path}.{key}"
            )


def _bad(where: str, path: str, value: Any, fix: str) -> CometAPIValidationError:
    """The error for a bad value at ``path``: what it is, and ``fix``."""
    shown = str(value) if isinstance(value, Decimal) else json.dumps(value, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    found = "is missing" if value is None else f"is {shown}"
    return CometAPIValidationError(f"In {where}, {path} {found}: {fix}.", param=path)
