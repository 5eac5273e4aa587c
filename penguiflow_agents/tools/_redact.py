"""Keeping resolved ``${VAR}`` values out of text that leaves a source.

- ``secret_values(manifest)``: the values of the ``${VAR}`` variables a
  manifest's ``env``, ``headers`` and ``url`` refer to;
- ``Redactor``: replaces such values, and their URL-encoded, JSON-escaped and
  base64 forms (``encoded_forms``), in a text with ``***`` before it reaches
  one of our log events or an error message;
- ``ResultRedactor(manifest)``: the same for a tool's *result* (its output,
  structured content and error, walked through lists and mappings) before the
  registry hands it on, so an echoed secret never reaches the store, the
  console or the model;
- ``redact_library_logs(values)``: the libraries a source hands those values
  to (the ``mcp`` SDK, httpx, httpx2, httpcore) log URLs and messages through
  the standard ``logging`` module, at levels an application may well enable.
  A log-record factory, installed once per process, replaces the values in
  the records of those loggers, whatever handlers the application set up.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._types import ToolResult

__all__ = [
    "LIBRARY_LOGGERS",
    "MIN_RESULT_SECRET_CHARS",
    "Redactor",
    "ResultRedactor",
    "encoded_forms",
    "redact_library_logs",
    "redact_value",
    "secret_values",
]

# Top-level logger names of the libraries that see resolved values ("client" is
# the mcp SDK's session logger); records of other loggers are left alone.
LIBRARY_LOGGERS = frozenset({"mcp", "httpx", "httpx2", "httpcore", "client"})
MASK = "***"

# Shorter values are not masked in results: "1" or "on" would mangle ordinary text.
MIN_RESULT_SECRET_CHARS = 4
# Deepest nesting of a result walked (deeper parts are kept as they are: JSON from a
# source is bounded by the parser long before this).
_MAX_DEPTH = 200

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def secret_names(manifest: SourceManifest) -> set[str]:
    """The ``${VAR}`` variables the manifest's env/headers/url/auth refer to."""
    texts: list[str] = [*manifest.env.values(), *manifest.headers.values()]
    if manifest.url:
        texts.append(manifest.url)
    if manifest.auth is not None:
        texts.extend(manifest.auth.templates())
    return {m.group(1) for text in texts for m in _VAR_RE.finditer(text)}


def secret_values(manifest: SourceManifest, environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the ``${VAR}`` variables the manifest's env/headers/url/auth refer to."""
    env = os.environ if environ is None else environ
    return [v for name in sorted(secret_names(manifest)) if (v := env.get(name))]


def encoded_forms(value: str) -> set[str]:
    """``value`` and the common encodings it reaches text in.

    URL-encoded (``%20`` and ``+`` for a space), JSON-escaped (inside a JSON
    string) and base64 (standard and URL-safe, with or without padding): a
    secret with a space otherwise shows up as ``SECR%20ET`` in an error.
    """
    raw = value.encode("utf-8")
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    for b64 in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = b64.decode("ascii")
        forms |= {text, text.rstrip("=")}
    return {f for f in forms if f}


def _pattern_of(values: Iterable[str]) -> re.Pattern[str] | None:
    every = {form for v in values if v for form in encoded_forms(v)}
    ordered = sorted(every, key=len, reverse=True)  # longest first
    return re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None


class Redactor:
    """Replaces secret values in text with ``***`` before it reaches a log or an error."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        self._pattern = _pattern_of(secrets)

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)


def redact_value(value: Any, redact: Callable[[str], str], _depth: int = 0) -> Any:
    """``value`` with ``redact`` applied to every string in it (keys too), through lists,
    tuples and mappings; other values are kept. Unchanged parts are returned as they are."""
    if isinstance(value, str):
        return redact(value)
    if _depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            (redact(k) if isinstance(k, str) else k): redact_value(v, redact, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = [redact_value(v, redact, _depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


class ResultRedactor:
    """Masks the ``${VAR}`` values a source's manifest refers to in its tools' results.

    The values are read from the environment on each call (the source resolves
    them on each connect); the pattern is rebuilt only when they change.
    """

    __slots__ = ("_manifest", "_none", "_redactor", "_values")

    def __init__(self, manifest: SourceManifest) -> None:
        self._manifest = manifest
        self._values: tuple[str, ...] = ()
        self._redactor = Redactor()
        # A manifest that refers to no variable has nothing to mask, whatever the environment.
        self._none = not secret_names(manifest)

    def current(self) -> Redactor | None:
        """The redactor of the values set now; None when there is nothing to mask."""
        return self._current()

    def _current(self) -> Redactor | None:
        if self._none:
            return None
        values = tuple(
            v for v in secret_values(self._manifest) if len(v) >= MIN_RESULT_SECRET_CHARS
        )
        if values != self._values:
            self._values = values
            self._redactor = Redactor(values)
        return self._redactor if values else None

    def __call__(self, result: ToolResult) -> ToolResult:
        """Redact a ``ToolResult`` in place (``output``, ``structured``, ``error``); returns it."""
        redactor = self._current()
        if redactor is None:
            return result
        result.output = redact_value(result.output, redactor)
        result.structured = redact_value(result.structured, redactor)
        if result.error is not None:
            result.error = redactor(result.error)
        return result


class _LibraryLogScrubber:
    """The process-wide set of values to keep out of library log records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._installed = False

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if v} - self._values
        if not new:
            return
        with self._lock:
            self._values |= new
            self._pattern = _pattern_of(self._values)
            if not self._installed:
                previous = logging.getLogRecordFactory()
                logging.setLogRecordFactory(self._factory(previous))
                self._installed = True

    def _factory(
        self, previous: Callable[..., logging.LogRecord]
    ) -> Callable[..., logging.LogRecord]:
        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            pattern = self._pattern
            if pattern is not None and record.name.partition(".")[0] in LIBRARY_LOGGERS:
                _scrub(record, pattern)
            return record

        return make_record


def _scrub(record: logging.LogRecord, pattern: re.Pattern[str]) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports that itself
        return
    if pattern.search(message):
        record.msg, record.args = pattern.sub(MASK, message), None
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None:
        text = "".join(traceback.format_exception(exc)).rstrip("\n")
        if pattern.search(text):
            # Formatters print exc_text as is; without exc_info none can render it again.
            record.exc_text, record.exc_info = pattern.sub(MASK, text), None


_scrubber = _LibraryLogScrubber()


def redact_library_logs(values: Iterable[str]) -> None:
    """Keep ``values`` out of the log records of the mcp SDK and the HTTP clients, from now on."""
    _scrubber.add(values)
