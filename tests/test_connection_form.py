"""The ``cometapi`` connection form: a field for every documented extra, values that the
settings read back as the form stores them, and the form's **Test** button in Airflow's own API.

What the form stores is what Airflow 3.3.2's UI writes into the connection's extra JSON: each
``conn-fields`` entry under its own name, a number as a JSON number, a toggle as ``true`` or
``false``, a text box as a string, a cleared field as ``null``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cometapi.api.settings import CometApiSettings, masked_settings
from airflow_provider_cometapi.connection_form import CONN_FIELDS
from airflow_provider_cometapi.get_provider_info import get_provider_info

README = Path(__file__).resolve().parent.parent / "README.md"
KEY = "key-12345"
JWT_SECRET = "cometapi-tests-jwt-secret-not-for-production-" + "0" * 32
"""Long enough (over 64 bytes) for PyJWT's HS512 without a warning."""
PRICING = {"currency": "USD", "models": {"gpt-image-2": {"output_per_1m": 30}}}


def documented_extras() -> list[str]:
    """The names in the README's table of connection extras."""
    text = README.read_text()
    section = text.split("## The `cometapi` connection", 1)[1].split("\n## ", 1)[0]
    table = section.split("Extras (JSON):", 1)[1].split("\n\n", 2)[1]
    return re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)


def form_connection(extra: dict[str, Any]):
    """A connection as the form saves it: the extras as JSON, no port, schema or login."""
    from airflow.models import Connection

    return Connection(
        conn_id="cometapi_form",
        conn_type="cometapi",
        host="https://api.cometapi.com",
        password=KEY,
        extra=json.dumps(extra),
    )


def form_defaults() -> dict[str, Any]:
    """The extras of a connection saved without touching a field."""
    return {name: field["schema"].get("default") for name, field in CONN_FIELDS.items()}


def test_every_documented_extra_has_a_form_field():
    documented = documented_extras()
    assert "allow_private_urls" in documented
    (connection,) = get_provider_info()["connection-types"]
    assert sorted(connection["conn-fields"]) == sorted(documented)


def test_every_form_field_has_a_label_and_a_type_that_may_be_cleared():
    for name, field in CONN_FIELDS.items():
        assert field["label"], name
        kind, empty = field["schema"]["type"]
        assert kind in ("string", "number", "integer", "boolean"), name
        assert empty == "null", name


def test_verify_takes_true_false_or_a_ca_bundle_path_as_text():
    field = CONN_FIELDS["verify"]
    assert field["schema"]["type"] == ["string", "null"]
    assert field["schema"]["default"] == "true"
    assert all(word in field["description"] for word in ("true", "false", "CA bundle"))
    assert CONN_FIELDS["allow_private_urls"]["schema"]["type"] == ["boolean", "null"]


@pytest.mark.parametrize("cleared", [False, True], ids=["defaults", "cleared"])
def test_a_form_saved_untouched_or_cleared_reads_as_the_settings_defaults(cleared):
    extra = dict.fromkeys(CONN_FIELDS) if cleared else form_defaults()
    settings = masked_settings(form_connection(extra))
    assert settings == CometApiSettings(api_key=KEY)


@pytest.mark.parametrize(
    ("name", "stored", "attribute", "expected"),
    [
        ("timeout", 900, "read_timeout", 900.0),
        ("timeout", 2.5, "read_timeout", 2.5),
        ("connect_timeout", 3, "connect_timeout", 3.0),
        ("max_retries", 0, "max_retries", 0),
        ("max_retries", 5, "max_retries", 5),
        ("default_model", "qwen-image-edit", "default_model", "qwen-image-edit"),
        ("verify", "false", "verify", False),
        ("verify", "FALSE", "verify", False),
        ("verify", "true", "verify", True),
        ("verify", "/etc/ssl/private-ca.pem", "verify", "/etc/ssl/private-ca.pem"),
        ("verify", True, "verify", True),
        ("verify", False, "verify", False),
        ("retry_on_read_timeout", True, "retry_on_read_timeout", True),
        ("allow_private_urls", True, "allow_private_urls", True),
        ("allow_private_urls", False, "allow_private_urls", False),
    ],
)
def test_a_value_saved_from_the_form_is_read_by_the_settings(name, stored, attribute, expected):
    extra = {**form_defaults(), name: stored}
    settings = masked_settings(form_connection(extra))
    value = getattr(settings, attribute)
    assert (value, type(value)) == (expected, type(expected))


def test_pricing_saved_from_the_form_is_read_by_the_settings():
    extra = {**form_defaults(), "pricing": json.dumps(PRICING)}
    pricing = masked_settings(form_connection(extra)).pricing
    assert pricing is not None
    assert pricing.currency == "USD"
    assert set(pricing.models) == {"gpt-image-2"}


# --- Airflow's API, as the UI drives it -------------------------------------------------------


@pytest.fixture(scope="module")
def api(airflow_db):
    """Airflow's own API app over the tests' metadata DB, connection tests enabled, every caller
    an admin, as in the e2e deployment."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
        from airflow.api_fastapi.app import create_app

        with TestClient(create_app()) as client:
            token = client.get("/auth/token").json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            yield client


@pytest.fixture
def saved(api):
    """Save connections through the API as the UI's add form does; delete them afterwards."""
    ids: list[str] = []

    def save(connection_id: str, host: str, port: int | None = None) -> dict[str, Any]:
        # The add form sends an empty port as undefined, which JSON leaves out.
        body = {
            "connection_id": connection_id,
            "conn_type": "cometapi",
            "host": host,
            "password": KEY,
            "extra": json.dumps(form_defaults()),
            **({} if port is None else {"port": port}),
        }
        created = api.post("/api/v2/connections", json=body)
        assert created.status_code == 201, created.text
        ids.append(connection_id)
        listed = api.get("/api/v2/connections").json()["connections"]
        return next(row for row in listed if row["connection_id"] == connection_id)

    yield save
    for connection_id in ids:
        api.delete(f"/api/v2/connections/{connection_id}")


def button_request(row: dict[str, Any]) -> dict[str, Any]:
    """What the 3.3.2 connection list's **Test** button posts for a row (its
    ``TestConnectionButton`` in ``airflow/ui/dist/assets/index-1ifPC3Lo.js``): every field as
    listed, ``""`` for a missing one, but ``Number(row.port)``, which makes a missing port ``0``."""
    return {
        "conn_type": row["conn_type"],
        "connection_id": row["connection_id"],
        "description": row["description"] or "",
        "extra": row["extra"] or "{}",
        "host": row["host"] or "",
        "login": row["login"] or "",
        "password": row["password"] or "",
        "port": row["port"] or 0,
        "schema": row["schema"] or "",
    }


def test_the_ui_gets_a_field_of_the_right_kind_for_every_extra(api):
    hooks = api.get("/ui/connections/hook_meta").json()
    (cometapi,) = [hook for hook in hooks if hook["connection_type"] == "cometapi"]
    fields = cometapi["extra_fields"]
    assert sorted(fields) == sorted(documented_extras())
    assert fields["verify"]["schema"]["type"] == ["string", "null"]
    assert fields["verify"]["value"] == "true"
    assert fields["allow_private_urls"]["schema"]["type"] == ["boolean", "null"]
    assert cometapi["standard_fields"]["port"]["hidden"] is False


def test_the_test_button_works_for_a_connection_saved_with_its_port(api, saved, cometapi_emulator):
    url = cometapi_emulator.url
    host, port = url.rsplit(":", 1)
    row = saved("cometapi_form_port", host, int(port))
    assert row["password"] == "***"
    answer = api.post("/api/v2/connections/test", json=button_request(row))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] is True, answer.json()
    assert f"Connected to {url}" in answer.json()["message"]


def test_the_test_button_of_3_3_2_refuses_a_connection_saved_without_a_port(
    api, saved, cometapi_emulator
):
    """Airflow 3.3.2 compares the button's ``port: 0`` with the stored NULL and answers 400
    (``test_connection`` in ``airflow/api_fastapi/core_api/routes/public/connections.py``, with
    ``_same_endpoint``; apache/airflow#73298). README's *Testing a connection* says so; the same
    request without that ``0`` succeeds, so the port is the whole cause."""
    from airflow.api_fastapi.core_api.routes.public import connections

    row = saved("cometapi_form_no_port", cometapi_emulator.url)
    request = button_request(row)
    refused = api.post("/api/v2/connections/test", json=request)
    if not hasattr(connections, "_same_endpoint"):  # 3.3.0 has no such check: the button works
        assert refused.status_code == 200, refused.text
        return
    assert refused.status_code == 400, refused.text
    assert "differs from the stored connection" in refused.json()["detail"]
    answer = api.post("/api/v2/connections/test", json={**request, "port": None})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] is True, answer.json()
