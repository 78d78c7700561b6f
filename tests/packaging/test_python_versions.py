"""The Pythons the package claims are the ones the compatibility matrix tests."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_classifiers_claim_exactly_the_pythons_the_matrix_runs():
    pyproject = (REPO / "pyproject.toml").read_text()
    claimed = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', pyproject)
    (loop,) = re.findall(r"for pyver in ([\d. ]+);", (REPO / ".ci" / "matrix").read_text())

    assert claimed == loop.split()
    assert f'requires-python = ">={claimed[0]}"' in pyproject
