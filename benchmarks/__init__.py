"""Measured figures for the README's Performance section (``make bench``); not pass/fail tests."""
