"""The one base class of every error that means a user's mistake (a bad file, option, config or URL).

The CLI turns a ``CrashwatchError`` into one line and exit code 1, and shows the traceback only with ``-vv``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CrashwatchError(Exception):
    """A problem the user can fix; the message names the file, line, option or URL and what is wrong."""
