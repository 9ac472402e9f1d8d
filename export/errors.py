"""The exporter's error."""

from __future__ import annotations

from crashwatch.contract.errors import CrashwatchError


class ExportError(CrashwatchError):
    """The export cannot be completed; the message says why (including parity figures over tolerance)."""
