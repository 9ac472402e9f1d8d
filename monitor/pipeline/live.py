"""Opening a live source: a stream on FFmpeg's own API (PyAV), whose frames carry the stream's presentation
timestamps and whose failures carry FFmpeg's reason, said in the project's words and never with the URL's
credentials; or a webcam through OpenCV (one API over V4L2, DirectShow and AVFoundation), timed by arrival.
"""

from __future__ import annotations

import logging
import socket
from typing import Iterator, Protocol
from urllib.parse import urlsplit

import av
import cv2
import numpy as np

from crashwatch.contract.video import bgr

log = logging.getLogger(__name__)

WEBCAM_ABSENT = "not found or busy (not plugged in, not enumerated yet, or in use)"


class SourceDown(Exception):
    """A live source that did not open or stopped, with the reason in words and whether retrying soon can
    help (a camera that refuses the password will refuse it in a second as well)."""

    def __init__(self, reason: str, lasting: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lasting = lasting


class LiveSource(Protocol):
    fps: float | None  # the rate the source declares, where it declares one

    def frames(self) -> Iterator[tuple[float | None, np.ndarray]]:
        """``(presentation time in seconds or None, BGR image)`` until the source stops; then SourceDown."""

    def close(self) -> None: ...


class Stream:
    """An RTSP or HTTP stream (RTSP over TCP: a dashcam's Wi-Fi loses UDP packets, and with them frames)."""

    def __init__(self, url: str, display: str, timeout_s: float) -> None:
        self.display = display
        try:
            self._container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=(timeout_s, timeout_s))
        except av.FFmpegError as err:
            raise SourceDown(*_meaning(err, url)) from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceDown("the stream holds no video", lasting=True)
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate and 0 < rate < 1000 else None
        self._url = url

    def frames(self) -> Iterator[tuple[float | None, np.ndarray]]:
        try:
            for packet in self._container.demux(self._stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:  # a packet damaged on the way: its frame is lost, not the stream
                    continue
                for frame in decoded:
                    if not frame.is_corrupt:
                        yield frame.time, bgr(frame)
        except av.FFmpegError as err:
            raise SourceDown(f"{self.display} stopped sending frames: {_meaning(err, self._url)[0]}") from None
        raise SourceDown(f"{self.display} ended the stream")

    def close(self) -> None:
        self._container.close()


class Webcam:
    def __init__(self, target: str | int, display: str) -> None:
        self.display = display
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # the outage is said once, by us
        self._capture = cv2.VideoCapture(target) if isinstance(target, int) else \
            cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceDown(WEBCAM_ABSENT)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None

    def frames(self) -> Iterator[tuple[float | None, np.ndarray]]:
        while True:
            ok, image = self._capture.read()
            if not ok or image is None:
                raise SourceDown(f"{self.display} stopped sending frames")
            yield None, image

    def close(self) -> None:
        self._capture.release()


def open_live(kind: str, target: str | int, display: str, timeout_s: float) -> LiveSource:
    """The opened source; SourceDown with the reason where it does not open."""
    if kind == "webcam":
        return Webcam(target, display)
    return Stream(str(target), display, timeout_s)


def _meaning(err: av.FFmpegError, url: str) -> tuple[str, bool]:
    """FFmpeg's error in the project's words, and whether it lasts. Built from the error's kind, never from
    its text, which quotes the URL, password and all."""
    parts = urlsplit(url)
    host, path = parts.hostname or "", parts.path or "/"
    if isinstance(err, av.error.HTTPUnauthorizedError):
        return ("wrong user or password" if parts.username else "the camera wants a user and password"), True
    if isinstance(err, av.error.HTTPForbiddenError):
        return "forbidden: this user may not watch this stream", True
    if isinstance(err, av.error.HTTPNotFoundError):
        return f"no such stream ({path})", True
    if isinstance(err, av.error.HTTPClientError):
        return "the camera refused the request", True
    if isinstance(err, av.error.HTTPServerError):
        return "the camera failed", False
    if isinstance(err, ConnectionRefusedError):
        return f"connection refused (nothing listens on {host}:{parts.port or 'its default port'})", False
    if isinstance(err, (TimeoutError, av.error.ExitError)):
        return f"timed out waiting for {host}", False
    try:  # FFmpeg says only "input/output error" for a name that does not resolve
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return f"host not found ({host})", True
    return f"{err.strerror or type(err).__name__}".lower(), False
