"""Why a stream would not open, in the project's words: OpenCV says only that it failed, and FFmpeg's own lines
(``401 Unauthorized``) are kept off the terminal. After a failed open the server is asked itself, as FFmpeg
asked it: the host looked up, the port connected to, and for RTSP a ``DESCRIBE`` (with the URL's credentials,
Basic or Digest as the camera asks) or for HTTP a ``GET``, whose status says what is wrong. The answer never
holds the credentials.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

TIMEOUT_S = 3.0
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


@dataclass(frozen=True)
class Diagnosis:
    """What is wrong with a source, and whether trying again soon can help (a camera that refuses the
    password will refuse it in a second as well: its retries back off to the longest wait)."""

    reason: str
    lasting: bool


def diagnose(url: str, timeout: float = TIMEOUT_S) -> Diagnosis | None:
    """Why ``url`` does not stream; None where the server answers as a working camera would (the fault is
    then past what a request shows: the stream's own data)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(scheme, 554)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return Diagnosis(f"host not found ({host})", lasting=True)
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return Diagnosis(f"connection refused (nothing listens on {host}:{port})", lasting=False)
    except (socket.timeout, TimeoutError):
        return Diagnosis(f"timed out connecting to {host}:{port}", lasting=False)
    except OSError as err:
        return Diagnosis(f"cannot connect to {host}:{port} ({err.strerror or err})", lasting=False)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))
    try:
        if scheme in ("http", "https"):
            connection.close()
            status = _http_status(parts.scheme, host, port, bare, user, password, timeout)
        else:
            with _wrap(connection, scheme, host) as stream:
                status = _rtsp_status(stream, bare, user, password)
    except (OSError, ValueError) as err:
        return Diagnosis(f"{host}:{port} answered, but not as a camera ({err})", lasting=False)
    return _meaning(status, bool(user), parts.path or "/")


def _meaning(status: int, credentials: bool, path: str) -> Diagnosis | None:
    if status == 401:
        return Diagnosis("wrong user or password" if credentials else
                         "the camera wants a user and password (give them in the URL: rtsp://USER:PASSWORD@HOST/...)",
                         lasting=True)
    if status == 403:
        return Diagnosis("forbidden: this user may not watch this stream", lasting=True)
    if status == 404:
        return Diagnosis(f"no such stream ({path})", lasting=True)
    if status >= 500:
        return Diagnosis(f"the camera failed ({status})", lasting=False)
    if status >= 400:
        return Diagnosis(f"the camera refused the request ({status})", lasting=True)
    return None


def _wrap(connection: socket.socket, scheme: str, host: str) -> socket.socket:
    if scheme == "rtsps":
        return ssl.create_default_context().wrap_socket(connection, server_hostname=host)
    return connection


def _rtsp_status(stream: socket.socket, url: str, user: str, password: str) -> int:
    """The status of a DESCRIBE of ``url``; given credentials, answered to the camera's challenge."""
    status, headers = _describe(stream, url, 1, None)
    if status == 401 and user:
        challenge = headers.get("www-authenticate", "")
        status, _ = _describe(stream, url, 2, _authorization(challenge, user, password, "DESCRIBE", url))
    return status


def _describe(stream: socket.socket, url: str, cseq: int, authorization: str | None) -> tuple[int, dict[str, str]]:
    request = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: {cseq}\r\nAccept: application/sdp\r\nUser-Agent: crashwatch\r\n"
    if authorization:
        request += f"Authorization: {authorization}\r\n"
    stream.sendall((request + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = stream.recv(4096)
        if not chunk:
            break
        head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    match = re.match(r"RTSP/\d\.\d (\d{3})", lines[0])
    if not match:
        raise ValueError(f"not an RTSP answer: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(match.group(1)), headers


def _authorization(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """The Authorization header for a Basic or Digest (MD5) challenge."""
    if challenge.lower().startswith("digest"):
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{response}"'
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _http_status(scheme: str, host: str, port: int, url: str, user: str, password: str, timeout: float) -> int:
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=timeout)
    headers = {"User-Agent": "crashwatch"}
    if user:
        headers["Authorization"] = _authorization("basic", user, password, "GET", url)
    try:
        connection.request("GET", urlsplit(url).path or "/", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()
