"""Fixtures for the operator tests: which transport carried the edits."""

from __future__ import annotations

import logging

import pytest


class _PostAttempts(logging.Handler):
    """Keeps the async client's ``CometAPI POST attempt i of n`` messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("CometAPI POST attempt"):
            self.messages.append(message)


@pytest.fixture
def triggerer_posts():
    """The edit requests sent by the triggerer's async client, as a list filled as the test runs.

    The async client is used only on the deferred path and logs every attempt; the worker's
    hook logs elsewhere, so a synchronous run leaves this list empty.
    """
    logger = logging.getLogger("airflow_provider_cometapi.hooks.cometapi_async")
    handler, level = _PostAttempts(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
