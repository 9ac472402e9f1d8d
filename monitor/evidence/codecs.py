"""Writing evidence video with FFmpeg's own encoders (PyAV): the codecs the recording offers, each with its
container, and a writer whose failures are ``OSError`` naming the file.

H.264 in MP4 is the default: every browser plays it, so the dashboard serves evidence as written. x264 runs at
its ``ultrafast`` preset with ``zerolatency`` (no look-ahead: a frame handed over is in the file at the next
packet, and 720p costs a few milliseconds a frame on one core, figures in docs/evidence.md) at a set bitrate,
so a ring's hours follow from its size. Frames keep their slot on the segment's constant-rate timeline (a frame
the capture dropped holds the one before), which every reader of ``index / fps`` agrees on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

# SVT-AV1 prints its banner and settings on stdout/stderr by itself, outside FFmpeg's logging: errors only.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from crashwatch.monitor.evidence.segments import RecordingError  # noqa: E402


@dataclass(frozen=True)
class Codec:
    """One way to write a segment: FFmpeg's encoder, the container's suffix, and the encoder's options."""

    encoder: str
    suffix: str
    browsers_play: bool
    options: dict[str, str] = field(default_factory=dict)


CODECS = {
    "h264": Codec("libx264", ".mp4", True, {"preset": "ultrafast", "tune": "zerolatency"}),
    "vp8": Codec("libvpx", ".webm", True, {"deadline": "realtime", "cpu-used": "8"}),
    "av1": Codec("libsvtav1", ".mp4", True, {"preset": "10"}),
    "mp4v": Codec("mpeg4", ".mp4", False),  # MPEG-4 part 2: what earlier versions wrote; players, not browsers
}
CODEC_CHOICES = ("auto", *CODECS)
BITRATE = "2M"  # the default: 0.9 GB an hour, so the default 1 GB ring holds over an hour of any resolution


def probe_codec(name: str) -> str:
    """The codec to record with: ``name`` (``auto`` is h264), checked against the encoders this FFmpeg has.
    Nothing is written: the recording's disk may be full."""
    chosen = "h264" if name == "auto" else name
    try:
        av.codec.Codec(CODECS[chosen].encoder, "w")
    except (av.codec.codec.UnknownCodecError, av.FFmpegError):
        raise RecordingError(f"--record-codec {chosen}: this FFmpeg (PyAV {av.__version__}) has no "
                             f"{CODECS[chosen].encoder} encoder; try h264") from None
    return chosen


def parse_bitrate(text: str) -> int:
    """``2M``, ``800k``, ``1500000`` -> bits per second; ValueError saying what is wrong."""
    value = text.strip().lower().removesuffix("bit/s").removesuffix("bps")
    scale = {"k": 1_000, "m": 1_000_000}.get(value[-1:], 1)
    try:
        bits = float(value[:-1] if scale > 1 else value) * scale
    except ValueError:
        bits = 0
    if not 50_000 <= bits <= 100_000_000:
        raise ValueError(f"{text!r}: give bits per second from 50k to 100M (800k, 2M, 4.5M)")
    return int(bits)


DEFAULT_BITS = parse_bitrate(BITRATE)


class VideoWriter:
    """One video file of BGR frames at a constant ``fps``; an odd width or height loses its last column or row
    (4:2:0 video has even sides), a frame of another size is resized to the first's. Closing flushes the encoder
    and the container; any failure is an ``OSError`` naming the file, its errno kept (a full disk is ENOSPC)."""

    def __init__(self, path: Path, codec: str, fps: float, width: int, height: int,
                 bitrate: int = DEFAULT_BITS) -> None:
        self.path = path
        self.size = (width - width % 2, height - height % 2)
        if min(self.size) < 2:
            raise OSError(f"{path}: a {width}x{height} frame is too small to encode")
        spec = CODECS[codec]
        try:
            self._container = av.open(str(path), "w")
        except av.FFmpegError as err:
            raise self._error(err) from None
        try:
            stream = self._container.add_stream(spec.encoder, rate=_rate(fps), options=dict(spec.options))
            if not isinstance(stream, av.VideoStream):  # every encoder of CODECS is a video one
                raise av.FFmpegError(0, f"{spec.encoder} is not a video encoder")
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = bitrate
            stream.codec_context.thread_count = 1  # the model needs the other cores more than the recording does
            self._stream = stream
        except av.FFmpegError as err:
            self._container.close()
            raise self._error(err) from None
        self._next_pts = 0

    def write(self, image: np.ndarray) -> None:
        width, height = self.size
        if image.shape[:2] != (height, width):  # an odd side's last row or column, or another size resized
            crop = image[:height, :width]
            image = np.ascontiguousarray(crop) if crop.shape[:2] == (height, width) else \
                cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        # OpenCV's BGR -> I420 is several times quicker than swscale's conversion inside PyAV.
        planes = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = self._next_pts
        self._next_pts += 1
        self._mux(frame)

    def close(self) -> None:
        """Flush and close; raises OSError if the file could not be finished."""
        try:
            self._mux(None)
        finally:
            try:
                self._container.close()
            except av.FFmpegError as err:
                raise self._error(err) from None

    def abandon(self) -> None:
        """Close without finishing: the file is being thrown away (its disk failed)."""
        try:
            self._container.close()
        except av.FFmpegError:
            pass

    def _mux(self, frame: av.VideoFrame | None) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as err:
            raise self._error(err) from None

    def _error(self, err: av.FFmpegError) -> OSError:
        """FFmpeg's failure as an OSError naming the file; the errno kept where it is one (ENOSPC, EIO)."""
        if isinstance(err, OSError) and err.errno:
            return OSError(err.errno, err.strerror or str(err), str(self.path))
        return OSError(f"{self.path}: {err.strerror or type(err).__name__}")


def _rate(fps: float) -> Fraction:
    """The container's frame rate: 29.97 stays 30000/1001, 12.5 stays 25/2."""
    return Fraction(fps).limit_denominator(1001)
