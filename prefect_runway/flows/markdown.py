"""Values made safe and short for the markdown a person reads in the Prefect UI."""

from __future__ import annotations

from typing import Any

__all__ = ["code", "md", "size_text"]


def md(text: Any) -> str:
    """A value safe inside a markdown table cell or link text."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("[", "\\[").replace("]", "\\]")


def code(text: Any) -> str:
    """A value as inline code (backticks inside it become quotes)."""
    return "`" + str(text).replace("`", "'") + "`"


def size_text(n: int) -> str:
    """A size in bytes as a person reads it: ``512 B``, ``1.5 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
