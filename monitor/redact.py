"""Credentials never reach a log line or a message: URLs are shown redacted."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(source: str) -> str:
    """A URL without its credentials, for logs and messages: rtsp://user:pass@host/x -> rtsp://***@host/x.

    The host and port are kept as written, not parsed: a URL with a bad port is redacted too (it is shown in
    the error that says so), and one ``urlsplit`` refuses loses everything between ``//`` and its last ``@``.
    """
    try:
        parts = urlsplit(source)
    except ValueError:
        scheme, sep, rest = source.partition("//")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else source
    if "@" not in parts.netloc:
        return source
    return parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()
