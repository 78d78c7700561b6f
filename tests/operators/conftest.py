"""Fixtures for the operator tests: which transport carried the edits."""

from __future__ import annotations

import functools

import pytest


@pytest.fixture
def triggerer_posts(edits_sent_by):
    """Call it after a run: the edit requests the triggerer's async client sent.

    They are read from the emulator's records by User-Agent. The worker's hook sends with
    ``requests``, so a deferrable run that silently stayed on the worker counts none.
    """
    return functools.partial(edits_sent_by, "httpx")
