"""Fixtures shared by the hook tests."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.hooks.cometapi import CometApiHook


@pytest.fixture
def waits(monkeypatch):
    """Record retry waits instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(CometApiHook, "_sleep", staticmethod(recorded.append))
    return recorded
