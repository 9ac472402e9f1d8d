"""A real Mosquitto on loopback for the MQTT tests, and a real paho subscriber to read what reaches it.

The broker runs from a generated mosquitto.conf (persistence off, so a restart forgets retained messages and
sessions as a crashed broker would); a variant wants a password (``mosquitto_passwd -b``), another speaks
TLS only, with a CA and server certificate made by the ``openssl`` command. A test may stop and start it on
the same port.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from crashwatch.bench.process import free_port

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def need_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto mosquitto-clients)")
    return MOSQUITTO


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs for localhost and 127.0.0.1: (ca.crt, server.crt, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / name for name in ("ca.key", "ca.crt", "server.key", "server.csr",
                                                            "server.crt"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=crashwatch test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    extensions = folder / "server.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", extensions)
    return ca, cert, key


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


class Broker:
    """One Mosquitto process on 127.0.0.1:``port``; ``users`` turns anonymous access off, ``tls`` makes the
    listener TLS-only (``ca`` is then the CA file that verifies it)."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.binary = need_mosquitto()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ca: Path | None = None
        self.log = folder / "mosquitto.log"
        # As root Mosquitto would switch to the `mosquitto` user, who cannot read a test's files; as anyone
        # else `user` is ignored.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "persistence false",
                 f"log_dest file {self.log}", "log_type all", f"allow_anonymous {'false' if users else 'true'}"]
        if users:
            passwords = folder / "passwords"
            passwords.touch()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                               capture_output=True)
            lines.append(f"password_file {passwords}")
        if tls:
            self.ca, cert, key = make_tls_files(folder / "tls")
            lines += [f"cafile {self.ca}", f"certfile {cert}", f"keyfile {key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen | None = None

    def start(self) -> "Broker":
        with open(self.folder / "stderr", "ab") as stderr:
            self._process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                             stderr=stderr)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self._process.returncode}): {self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within 10 s: {self.log_text()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a paused broker would not see the SIGTERM
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered, as with a broker that hangs."""
        self._process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in (self.folder / "stderr", self.log)
                       if path.exists())


@dataclass(frozen=True)
class Received:
    topic: str
    payload: Any  # the JSON, or the text where it is not JSON ("online", "offline")
    retain: bool
    at: float  # time.time() on arrival


class Subscriber:
    """A paho client subscribed to ``topic`` (QoS 1) that keeps every message it receives."""

    def __init__(self, broker: Broker, topic: str = "crashwatch/#", username: str | None = None,
                 password: str | None = None) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2)
        if username:
            self._client.username_pw_set(username, password)
        if broker.ca:
            self._client.tls_set_context(ssl.create_default_context(cafile=str(broker.ca)))
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", broker.port, keepalive=10)
        self._client.loop_start()
        assert self._subscribed.wait(10), f"subscriber got no SUBACK from {broker.port}"

    def _on_message(self, client, userdata, message) -> None:
        text = message.payload.decode()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        with self._cond:
            self.messages.append(Received(message.topic, payload, bool(message.retain), time.time()))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float, what: str) -> list[Received]:
        """All messages so far, once ``done`` of them is true; fails naming ``what`` after ``timeout``."""
        with self._cond:
            assert self._cond.wait_for(lambda: done(self.messages), timeout), \
                f"no {what} within {timeout} s; got {[(m.topic, m.payload) for m in self.messages]}"
            return list(self.messages)

    def publish(self, topic: str, payload: str) -> None:
        """Publish as an operator's client does (Home Assistant's switches), QoS 1, acknowledged."""
        self._client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return result
