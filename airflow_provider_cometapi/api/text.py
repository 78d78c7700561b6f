"""Short, one-line excerpts of text that goes into messages, logs and XCom."""

from __future__ import annotations


def excerpt(text: str, limit: int = 120) -> str:
    """``text`` on one line, or its start and end around an ellipsis when longer than ``limit``.

    The end is kept because that is where a path's file name and a message's advice stand.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[: limit - tail - 1]}…{text[-tail:]}"
