"""Pricing tables: strict parsing, where they come from, and what an edit cost by them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from airflow_provider_cometapi.api.pricing import (
    CONFIG_WHERE,
    EXTRA_WHERE,
    ModelPrice,
    Pricing,
    cost_of,
    estimate,
    load_pricing,
    money,
)
from airflow_provider_cometapi.exceptions import CometAPIValidationError

TABLE = {
    "currency": "USD",
    "models": {
        "gpt-image-2": {
            "input_text_per_1m": 5.0,
            "input_image_per_1m": 8.0,
            "output_per_1m": 30.0,
            "per_image": 0.0,
            "output_tokens_per_image": {"1024x1024": 1056},
        },
        "seedream-4-0-250828": {"per_image": 0.03},
    },
}
SPLIT_USAGE = {  # CometAPI's documented example
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "total_tokens": 981,
    "input_tokens": 785,
    "output_tokens": 196,
    "input_tokens_details": {"image_tokens": 768, "text_tokens": 17, "cached_tokens_details": {}},
}
SEEDREAM_USAGE = {"generated_images": 1, "output_tokens": 4096, "total_tokens": 4096}


def with_model(**rates):
    return {"currency": "USD", "models": {"gpt-image-2": rates}}


def test_a_table_parses_into_exact_decimal_rates():
    pricing = Pricing.parse(TABLE, where=EXTRA_WHERE)

    price = pricing.price_of("gpt-image-2")
    assert pricing.currency == "USD"
    assert price == ModelPrice(
        input_text_per_1m=Decimal("5.0"),
        input_image_per_1m=Decimal("8.0"),
        output_per_1m=Decimal("30.0"),
        per_image=Decimal("0.0"),
        output_tokens_per_image={"1024x1024": 1056},
    )
    assert pricing.price_of("seedream-4-0-250828").per_image == Decimal("0.03")
    assert pricing.price_of("qwen-image-edit") is None


def test_json_text_parses_like_the_dict_it_holds():
    text = json.dumps({"currency": "EUR", "models": {"m": {"output_per_1m": 0.1}}})

    pricing = Pricing.parse(text, where=CONFIG_WHERE)

    assert pricing.currency == "EUR"
    assert pricing.price_of("m").output_per_1m == Decimal("0.1")
    assert pricing.price_of("m").input_text_per_1m == 0  # absent: not charged


@pytest.mark.parametrize(
    ("table", "path", "fix"),
    [
        ({"models": {}}, "pricing.currency is missing", 'e.g. "USD"'),
        ({"currency": "", "models": {}}, 'pricing.currency is ""', 'e.g. "USD"'),
        ({"currency": "USD"}, "pricing.models is missing", "an object of rates by model name"),
        ({"currency": "USD", "models": [1]}, "pricing.models is [1]", "an object of rates"),
        (
            {"currency": "USD", "models": {}, "discount": 0.1},
            "pricing.discount is not a known key",
            "use one of currency, models",
        ),
        (
            with_model(output_per_1m=-1),
            "pricing.models.gpt-image-2.output_per_1m is -1",
            "set it to a number, 0 or more (the price of 1M output tokens)",
        ),
        (
            with_model(per_image="0.04"),
            'pricing.models.gpt-image-2.per_image is "0.04"',
            "set it to a number, 0 or more (the price of one returned image)",
        ),
        (
            with_model(input_text_per_1m=True),
            "pricing.models.gpt-image-2.input_text_per_1m is true",
            "set it to a number",
        ),
        (
            with_model(input_image_per_1m=float("inf")),
            "pricing.models.gpt-image-2.input_image_per_1m is Infinity",
            "set it to a number",
        ),
        (
            with_model(output_per_1k=1),
            "pricing.models.gpt-image-2.output_per_1k is not a known key",
            "use one of input_text_per_1m, input_image_per_1m, output_per_1m, per_image",
        ),
        (
            with_model(output_tokens_per_image={"1024x1024": 10.5}),
            "pricing.models.gpt-image-2.output_tokens_per_image.1024x1024 is 10.5",
            "set it to a whole number, 0 or more",
        ),
        (
            {"currency": "USD", "models": {"gpt-image-2": 5}},
            "pricing.models.gpt-image-2 is 5",
            "set it to an object of rates",
        ),
    ],
)
def test_a_bad_table_is_refused_naming_the_key_path_and_the_fix(table, path, fix):
    with pytest.raises(CometAPIValidationError) as raised:
        Pricing.parse(table, where=EXTRA_WHERE)

    message = str(raised.value)
    assert message.startswith(f"In {EXTRA_WHERE}, {path}")
    assert fix in message
    assert raised.value.param == path.split(" ")[0]


def test_text_that_is_not_json_is_refused():
    with pytest.raises(CometAPIValidationError, match=r"In \[cometapi\] pricing, pricing is not"):
        Pricing.parse("{'currency': 'USD'}", where=CONFIG_WHERE)


def test_the_connection_extra_comes_first_then_the_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__COMETAPI__PRICING", json.dumps({"currency": "EUR", "models": {}}))

    assert load_pricing({"pricing": TABLE}).currency == "USD"
    assert load_pricing({"extra__cometapi__pricing": json.dumps(TABLE)}).currency == "USD"
    assert load_pricing({"pricing": ""}).currency == "EUR"
    assert load_pricing({}).currency == "EUR"


def test_no_table_anywhere_is_no_pricing(monkeypatch):
    monkeypatch.delenv("AIRFLOW__COMETAPI__PRICING", raising=False)

    assert load_pricing({"timeout": 60}) is None


def test_a_bad_table_says_where_it_came_from(monkeypatch):
    monkeypatch.setenv("AIRFLOW__COMETAPI__PRICING", json.dumps({"currency": "EUR"}))

    with pytest.raises(CometAPIValidationError, match=r"^In \[cometapi\] pricing, pricing\.models"):
        load_pricing({})
    with pytest.raises(CometAPIValidationError, match=r"^In connection extra 'pricing', pricing"):
        load_pricing({"pricing": {"models": {}}})


def test_split_usage_prices_text_and_image_tokens_at_their_own_rates():
    price = Pricing.parse(TABLE, where=EXTRA_WHERE).price_of("gpt-image-2")

    # 17 text tokens at 5, 768 image tokens at 8, 196 output tokens at 30, per 1M
    assert cost_of(price, SPLIT_USAGE, images=1) == Decimal("0.012109")


def test_unsplit_input_tokens_with_different_rates_have_no_cost():
    price = Pricing.parse(TABLE, where=EXTRA_WHERE).price_of("gpt-image-2")
    unsplit = {"input_tokens": 785, "output_tokens": 196, "total_tokens": 981}

    assert cost_of(price, unsplit, images=1) is None
    text_only = ModelPrice(input_text_per_1m=Decimal(5))  # the image tokens' share is unknown
    assert cost_of(text_only, unsplit, images=1) is None


def test_unsplit_input_tokens_are_priced_when_both_kinds_cost_the_same():
    price = ModelPrice(input_text_per_1m=Decimal(10), input_image_per_1m=Decimal(10))

    assert cost_of(price, {"input_tokens": 785}, images=1) == Decimal("0.00785")
    assert cost_of(ModelPrice(input_text_per_1m=Decimal(5)), {"input_tokens": 0}, 1) == 0


def test_a_rate_whose_count_the_usage_lacks_gives_no_cost():
    price = ModelPrice(output_per_1m=Decimal(30))

    assert cost_of(price, {"total_tokens": 981}, images=1) is None
    assert cost_of(price, {"output_tokens": "196"}, images=1) is None
    assert cost_of(ModelPrice(), {}, images=1) == 0  # nothing is charged: nothing is needed


def test_seedream_usage_has_a_cost_by_output_and_image_rates():
    price = ModelPrice(output_per_1m=Decimal(1), per_image=Decimal("0.03"))

    assert cost_of(price, SEEDREAM_USAGE, images=1) == Decimal("0.034096")
    with_input = ModelPrice(input_image_per_1m=Decimal(1), per_image=Decimal("0.03"))
    assert cost_of(with_input, SEEDREAM_USAGE, images=1) is None


def test_the_per_image_rate_counts_each_returned_image():
    price = ModelPrice(per_image=Decimal("0.04"))

    assert cost_of(price, SPLIT_USAGE, images=3) == Decimal("0.12")
    assert cost_of(price, SPLIT_USAGE, images=0) == 0


def test_an_estimate_counts_image_and_output_rates_for_a_known_size():
    price = ModelPrice(
        output_per_1m=Decimal(30),
        per_image=Decimal("0.01"),
        output_tokens_per_image={"1024x1024": 1056},
    )

    # (1056 × 30 / 1M + 0.01) per image, 2 images per request, 5 requests
    assert estimate(price, size="1024x1024", n=2, requests=5) == Decimal("0.4168")
    assert estimate(ModelPrice(per_image=Decimal("0.04")), size=None, n=2, requests=3) == Decimal(
        "0.24"
    )


def test_an_estimate_is_none_when_input_tokens_or_the_size_are_needed():
    price = Pricing.parse(TABLE, where=EXTRA_WHERE).price_of("gpt-image-2")
    output_only = ModelPrice(output_per_1m=Decimal(30), output_tokens_per_image={"1024x1024": 1056})

    assert estimate(price, size="1024x1024", n=1, requests=1) is None  # input rates apply
    assert estimate(output_only, size="1536x1024", n=1, requests=1) is None
    assert estimate(output_only, size=None, n=1, requests=1) is None


@pytest.mark.parametrize(
    ("amount", "reported"),
    [
        ("0.012109", 0.012109),
        ("1.2345674", 1.234567),
        ("1.2345675", 1.234568),
        ("0.0000004", 0.0),
        ("7", 7.0),
    ],
)
def test_money_is_reported_to_six_decimal_places(amount, reported):
    assert money(Decimal(amount)) == reported
