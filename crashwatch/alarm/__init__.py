"""``crashwatch alarm``: the in-cab unit that sounds each warning level (docs/alarm.md)."""

DEFAULT_CONTROL = "tcp://127.0.0.1:5580"  # where ``crashwatch alarm mute`` reaches a running unit
