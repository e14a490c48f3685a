"""Values made safe and short for the markdown a person reads in the Prefect UI."""

from __future__ import annotations

from typing import Any

__all__ = ["code", "cost_text", "md", "size_text"]


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


def cost_text(amount: float | None, unit: str | None) -> str:
    """A cost as every artifact shows it: at least two decimals, more only where the amount
    has them, and always its unit (``1.00 credits``, ``0.15 USD``, ``0.0035 USD``)."""
    if amount is None:
        return ""
    text = f"{amount:.2f}"
    if abs(float(text) - amount) > 1e-9:
        text = f"{amount:.6f}".rstrip("0")
    return f"{text} {unit}" if unit else text
