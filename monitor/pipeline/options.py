"""What one camera's monitor is asked to do, declared once.

Each option a user sets is a field of ``MonitorOptions`` made by ``setting``: its command-line flag, its key in a
cameras file, its help, its default and ``parse``, the one check of a value wherever it comes from (a flag's
text or a YAML value). ``crashwatch monitor``'s options (``crashwatch.cli.options.camera_options``), the cameras
file's camera entries (``crashwatch.monitor.serving.cameras``) and docs/monitor.md are all made from, or checked
against, ``SETTINGS``. Fields without a setting are the program's own (the post-roll, the demo flag, backoffs).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.controls import Controls
from crashwatch.monitor.evidence.codecs import BITRATE, CODEC_CHOICES, parse_bitrate
from crashwatch.monitor.evidence.disk import parse_size
from crashwatch.monitor.evidence.proof import Signer
from crashwatch.monitor.evidence.ring import MIN_FREE
from crashwatch.monitor.evidence.segments import KeepPolicy
from crashwatch.monitor.explain.regions import StaticMask
from crashwatch.monitor.pipeline.source import SourceSpec, parse_source

CAMERA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a replay names its camera after its file
PROCESS_CAMERA = "process"  # the name a cameras file's process-level heartbeat carries
REPLAYS = ("realtime", "fast")


class OptionsError(CrashwatchError):
    """Monitor options that contradict each other or the bundle (thresholds, overrides, replay of a stream);
    ``setting`` is the option at fault where there is one, so the command line names its flag and a cameras file
    its key."""

    def __init__(self, message: str, setting: "Setting | None" = None) -> None:
        super().__init__(f"{setting.flag}: {message}" if setting is not None else message)
        self.why = message
        self.setting = setting


@dataclass(frozen=True)
class Setting:
    """One option of a camera's monitor, as the command line and a cameras file offer it."""

    name: str  # the options' field
    flag: str  # on the command line ("": none)
    key: str  # in a cameras file ("": none); dotted is nested (``alert.on`` is ``alert: {on: ...}``)
    help: str
    metavar: str  # what the value is, in --help
    parse: Callable[[Any], Any]  # a flag's text or a YAML value -> the value; ValueError saying why not
    default: Any  # as a user writes it (``1GB,24h``); None where unset means the bundle's or the window's
    switch: bool = False  # a flag without a value on the command line; true or false in a file
    # Read as text on the command line and checked when the run starts (a source that cannot be used is a failed
    # run, not a mistyped command).
    late: bool = False

    @property
    def choices(self) -> tuple[str, ...]:
        """The values a choice takes (the command line offers them as such); none for other settings."""
        return self.parse.values if isinstance(self.parse, Choice) else ()


def setting(flag: str, key: str, help: str, metavar: str, parse: Callable[[Any], Any], default: Any = None,
            switch: bool = False, late: bool = False, required: bool = False) -> Any:
    """A ``MonitorOptions`` field a user sets; ``default`` as a user would write it (None: not set)."""
    value = Setting("", flag, key, help, metavar, parse, default, switch, late)
    if required:
        return field(metadata={"setting": value})
    return field(default=None if default is None else parse(default), metadata={"setting": value})


# -- parsers: each the one check of its kind of value ---------------------------------------------------------

def number(low: float, high: float, low_open: bool = False) -> Callable[[Any], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {value!r}") from None
        if not math.isfinite(x) or x < low or x > high or (low_open and x == low):
            bound = f"above {low:g} and at most {high:g}" if low_open else f"from {low:g} to {high:g}"
            raise ValueError(f"must be a number {bound}, got {value!r}")
        return x
    return parse


def boolean(value: Any) -> bool:
    """True or false, nothing else (no ``yes``, ``1`` or ``maybe``)."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[str, ...]

    def __call__(self, value: Any) -> str:
        if value not in self.values:
            raise ValueError(f"must be one of {', '.join(self.values)}, got {value!r}")
        return str(value)


def choice(*values: str) -> Choice:
    return Choice(values)


def camera_name(value: Any) -> str:
    """A name for topics, folders and files."""
    if not isinstance(value, str) or not CAMERA_NAME.fullmatch(value) or value == PROCESS_CAMERA:
        raise ValueError(f"{value!r}: letters, digits, ., - and _, not starting with . (up to 64, not "
                         f"{PROCESS_CAMERA!r}): it names topics, folders and files")
    return value


def folder(value: Any) -> Path:
    """A folder, made if it is not there yet (by whoever writes into it)."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise ValueError(f"must be a folder, got {value!r}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a folder")
    return path


def size(value: Any) -> int:
    """A size in bytes as a user writes it (``256MB``), or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return parse_size(str(value))


def bitrate(value: Any) -> int:
    """Bits per second as a user writes them (``2M``), or a number."""
    return parse_bitrate(str(value))


def keep_policy(value: Any) -> KeepPolicy:
    return value if isinstance(value, KeepPolicy) else KeepPolicy.parse(str(value))


def source(value: Any) -> SourceSpec:
    """A webcam index, a URL or a video file (``SourceError`` where it cannot be used)."""
    if isinstance(value, SourceSpec):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"must be a webcam index, a URL or a video file, got {value!r}")
    return parse_source(str(value))


@dataclass
class MonitorOptions:
    """One camera's monitor, as asked for."""

    source: SourceSpec = setting(
        "--source", "source", "Webcam index (0) or device (/dev/video0), rtsp:// or http(s):// URL, or a video file "
        "(replayed as a live stream).",
        "SOURCE", source, late=True, required=True)
    camera: str = setting("--camera", "name", "Camera name carried by every message.", "NAME", camera_name, "cam0")
    stride: float | None = setting(
        "--stride", "stride", "Seconds between risk queries, above 0 and at most 60 (default: the window's frame "
        "spacing, so consecutive windows share frames).", "SECONDS", number(0, 60, low_open=True))
    replay: str = setting(
        "--replay", "replay", "For files: at the file's frame rate, or as fast as inference allows without "
        "skipping a stride.", "MODE", choice(*REPLAYS), "realtime")
    loop: bool = setting("--loop", "loop", "For files: start again at the end (demos, soak tests).", "", boolean, False,
                         switch=True)
    degraded_alerts: str = setting(
        "--degraded-alerts", "degraded_alerts", "While the camera cannot see well (black, blinded, frozen, blurred, "
        "obstructed, tilted): send its alerts flagged with why (send), or hold them back (hold; their evidence is "
        "still kept).", "MODE", choice("send", "hold"), "send")
    preview: bool = setting(
        "--preview", "preview", "Also publish a small JPEG of the newest frame (320 px wide) at most twice a second "
        "on the preview topic, for `crashwatch dashboard`.", "", boolean, False, switch=True)
    events_dir: Path | None = setting(
        "--events", "events", "Save each alert's evidence here: a folder of segments locked as the alert happens "
        "(from --record's ring, or without it a small ring of the events folder's own, EVENTS/.ring), or with "
        "--events-hold memory one clip + JSON sidecar written after the post-roll (default with --record: "
        "RECORD/events).", "FOLDER", folder)
    events_hold: str = setting(
        "--events-hold", "events_hold", "With --events and no --record: disk keeps the alert's window on disk "
        "before its start is published (a ring of the last few minutes in EVENTS/.ring, so a monitor killed "
        "right after an alert leaves its evidence); memory holds it in memory and writes it after the post-roll "
        "(nothing is left if the monitor dies first).", "MODE", choice("disk", "memory"), "disk")
    record_dir: Path | None = setting(
        "--record", "record", "Loop recording: write the stream continuously to RECORD/CAMERA as segments, lock "
        "alerts' segments into event folders as they happen (evidence that survives a crash).", "FOLDER", folder)
    record_keep: KeepPolicy = setting(
        "--record-keep", "record_keep", "With --record: how much of the ring to keep, a size and/or an age (500MB, "
        "2GB,1h, 7d); the oldest segments go first, locked evidence stays in the events folder.", "SIZE,AGE",
        keep_policy,
        "1GB,24h")
    record_codec: str = setting(
        "--record-codec", "record_codec", "With --record (or --events' own ring): auto is h264 (MP4, which every "
        "browser plays, so the dashboard serves evidence as written); vp8 (WebM) and av1 where asked; mp4v "
        "(MPEG-4 part 2, what earlier versions wrote) for players such as VLC.",
        "CODEC", choice(*CODEC_CHOICES), "auto")
    record_bitrate: int = setting(
        "--record-bitrate", "record_bitrate", "With --record (or --events' own ring): the video's bits per "
        "second (800k, 2M, 4.5M); the default, 0.9 GB an hour, keeps over an hour in the default 1GB ring.",
        "BITS", bitrate, BITRATE)
    record_min_free: int = setting(
        "--record-min-free", "record_min_free", "With --record (or --events' own ring): the free space kept "
        "on the recording's disk, deleting the ring's oldest segments before each new one (locked evidence is "
        "kept).", "SIZE", size,
        MIN_FREE)
    record_segment_seconds: float = setting(
        "--record-segment", "record_segment", "With --record (or --events' own ring): seconds per segment "
        "(at most this much is lost if the monitor dies).", "SECONDS", number(0.2, 60), 2.0)
    alert_on: float | None = setting(
        "--alert-on", "alert.on", "Probability that starts an alert (default: the calibrated threshold).",
        "PROBABILITY", number(0, 1))
    alert_off: float | None = setting(
        "--alert-off", "alert.off", "Probability below which an alert ends (default: 80 % of --alert-on, so "
        "an alert can always end).", "PROBABILITY", number(0, 1))
    alert_min_on_seconds: float = setting(
        "--alert-min-on", "alert.min_on_seconds", "Seconds above --alert-on before an alert starts.",
        "SECONDS", number(0, 3600), 0.0)
    alert_min_off_seconds: float = setting(
        "--alert-min-off", "alert.min_off_seconds", "Seconds below --alert-off before it ends.", "SECONDS", number(0, 3600),
        1.0)
    caution_on: float | None = setting(
        "--caution-on", "caution.on", "Probability that raises a caution, the warning level below an alert "
        "(default: the bundle's calibrated caution threshold, else 60 % of the alert threshold).", "PROBABILITY",
        number(0, 1))
    caution_off: float | None = setting(
        "--caution-off", "caution.off", "Probability below which a caution ends, after a second below it (default: "
        "80 % of --caution-on).", "PROBABILITY", number(0, 1))
    caution_rise_seconds: float | None = setting(
        "--caution-rise", "caution.rise_seconds", "Also raise a caution when the risk, rising at its rate over the "
        "last second, would reach the alert threshold within this many seconds (0: no caution for a rise alone; "
        "default: the bundle's calibrated look-ahead, else 0).", "SECONDS", number(0, 10))
    explain: str = setting(
        "--explain", "explain.when", "Explain each alert's start and update after publishing it: each frame's share "
        "of the risk and where in the most telling frame, on the explanation topic and in the event's evidence "
        "(off: none).", "WHEN", choice("alerts", "off"), "alerts")
    explain_mask: StaticMask = setting(
        "--explain-mask", "explain.mask", "Regions an explanation leaves out (bonnet, logo, timestamp overlay): "
        "polygons x1,y1,x2,y2,... relative to the frame (0 to 1), separated by ; (a list in a cameras file).",
        "POLYGONS", StaticMask.parse)
    window_seconds: float | None = setting(
        "--window-seconds", "window_seconds", "Override the bundle's window length (warned about: not what was "
        "trained).", "SECONDS", number(0, 600, low_open=True))
    # The program's own.
    event_post_seconds: float = 3.0  # evidence kept after an alert ends
    num_frames: int | None = None  # a window of another frame count than the bundle's is refused
    demo_model: bool = False  # the bundle is the demo model: said in every status and alert start
    signer: Signer | None = None  # signs every event's sidecar (``--sign-key``, a setting of the process)
    controls: Controls | None = None  # the operator's switches over MQTT (alerts, threshold, notifications)
    backoff_initial: float = 0.5
    backoff_max: float = 10.0

    def check(self) -> None:
        """Every value set checked by its setting's parser, then the rules between them; ``OptionsError`` naming
        the setting at fault."""
        for s in SETTINGS:
            value = getattr(self, s.name)
            if value is not None:
                try:
                    s.parse(value)
                except ValueError as err:
                    raise OptionsError(str(err), s) from None
        if self.replay == "fast" and self.source.live:
            raise OptionsError("fast is for files; a live source runs in real time", SETTING["replay"])
        if self.loop and self.source.live:
            raise OptionsError("is for files; a live source runs until it stops", SETTING["loop"])
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        own_ring = self.record_dir is None and self.events_dir is not None and self.events_hold == "disk"
        if self.record_dir is None:
            for name in ("record_keep", "record_codec", "record_bitrate", "record_segment_seconds", "record_min_free"):
                if getattr(self, name) != defaults[name] and (name == "record_keep" or not own_ring):
                    raise OptionsError(f"is for the loop recording, which {SETTING['record_dir'].flag} turns on"
                                       + ("" if name == "record_keep" else
                                          f" (or {SETTING['events_dir'].flag}'s own ring)"), SETTING[name])
        if self.events_hold != defaults["events_hold"] and (self.record_dir is not None or self.events_dir is None):
            raise OptionsError(f"is for {SETTING['events_dir'].flag} without {SETTING['record_dir'].flag}",
                               SETTING["events_hold"])
        if self.alert_on is not None and self.alert_off is not None and self.alert_off > self.alert_on:
            raise OptionsError(f"{self.alert_off} is above the alert's start ({self.alert_on}): an alert would end "
                               "before it starts", SETTING["alert_off"])
        if self.caution_on is not None and self.caution_off is not None and self.caution_off > self.caution_on:
            raise OptionsError(f"{self.caution_off} is above the caution's start ({self.caution_on}): a caution "
                               "would end before it starts", SETTING["caution_off"])
        if self.caution_on is not None and self.alert_on is not None and self.caution_on > self.alert_on:
            raise OptionsError(f"{self.caution_on} is above the alert's start ({self.alert_on}): a caution comes "
                               "before an alert", SETTING["caution_on"])

    def alert_overrides(self) -> dict[str, Any]:
        """What the options change of the bundle's alert policy (``AlertPolicy.around``)."""
        overrides = {"off": self.alert_off, "min_on_seconds": self.alert_min_on_seconds,
                     "min_off_seconds": self.alert_min_off_seconds}
        return {key: value for key, value in overrides.items() if value is not None}


def settings_of(options: type) -> tuple[Setting, ...]:
    """The settings of an options dataclass, in field order, each named for its field."""
    return tuple(dataclasses.replace(f.metadata["setting"], name=f.name) for f in dataclasses.fields(options)
                 if "setting" in f.metadata)


SETTINGS = settings_of(MonitorOptions)
SETTING = {s.name: s for s in SETTINGS}
