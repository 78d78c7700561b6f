"""Debian packages the end-to-end tests need, installed with apt when missing."""

from __future__ import annotations

import os
import subprocess


def apt_install(*packages: str) -> None:
    """Install Debian ``packages`` non-interactively; a failure carries apt's own words and
    what to do instead."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *packages],
    ):
        done = subprocess.run(command, env=env, timeout=900, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed (exit {done.returncode}): "
                f"{done.stderr.strip()[-2000:]}\nInstall {', '.join(packages)} as root, or run "
                "the end-to-end tests as root so that they install them."
            )
