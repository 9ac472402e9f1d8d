"""Which MQTT broker to publish to and as whom: the ``--mqtt`` URL, its credentials (URL, password file or
environment) and TLS, checked at the start so a bad one stops the monitor with a clear line."""

from __future__ import annotations

import os
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.redact import redact_url

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
USERNAME_ENV = "CRASHWATCH_MQTT_USERNAME"
PASSWORD_ENV = "CRASHWATCH_MQTT_PASSWORD"


class MqttError(CrashwatchError):
    """A bad MQTT URL, password file, CA file or topic part; the message names it, the URL redacted."""


@dataclass(frozen=True)
class MqttTarget:
    """Where to publish and as whom; ``display`` is what logs, errors and ``status`` show."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: Path | None = None  # the CA to verify the broker against (mqtts://); None: the system's store

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{'***@' if self.username else ''}{host}:{self.port}"

    @classmethod
    def parse(cls, url: str, password_file: Path | None = None, ca: Path | None = None) -> "MqttTarget":
        """``mqtt://[USER[:PASSWORD]@]HOST[:PORT]`` (1883) or ``mqtts://...`` (8883, TLS). The user name comes
        from the URL, else $CRASHWATCH_MQTT_USERNAME; the password from the URL, else ``password_file`` (the
        password alone on one line), else $CRASHWATCH_MQTT_PASSWORD."""
        shown = redact_url(url)
        form = "give mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://..."
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            problem = "port must be a number from 1 to 65535" if "port" in str(err).lower() else "not a valid URL"
            raise MqttError(f"{shown}: {problem}") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise MqttError(f"{shown}: not an MQTT URL; {form}")
        if not parts.hostname:
            raise MqttError(f"{shown}: no host; {form}")
        if port == 0:
            raise MqttError(f"{shown}: port must be a number from 1 to 65535")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttError(f"{shown}: an MQTT URL has no path or query; {form}")
        tls = parts.scheme == "mqtts"
        if ca is not None and not tls:
            raise MqttError(f"{shown}: a CA file is for mqtts:// only (plain mqtt:// has no TLS)")
        if ca is not None and not ca.is_file():
            raise MqttError(f"{ca}: CA file not found (for {shown})")
        username = unquote(parts.username) if parts.username else os.environ.get(USERNAME_ENV) or None
        password = (unquote(parts.password) if parts.password else None) or _read_password(password_file) \
            or os.environ.get(PASSWORD_ENV) or None
        if password is not None and username is None:
            raise MqttError(f"{shown}: a password but no user name; give mqtt://USER@HOST or set {USERNAME_ENV}")
        target = cls(parts.hostname, port or DEFAULT_PORTS[parts.scheme], tls, username, password, ca)
        if tls:
            target.tls_context()  # a CA file that is not PEM fails here, not in the background
        return target

    def client(self, name: str) -> tuple[paho.Client, str]:
        """A paho client for this broker, as whom and over TLS as the URL says, not yet connected, and its id:
        ``crashwatch-NAME-`` and a random suffix, as a broker drops a client whose id another connection takes."""
        client_id = f"crashwatch-{name}-{secrets.token_hex(4)}"
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set_context(self.tls_context())
        return client, client_id

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the broker's certificate and host name against ``ca``, or the system's store without one."""
        try:
            return ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))
        except (OSError, ValueError) as err:
            raise MqttError(f"{self.ca}: not a CA certificate file in PEM format ({err}) for {self.display}") \
                from None


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MqttError(f"{path}: cannot read the MQTT password file: {getattr(err, 'strerror', None) or err}") \
            from None
    if not lines or not lines[0]:
        raise MqttError(f"{path}: the MQTT password file is empty; it holds the password alone on one line")
    return lines[0]
