"""The processes a test started, read from Linux's /proc: for stopping them, and for a failure
(a timeout above all) to say what was still running."""

from __future__ import annotations

import os
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, deepest last."""
    tree = _children()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's command line, or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def still_running(pid: int | None = None, width: int = 300) -> str:
    """One line per live descendant of ``pid`` (default: this process): its id and command."""
    lines = []
    for child in descendants(os.getpid() if pid is None else pid):
        command = command_line(child)
        if command:
            lines.append(f"  pid {child}: {command[:width]}")
    return "\n".join(lines) or "  (no process)"
