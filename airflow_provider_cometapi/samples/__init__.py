"""Sample images shipped with the provider, for the example DAGs and the emulator demo."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent
PAPER_BOAT = SAMPLES_DIR / "paper-boat.png"
PAPER_BOAT_MASK = SAMPLES_DIR / "paper-boat-mask.png"
"""RGBA mask, transparent around the boat's tip: where the edit may paint."""
