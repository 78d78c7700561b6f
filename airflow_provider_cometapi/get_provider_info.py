"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_cometapi import __version__
from airflow_provider_cometapi.connection_form import CONN_FIELDS, provider_yaml_behaviour

VENDOR_DOCS_URL = "https://apidoc.cometapi.com/"
"""CometAPI's own documentation (its index is ``llms.txt`` there), not the API's host."""


def get_provider_info() -> dict[str, Any]:
    """Describe the package, its hook and its connection type to Airflow."""
    return {
        "package-name": "airflow-provider-cometapi",
        "name": "CometAPI",
        "description": "Edit images with CometAPI's `POST /v1/images/edits` from Airflow DAGs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "CometAPI",
                "external-doc-url": VENDOR_DOCS_URL,
                "tags": ["ai"],
            }
        ],
        "hooks": [
            {
                "integration-name": "CometAPI",
                "python-modules": ["airflow_provider_cometapi.hooks.cometapi"],
            }
        ],
        "triggers": [
            {
                "integration-name": "CometAPI",
                "python-modules": ["airflow_provider_cometapi.triggers.image_edit"],
            }
        ],
        "operators": [
            {
                "integration-name": "CometAPI",
                "python-modules": ["airflow_provider_cometapi.operators.image_edit"],
            }
        ],
        "config": {
            "cometapi": {
                "description": "Defaults of the CometAPI provider's operators.",
                "options": {
                    "default_deferrable": {
                        "description": "Whether CometAPI operators defer by default. Unset, "
                        "Airflow's [operators] default_deferrable decides; set, it overrides "
                        "that for CometAPI operators.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": None,
                    },
                    "pricing": {
                        "description": "Your prices, as JSON: a currency and, per model, "
                        "input_text_per_1m, input_image_per_1m, output_per_1m, per_image "
                        "(and output_tokens_per_image by size, for dry-run estimates). A "
                        "connection's extra 'pricing' takes precedence. No prices ship.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"currency": "USD", "models": {"gpt-image-2": '
                        '{"output_per_1m": 30}}}',
                        "default": None,
                    },
                },
            }
        },
        "filesystems": ["airflow_provider_cometapi.storage.memory"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_cometapi.hooks.cometapi.CometApiHook",
                "connection-type": "cometapi",
                "hook-name": "CometAPI",
                "ui-field-behaviour": provider_yaml_behaviour(),
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
