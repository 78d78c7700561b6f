"""MkDocs hook (mkdocs.yml ``hooks``): drops one known griffe warning, so that strict mode still
fails on every other one.

The operators document their shared parameters (``prompt``, ``mask``, ``n``…) in each class's
docstring, while their ``__init__`` passes them through ``**kwargs`` to the common base class, so
griffe finds them in no signature and warns twice per parameter. Only those two messages, and only
for ``operators/image_edit.py``, are dropped.
"""

from __future__ import annotations

import logging

_FILE = "airflow_provider_cometapi/operators/image_edit.py:"
_MESSAGES = ("does not appear in the function signature", "No matching parameter for ")


class _KwargsParameters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (_FILE in message and any(text in message for text in _MESSAGES))


def on_startup(command: str, dirty: bool) -> None:
    logging.getLogger("mkdocs.plugins.griffe").addFilter(_KwargsParameters())
