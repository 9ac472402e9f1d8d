"""CURVE encryption and authentication for the ZeroMQ link (ZeroMQ's own, via pyzmq's ``zmq.auth``).

``crashwatch keys`` writes key pairs as ZeroMQ certificate files: ``NAME.key`` (public, safe to hand out) and
``NAME.key_secret`` (keep private). The monitor takes its own secret certificate and a folder of the public
certificates of the subscribers it admits; a subscriber takes the monitor's public certificate and its own
secret one. A subscriber whose key is not in the folder is refused during the handshake and receives nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from crashwatch.contract.errors import CrashwatchError

log = logging.getLogger(__name__)


class KeyFileError(CrashwatchError):
    """A key file that cannot be used; the message names it."""


def create_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret in ``folder``; refuses to overwrite an existing pair."""
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise KeyFileError(f"{public}: a key pair named {name!r} exists already; choose another name or folder")
    made_public, made_secret = zmq.auth.create_certificates(str(folder), name)
    Path(made_secret).chmod(0o600)
    return Path(made_public), Path(made_secret)


def load_pair(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a secret certificate file."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path}: holds no secret key (give the .key_secret file)")
    return public, secret


def load_public(path: Path) -> bytes:
    return _load(path)[0]


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as err:
        raise KeyFileError(f"{path}: not a readable ZeroMQ certificate ({err})") from None


@dataclass(frozen=True)
class ServerCurve:
    """The monitor's side: its secret certificate and the folder of admitted subscribers' public ones."""

    secret_file: Path
    allowed_dir: Path

    def apply(self, socket: zmq.Socket, context: zmq.Context) -> ThreadAuthenticator:
        """Make ``socket`` a CURVE server admitting only the allowed keys; returns the running authenticator."""
        if not self.allowed_dir.is_dir():
            raise KeyFileError(f"{self.allowed_dir}: no such folder of subscriber public keys")
        allowed = sorted(self.allowed_dir.glob("*.key"))
        if not allowed:
            raise KeyFileError(f"{self.allowed_dir}: holds no public key files (*.key); nobody could subscribe")
        public, secret = load_pair(self.secret_file)
        authenticator = ThreadAuthenticator(context, log=logging.getLogger("crashwatch.monitor.transports.curve.auth"))
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(self.allowed_dir))
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True
        log.info("CURVE on: %d subscriber key(s) admitted from %s", len(allowed), self.allowed_dir)
        return authenticator


@dataclass(frozen=True)
class ClientCurve:
    """A subscriber's side: the monitor's public certificate and its own secret one."""

    server_public_file: Path
    secret_file: Path

    def apply(self, socket: zmq.Socket) -> None:
        public, secret = load_pair(self.secret_file)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_serverkey = load_public(self.server_public_file)
