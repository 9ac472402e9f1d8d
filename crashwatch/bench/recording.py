"""What the loop recording costs (``crashwatch bench --recording CLIP``): each codec the recording offers, at
the default bitrate and at half and twice it, writing ``CLIP``'s frames as the recorder does (one encoder
thread, constant frame rate): encoding time per frame, the bits it really wrote, the size of an hour, and how
many hours the default ring holds."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from crashwatch.contract.video import VideoFile, bgr
from crashwatch.monitor.evidence.codecs import BITRATE, CODECS, VideoWriter, parse_bitrate
from crashwatch.monitor.evidence.segments import KeepPolicy
from crashwatch.monitor.pipeline.options import SETTING

RATES = ("1M", BITRATE, "4M")


def measure(clip: Path) -> list[dict[str, Any]]:
    with VideoFile(clip) as video:
        frames = [bgr(frame) for _, frame in video.frames()]
        fps = video.fps
    height, width = frames[0].shape[:2]
    seconds = len(frames) / fps
    rows = []
    ring = SETTING["record_keep"].default
    ring_bytes = KeepPolicy.parse(ring).max_bytes or 0
    for codec, spec in CODECS.items():
        for rate in RATES:
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / f"bench{spec.suffix}"
                started = time.perf_counter()
                writer = VideoWriter(path, codec, fps, width, height, parse_bitrate(rate))
                for image in frames:
                    writer.write(image)
                writer.close()
                elapsed = time.perf_counter() - started
                size = path.stat().st_size
            per_hour = size / seconds * 3600
            rows.append({"codec": codec, "bitrate": rate, "default": rate == BITRATE, "browsers": spec.browsers_play,
                         "ms_per_frame": round(elapsed / len(frames) * 1000, 1), "core_share": elapsed / seconds,
                         "mbit_s": size * 8 / seconds / 1e6, "gb_per_hour": per_hour / 1e9,
                         "ring_hours": ring_bytes / per_hour, "ring": ring, "size": f"{width}x{height}", "fps": fps,
                         "seconds": seconds})
    return rows


def table(rows: list[dict[str, Any]], machine: str, clip: Path) -> str:
    first = rows[0]
    lines = [f"Loop recording (`crashwatch bench --recording`), {machine}; `{clip.name}` ({first['size']}, "
             f"{first['fps']:g} fps, {first['seconds']:.1f} s), one encoder thread; the ring's default keep is "
             f"{first['ring']}.", "",
             "| codec | bitrate | browsers play it | ms a frame | share of one core | Mbit/s written | GB an hour | "
             "hours in the default ring |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        mark = " (default)" if r["default"] else ""
        lines.append(f"| {r['codec']} | {r['bitrate']}{mark} | {'yes' if r['browsers'] else 'no'} | "
                     f"{r['ms_per_frame']} | {r['core_share']:.0%} | {r['mbit_s']:.2f} | {r['gb_per_hour']:.2f} | "
                     f"{r['ring_hours']:.1f} |")
    return "\n".join(lines) + "\n"
