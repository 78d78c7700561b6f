"""In-memory images in the UI's Rendered Templates: a short label each, never their bytes.

After rendering, Airflow's task runner stores each template field as ``serialize()`` of its
value when the value has that method; a ``ShownInput`` keeps the value the operator reads and
hands Airflow a copy with each in-memory image labelled (``storage.sources.shown``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_cometapi.storage.sources import parse_rendered_literal, shown

INPUT_FIELDS = ("image", "sources", "mask")
"""The template fields that may hold images."""


@dataclass(frozen=True)
class ShownInput:
    """A rendered input holding in-memory images: ``value`` as given, ``labelled`` to show."""

    value: Any = field(repr=False)
    labelled: Any

    def serialize(self) -> Any:
        """What Airflow stores and shows as the rendered field."""
        return self.labelled


def for_display(value: Any) -> Any:
    """``value`` in a ``ShownInput`` when it holds an in-memory image; otherwise itself."""
    if isinstance(value, ShownInput):
        return value
    parsed = parse_rendered_literal(value)  # a list a template rendered to text
    labelled = shown(parsed)
    return value if labelled == parsed else ShownInput(value, labelled)


def as_given(value: Any) -> Any:
    """The rendered value itself, whole, for the operator to read."""
    return value.value if isinstance(value, ShownInput) else value
