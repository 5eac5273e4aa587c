"""Deterministic, safe demo tools for the offline demo and the example manifests.

``tools/clock.yaml`` exposes ``clock.add_minutes`` and ``clock.day_of_week``;
``tools/files.yaml`` exposes ``files.list_files``, ``files.read_file`` and
``files.write_file`` (high risk: the place for an approval gate). The file
tools only touch a sandbox directory: ``$PENGUIFLOW_SANDBOX``, default
``.penguiflow/sandbox`` under the current directory. A path such as
``/shared/notes.txt`` means ``<sandbox>/shared/notes.txt``; a path that would
leave the sandbox is refused.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field

from penguiflow_agents.tools import tool

__all__ = ["add_minutes", "day_of_week", "list_files", "read_file", "sandbox_root", "write_file"]

SANDBOX_ENV = "PENGUIFLOW_SANDBOX"
DEFAULT_SANDBOX = Path(".penguiflow") / "sandbox"
# Largest file the demo tools read or write, in bytes.
MAX_FILE_BYTES = 1_000_000
# Most entries list_files returns.
MAX_LISTED = 200
_MINUTES_PER_WEEK = 7 * 24 * 60


def sandbox_root() -> Path:
    """The directory the file tools are confined to (created on first use)."""
    root = Path(os.environ.get(SANDBOX_ENV) or DEFAULT_SANDBOX).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _inside(path: str) -> Path:
    if "\x00" in path:
        raise ValueError(f"path {path!r} contains a NUL character")
    root = sandbox_root()
    target = (root / path.lstrip("/\\")).resolve()
    if target != root and root not in target.parents:
        raise ValueError(
            f"path {path!r} leaves the sandbox; use a path inside it, like '/notes.txt'"
        )
    return target


def _shown(target: Path) -> str:
    rel = target.relative_to(sandbox_root()).as_posix()
    return "/" if rel == "." else f"/{rel}"


@tool(idempotent=True)
def add_minutes(
    time: str,
    minutes: Annotated[int, Field(ge=-_MINUTES_PER_WEEK, le=_MINUTES_PER_WEEK)],
) -> dict[str, object]:
    """Add (or subtract) minutes to a time of day or an ISO 8601 date-time.

    Args:
        time: "HH:MM" (24-hour clock) or an ISO date-time like "2025-03-01T09:30".
        minutes: minutes to add; negative to go back; at most one week either way.
    """
    try:
        clock = dt.datetime.strptime(time, "%H:%M")
    except ValueError:
        clock = None
    if clock is not None:
        later = clock + dt.timedelta(minutes=minutes)
        return {"time": later.strftime("%H:%M"), "day_offset": (later.date() - clock.date()).days}
    try:
        moment = dt.datetime.fromisoformat(time)
    except ValueError:
        raise ValueError(
            f"time {time!r} is neither HH:MM nor an ISO date-time; try '09:30' or '2025-03-01T09:30'"
        ) from None
    return {"time": (moment + dt.timedelta(minutes=minutes)).isoformat()}


@tool(idempotent=True)
def day_of_week(date: str) -> dict[str, str]:
    """The day of the week of a calendar date.

    Args:
        date: an ISO date, "YYYY-MM-DD".
    """
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"date {date!r} is not an ISO date; write it as 'YYYY-MM-DD'") from None
    return {"date": day.isoformat(), "weekday": day.strftime("%A")}


@tool(idempotent=True)
def list_files(directory: str = "/") -> dict[str, object]:
    """List the files and folders of a sandbox directory.

    Args:
        directory: a sandbox path such as "/" or "/shared".
    """
    target = _inside(directory)
    if not target.is_dir():
        raise ValueError(f"directory {directory!r} does not exist in the sandbox")
    entries = sorted(target.iterdir())[:MAX_LISTED]
    return {
        "directory": _shown(target),
        "entries": [_shown(p) + ("/" if p.is_dir() else "") for p in entries],
    }


@tool(idempotent=True)
def read_file(path: str) -> dict[str, object]:
    """Read a text file from the sandbox.

    Args:
        path: a sandbox path such as "/shared/notes.txt".
    """
    target = _inside(path)
    if not target.is_file():
        raise ValueError(f"file {path!r} does not exist in the sandbox")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"file {path!r} is larger than {MAX_FILE_BYTES} bytes")
    return {"path": _shown(target), "content": target.read_text(encoding="utf-8", errors="replace")}


@tool(risk="high")
def write_file(path: str, content: str) -> dict[str, object]:
    """Write a text file in the sandbox, replacing it if it exists.

    Args:
        path: a sandbox path such as "/shared/report.txt"; folders are created.
        content: the complete new text of the file.
    """
    target = _inside(path)
    if target == sandbox_root() or target.is_dir():
        raise ValueError(f"path {path!r} is a directory; name a file")
    data = content.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"content is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return {"path": _shown(target), "bytes": len(data)}
