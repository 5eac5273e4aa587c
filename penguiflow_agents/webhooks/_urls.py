"""Webhook URLs: which ones are accepted, and how they are shown in logs and errors.

A notify URL is a plain ``http://`` or ``https://`` URL with a host and no
credentials (``user:pass@``): receivers authenticate the signature, not the
other way round. Some receivers put a token in the path or query (chat
incoming-webhook URLs do), so logs, errors and dead-letter lines show only
``scheme://host[:port]/…``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["check_notify_url", "show_url"]

_SCHEMES = ("http", "https")


def check_notify_url(url: str) -> str:
    """``url`` if it is a usable notify URL; else ``ValueError`` saying what to write."""
    if not isinstance(url, str) or not url or url != url.strip():
        raise ValueError(
            f"{url!r} is not a webhook URL; write an absolute URL such as "
            "'https://hooks.example.com/penguiflow'"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(
            f"{show_url(url)!r} is not a valid URL; write one such as "
            "'https://hooks.example.com/penguiflow'"
        ) from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(
            f"{show_url(url)!r} is not an http(s) URL with a host; webhooks are POSTed to "
            "'https://host/path' (or 'http://' for a receiver on a trusted network)"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{show_url(url)!r} carries credentials (user:password@); remove them: receivers "
            "check the Penguiflow-Signature header instead"
        )
    del port
    return url


def show_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to know where, never a token in a path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme or not host:
        return "<not a URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" if port is None else f"{parts.scheme}://{host}:{port}"
    rest = parts.path not in ("", "/") or parts.query or parts.fragment
    return shown + ("/…" if rest else "/")
