"""Credentials never reach a log line or a message: URLs are shown redacted."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(source: str) -> str:
    """A URL without its credentials, for logs and messages: rtsp://user:pass@host/x -> rtsp://***@host/x."""
    try:
        parts = urlsplit(source)
    except ValueError:
        return source
    if parts.username is None and parts.password is None:
        return source
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()
