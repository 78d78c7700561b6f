"""Airflow discovers the provider, its hook and the ``cometapi`` connection type."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

from airflow_provider_cometapi import __version__
from airflow_provider_cometapi.api.settings import DEFAULT_BASE_URL
from airflow_provider_cometapi.get_provider_info import get_provider_info


def test_provider_info_declares_the_hook_and_connection_type():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-cometapi"
    assert info["versions"] == [__version__]
    (connection,) = info["connection-types"]
    assert connection["hook-class-name"] == (
        "airflow_provider_cometapi.hooks.cometapi.CometApiHook"
    )
    assert (connection["connection-type"], connection["hook-name"]) == ("cometapi", "CometAPI")
    assert connection["ui-field-behaviour"]["hidden-fields"] == ["schema", "login"]
    assert set(connection["conn-fields"]) >= {"timeout", "max_retries", "default_model"}


def test_the_integration_links_to_cometapis_documentation_not_to_its_api():
    (integration,) = get_provider_info()["integrations"]
    docs = urlsplit(integration["external-doc-url"])
    assert (docs.scheme, docs.netloc) == ("https", "apidoc.cometapi.com")
    assert docs.netloc != urlsplit(DEFAULT_BASE_URL).netloc


def test_airflow_lists_the_provider_and_its_connection_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-cometapi" in manager.providers
    hook = manager.hooks["cometapi"]
    assert hook is not None
    assert hook.connection_type == "cometapi"
    assert hook.hook_name == "CometAPI"
    behaviour = manager.field_behaviours["cometapi"]
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert "extra__cometapi__timeout" in manager.connection_form_widgets
    verify = manager.connection_form_widgets["extra__cometapi__verify"].field
    assert (verify["schema"]["type"], verify["value"]) == (["string", "null"], "true")
    assert "extra__cometapi__allow_private_urls" in manager.connection_form_widgets


def test_airflow_providers_list_cli_shows_the_package():
    listing = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "plain"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "airflow-provider-cometapi" in listing
