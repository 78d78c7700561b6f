"""How the ``cometapi`` connection form looks: pure data, shared by the hook and provider info."""

from __future__ import annotations

from typing import Any

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "login"],
    "relabeling": {"password": "API Key", "host": "Base URL"},
    "placeholders": {
        "host": "https://api.cometapi.com",
        "port": "443",
        "password": "your CometAPI key",
    },
}
"""The port stays visible: Airflow 3.3.2's **Test** button works only for a connection that
stores one (README, *Testing a connection*)."""

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Read timeout (seconds)",
        "description": "How long to wait for an edit; edits take tens of seconds to minutes.",
        "schema": {"type": ["number", "null"], "default": 600},
    },
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 10},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of 408, 409, 429, 5xx and connect failures.",
        "schema": {"type": ["integer", "null"], "default": 2},
    },
    "default_model": {
        "label": "Default model",
        "schema": {"type": ["string", "null"], "default": "gpt-image-2"},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true (certifi's CA bundle), false, or the path of a CA bundle on the "
        "workers and the triggerer, for a private CA.",
        "schema": {"type": ["string", "null"], "default": "true", "examples": ["true", "false"]},
    },
    "retry_on_read_timeout": {
        "label": "Retry on read timeout",
        "description": "A retried edit after a read timeout may be billed twice.",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "allow_private_urls": {
        "label": "Allow private download URLs",
        "description": 'Let response_format="url" downloads reach loopback, private and '
        "link-local hosts; the API's own origin never needs it.",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "pricing": {
        "label": "Pricing (JSON)",
        "description": 'Your prices, e.g. {"currency": "USD", "models": {"gpt-image-2": '
        '{"input_text_per_1m": 5, "input_image_per_1m": 8, "output_per_1m": 30}}}: '
        "then usage reports cost, and max_cost budgets work.",
        "schema": {"type": ["string", "null"]},
    },
}


def provider_yaml_behaviour() -> dict[str, Any]:
    """``UI_FIELD_BEHAVIOUR`` with the kebab-case keys of provider metadata."""
    return {key.replace("_", "-"): value for key, value in UI_FIELD_BEHAVIOUR.items()}
