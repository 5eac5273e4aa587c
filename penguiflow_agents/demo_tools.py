"""Deterministic, safe demo tools for the offline demo and the example manifests.

``tools/clock.yaml`` exposes ``clock.add_minutes`` and ``clock.day_of_week``;
``tools/files.yaml`` exposes ``files.list_files``, ``files.read_file`` and
``files.write_file`` (high risk: the place for an approval gate). The file
tools only touch a sandbox directory: ``$PENGUIFLOW_SANDBOX``, default
``.penguiflow/sandbox`` under the current directory. A path such as
``/shared/notes.txt`` means ``<sandbox>/shared/notes.txt``; a path that would
leave the sandbox is refused.

Paths are canonicalised *before* the policy sees a call (``SandboxPath``):
``shared/a.txt``, ``//shared/a.txt``, ``/./shared/a.txt`` and
``/notes/../shared/a.txt`` all become ``/shared/a.txt``, so an approval rule
on ``^/shared/`` sees what will really be written. A path that has no
canonical form (a ``..`` above the root, a backslash, a control character)
is refused, and so is a path that goes through a symbolic link, or that
spells an existing name differently only in case or Unicode form (one name on
macOS and Windows filesystems: ``/SHARED/a`` would land in ``/shared/``): what
was approved is the place that is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import unicodedata
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from penguiflow_agents.tools import tool

__all__ = [
    "SandboxPath",
    "add_minutes",
    "canonical_path",
    "day_of_week",
    "list_files",
    "read_file",
    "sandbox_root",
    "write_file",
]

SANDBOX_ENV = "PENGUIFLOW_SANDBOX"
DEFAULT_SANDBOX = Path(".penguiflow") / "sandbox"
# Largest file the demo tools read or write, in bytes.
MAX_FILE_BYTES = 1_000_000
# Most entries list_files returns.
MAX_LISTED = 200
# Longest accepted sandbox path.
MAX_PATH_CHARS = 1024
# Longest rendering of a refused path quoted in an error.
_QUOTED_PATH_CHARS = 200
_MINUTES_PER_WEEK = 7 * 24 * 60


def sandbox_root() -> Path:
    """The directory the file tools are confined to (created on first use)."""
    root = Path(os.environ.get(SANDBOX_ENV) or DEFAULT_SANDBOX).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _quoted(path: str) -> str:
    return repr(path if len(path) <= _QUOTED_PATH_CHARS else path[:_QUOTED_PATH_CHARS] + "…")


def canonical_path(path: str) -> str:
    """The canonical sandbox path of ``path``: absolute, no ``.``, ``..`` or ``//``.

    ``shared/a.txt`` -> ``/shared/a.txt``; ``/notes/../shared/e.txt`` ->
    ``/shared/e.txt``. Raises ``ValueError`` for a path with no canonical form.
    """
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"path {_quoted(path)} is longer than {MAX_PATH_CHARS} characters")
    for ch in path:
        if ord(ch) < 32 or ord(ch) == 127:
            raise ValueError(f"path {_quoted(path)} contains the control character {ch!r}")
    if "\\" in path:
        raise ValueError(f"path {_quoted(path)} contains a backslash; separate folders with '/'")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError(
                    f"path {_quoted(path)} goes above the sandbox root; "
                    "use a path inside it, like '/notes.txt'"
                )
            parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


# A path argument of the file tools: canonicalised by the tool's argument model.
SandboxPath = Annotated[str, AfterValidator(canonical_path)]


def _inside(path: str) -> Path:
    """The host path of a sandbox path (canonicalised again: direct calls skip the model)."""
    canonical = canonical_path(path)
    root = sandbox_root()
    target = root.joinpath(*canonical.split("/")[1:]) if canonical != "/" else root
    # Every existing component must be a real directory or file, not a link, spelled as the
    # sandbox spells it.
    probe = root
    for part in canonical.split("/")[1:]:
        parent, probe = probe, probe / part
        if probe.is_symlink():
            raise ValueError(
                f"path {_quoted(canonical)} goes through a symbolic link; "
                "the file tools do not follow links"
            )
        if parent.is_dir():
            _check_spelling(canonical, parent, part)
    return target


def _name_key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _check_spelling(canonical: str, parent: Path, part: str) -> None:
    """Refuse ``part`` when ``parent`` holds a name that differs from it only in case or Unicode
    form. On a case-insensitive filesystem (macOS, Windows) ``/SHARED/a`` would land in
    ``/shared/`` past a policy's ``^/shared/`` rule; refused on every filesystem, so a sandbox
    behaves the same everywhere."""
    key = _name_key(part)
    try:
        with os.scandir(parent) as entries:
            names = [e.name for e in entries if _name_key(e.name) == key]
    except OSError:
        return  # nothing to compare against; the tool's own open reports the error
    if not names or part in names:
        return
    raise ValueError(
        f"path {_quoted(canonical)} names {_quoted(part)}, but the sandbox already has "
        f"{_quoted(names[0])} there; names that differ only in case or Unicode form are one "
        "name on some filesystems: use the existing spelling"
    )


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


class _SandboxIO(ValueError):
    """An OS error turned into a sentence that names the sandbox path, never the host path."""


def _io_error(exc: OSError, what: str, path: str) -> _SandboxIO:
    reason = exc.strerror or type(exc).__name__
    return _SandboxIO(f"cannot {what} {_quoted(path)} in the sandbox: {reason}")


@tool(idempotent=True)
def list_files(directory: SandboxPath = "/") -> dict[str, object]:
    """List the files and folders of a sandbox directory.

    Args:
        directory: a sandbox path such as "/" or "/shared".
    """
    shown = canonical_path(directory)
    target = _inside(shown)
    if not target.is_dir():
        raise ValueError(f"directory {_quoted(shown)} does not exist in the sandbox")
    try:
        entries = sorted(target.iterdir())[:MAX_LISTED]
    except OSError as exc:
        raise _io_error(exc, "list", shown) from None
    return {
        "directory": shown,
        "entries": [
            _shown(p) + ("/" if p.is_dir() and not p.is_symlink() else "") for p in entries
        ],
    }


@tool(idempotent=True)
def read_file(path: SandboxPath) -> dict[str, object]:
    """Read a text file from the sandbox.

    Args:
        path: a sandbox path such as "/shared/notes.txt".
    """
    shown = canonical_path(path)
    target = _inside(shown)
    if not target.is_file():
        raise ValueError(f"file {_quoted(shown)} does not exist in the sandbox")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _io_error(exc, "read", shown) from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"file {_quoted(shown)} is larger than {MAX_FILE_BYTES} bytes")
    return {"path": shown, "content": data.decode("utf-8", errors="replace")}


@tool(risk="high")
def write_file(path: SandboxPath, content: str) -> dict[str, object]:
    """Write a text file in the sandbox, replacing it if it exists.

    Args:
        path: a sandbox path such as "/shared/report.txt"; folders are created.
        content: the complete new text of the file.
    """
    shown = canonical_path(path)
    target = _inside(shown)
    if shown == "/" or target.is_dir():
        raise ValueError(f"path {_quoted(shown)} is a directory; name a file")
    data = content.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"content is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, data)
    except OSError as exc:
        raise _io_error(exc, "write", shown) from None
    return {"path": shown, "bytes": len(data)}


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a fresh temp file next to ``target``, then rename it over ``target``.

    The folder is opened without following a link, the temp file has a name
    nobody can predict and is created with O_EXCL | O_NOFOLLOW (a file or link
    planted there makes the open fail instead of being written through), and
    the rename replaces ``target`` itself, never what a link there points to.
    """
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        tmp = f".{target.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666, dir_fd=dir_fd)  # the umask applies
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
