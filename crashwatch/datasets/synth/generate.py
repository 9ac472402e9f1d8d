"""``crashwatch synth``: generated clips in the trainer's dataset format, and long drives for replay.

Validation and test clips are the research clip: one scenario, ending 1 to 2 s before its critical moment. A
collision clip is then labelled 1 in the research sense (a collision 1 to 2 s after the clip ends) and carries
``event_time`` (seconds from the clip's start, past its end); a near miss ends as close to its most alarming
moment, labelled 0. Training clips show what a monitor sees on a drive (``TRAINING_LEAD``,
``HANDOVER_SHARE``): collisions up to the impact, near misses and normal driving on past their critical
moment, and half of them open in a drive's handover into their scenario. Drives are minutes of scenarios on
one road, each handed over to the next without a cut (``crashwatch.datasets.synth.drive``); a crash drive ends with a
collision (its ``event_time``), a normal one never collides. Ground truth for every file (scenario kind,
collision time, clearance) goes to ``{split}_truth.json`` beside the JSONL, and what every frame of a clip shows
(ego speed, each road user's box and distance) to ``NAME.geometry.json`` beside the clip, for
``training.geometry_weight``; beside every clip and drive, ``NAME.boxes.json`` holds each frame's road-user
boxes, the one the collision involves marked ``target`` (``crashwatch.contract.sidecars.read_boxes``), for the
explanation's pointing game in ``replay-eval``. Each clip is drawn from its own seed, taken in order from the
run's seed, so any number of processes writes the same files.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from crashwatch.contract.prompt import DEFAULT_QUESTION
from crashwatch.contract.sidecars import Box, Boxes, BoxFrame, boxes_path, geometry_path, truth_path
from crashwatch.datasets.synth.catalog import COLLISIONS, NEAR_MISSES, NORMAL, build
from crashwatch.datasets.synth.drive import Drive, Segment
from crashwatch.datasets.synth.render import AgentBox, agent_boxes, render_frame, write_video
from crashwatch.datasets.synth.scenario import Scenario, look

log = logging.getLogger(__name__)

FPS = 10.0
SIZE = (320, 180)
SHARES = {"collision": 0.45, "near_miss": 0.40, "normal": 0.15}
# Drives are ordinary traffic (following, open road, being passed close by) with an alarming near miss as one
# segment in four: about two a minute, far denser than real driving, yet driving and not a string of scares.
ORDINARY = NORMAL + ("pass_by",)
ALARMING = tuple(kind for kind in NEAR_MISSES if kind not in ORDINARY)
DRIVE_NEAR_MISS_SHARE = 0.25
# How long before its critical moment a clip ends (seconds, drawn uniformly). Validation and test clips are the
# research clip; training clips run on as a drive plays them, collisions up to the impact and near misses and
# normal driving to a second past their critical moment, so that no moment a monitor sees is new to the model
# (what each choice fixed is in docs/decisions.md).
RESEARCH_LEAD = (1.0, 2.0)
TRAINING_LEAD = {True: (0.0, 2.0), False: (-1.0, 2.0)}  # by whether the scenario collides
# This share of training clips opens in a drive's handover (train.synth.drive): the last second of the scene
# before, then road users turning off and onto the road as the next scenario (the clip's own) takes over, as
# drives spend about a third of their time in handovers.
HANDOVER_SHARE = 0.5


def _frame_times(segments: Iterable[Segment], fps: float):
    """(scenario, scenario time, frame index) of every frame the segments make, in order."""
    index = 0
    for seg in segments:
        for k in range(int(round((seg.end - seg.start) * fps))):
            yield seg.scenario, seg.start + k / fps, index
            index += 1


def _frames(segments: list[Segment], fps: float, size: tuple[int, int]):
    return (render_frame(sc, t, size, index) for sc, t, index in _frame_times(segments, fps))


Drawn = list[tuple[Scenario, float, int, list[AgentBox]]]


def _drawn(segments: list[Segment], fps: float, size: tuple[int, int]) -> Drawn:
    """(scenario, scenario time, frame index, boxes of the road users drawn) of every frame."""
    return [(sc, t, index, agent_boxes(sc, t, size, index)) for sc, t, index in _frame_times(segments, fps)]


def _geometry(drawn: Drawn, fps: float, size: tuple[int, int]) -> dict:
    """What every frame shows: the ego car's speed and each drawn road user's box and distance (the
    ``*.geometry.json`` beside a clip; ``crashwatch.train.geometry`` reads it)."""
    frames = [{"ego_speed": round(sc.ego.at(t)[1], 3), "agents": [b.as_list() for b in boxes]} for sc, t, _, boxes in drawn]
    return {"fps": fps, "size": list(size), "frames": frames}


def _write_boxes(video: Path, drawn: Drawn, fps: float, size: tuple[int, int]) -> None:
    """``NAME.boxes.json`` beside ``video``: every frame's road-user boxes at its video time, the road user
    a collision scenario's collision involves marked ``target`` in every frame of that scenario that draws it
    (none in near misses, normal driving and a drive's handovers)."""
    targets = {id(sc): sc.colliding_agent() for sc, *_ in drawn}
    frames = tuple(BoxFrame(index / fps, tuple(Box(*b.relative(size), b.agent.kind, b.agent is targets[id(sc)])
                                               for b in boxes))
                   for sc, _, index, boxes in drawn)
    boxes_path(video).write_text(json.dumps(Boxes(frames).as_json(), separators=(",", ":")), encoding="utf-8")


def _pick_kind(rng: np.random.Generator) -> str:
    group = rng.choice(list(SHARES), p=list(SHARES.values()))
    kinds = {"collision": COLLISIONS, "near_miss": NEAR_MISSES, "normal": NORMAL}[group]
    return str(rng.choice(kinds))


def _drive_kind(rng: np.random.Generator) -> str:
    """A scene of ordinary driving, or one time in ``1 / DRIVE_NEAR_MISS_SHARE`` an alarming near miss."""
    return str(rng.choice(ALARMING if rng.random() < DRIVE_NEAR_MISS_SHARE else ORDINARY))


def _drive_truth(drive: Drive) -> dict:
    """A drive's segments (scenario kinds, ``handover`` between them) and the drive time each starts at."""
    return {"segments": [seg.scenario.kind for seg in drive.segments],
            "segment_starts_s": [round(start, 3) for start in drive.starts]}


def _truth(scenario: Scenario) -> dict:
    return {"kind": scenario.kind, "collision_time": scenario.collision_time(), "critical_time": scenario.critical_time,
            "clearance_m": round(scenario.clearance(step=0.05), 3)}


def _write_clip(job: tuple[Path, str, int, int, str, bool]) -> tuple[str, dict, dict]:
    """Render one clip from its own seed (so clips can be made in any order, by any process): the research
    clip, or a ``training`` clip (``TRAINING_LEAD``, ``HANDOVER_SHARE``)."""
    folder, split, n, seed, question, training = job
    rng = np.random.default_rng(seed)
    kind = _pick_kind(rng)
    lead_in, scenario = _handed_over(kind, rng) if training and rng.random() < HANDOVER_SHARE else ([], build(kind, rng))
    opens_at = sum(seg.end - seg.start for seg in lead_in)  # clip time of the scenario's time 0
    lead = rng.uniform(*(TRAINING_LEAD[scenario.collision] if training else RESEARCH_LEAD))
    end = round((scenario.critical_time - lead) * FPS) / FPS  # whole frames
    segments = [*lead_in, Segment(scenario, 0.0, end)]
    name = f"{split}_{n:05d}_{scenario.kind}.mp4"
    write_video(folder / name, _frames(segments, FPS, SIZE), FPS)
    drawn = _drawn(segments, FPS, SIZE)
    geometry_path(folder / name).write_text(json.dumps(_geometry(drawn, FPS, SIZE)), encoding="utf-8")
    _write_boxes(folder / name, drawn, FPS, SIZE)
    entry = {"video": name, "text": question, "label": int(scenario.collision)}
    if scenario.collision:
        entry["event_time"] = round(opens_at + scenario.critical_time, 3)
    truth = {**_truth(scenario), "clip_end": round(opens_at + end, 3)}
    if opens_at:
        truth["handed_over_at"] = round(opens_at, 3)
    return name, entry, truth


def _handed_over(kind: str, rng: np.random.Generator) -> tuple[list[Segment], Scenario]:
    """A scenario of ``kind`` handed over to from a drive's scene, and what the clip shows before it: at least
    the last 0.5 s of the handover, at most all of it and the last second of the scene before."""
    drive = Drive(rng, look(rng), FPS)
    drive.add(_drive_kind(rng))
    scenario = drive.add(kind)
    before, handover, _ = drive.segments
    opening = round(rng.uniform(0.5, handover.end + 1.0) * FPS) / FPS  # seconds before the handover ends
    if opening <= handover.end:
        return [Segment(handover.scenario, handover.end - opening, handover.end)], scenario
    return [Segment(before.scenario, before.end - (opening - handover.end), before.end), handover], scenario


def write_clips(out: Path, split: str, count: int, rng: np.random.Generator, question: str, pool=None) -> None:
    """``count`` clips of ``split``, rendered in ``pool`` (a multiprocessing pool) when given; training clips
    run on as drives play them and may open in a handover, the others are research clips."""
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder, split, n, int(seed), question, split == "train")
            for n, seed in enumerate(rng.integers(1 << 62, size=count))]
    results = pool.imap(_write_clip, jobs, chunksize=8) if pool else map(_write_clip, jobs)
    made = list(tqdm(results, total=count, desc=f"{split} clips", unit="clip", disable=count < 50))
    lines = [json.dumps(entry) for _, entry, _ in made]
    truth = {name: clip_truth for name, _, clip_truth in made}
    (out / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    truth_path(out, split).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    log.info("%s: %d clips (%d collisions)", split, count, sum(entry["label"] for _, entry, _ in made))


def write_drives(out: Path, count: int, minutes: float, rng: np.random.Generator, question: str) -> None:
    """``out/test/*.mp4`` and ``out/test.jsonl``: continuous drives for ``crashwatch replay-eval``, normal and
    crash drives alternating, so that the normal driving measured for false alerts is known in advance
    (``count // 2 + count % 2`` drives of at least ``minutes``); see ``DRIVE_NEAR_MISS_SHARE``."""
    folder = out / "test"
    folder.mkdir(parents=True, exist_ok=True)
    lines, truth = [], {}
    for n in range(count):
        crash = n % 2 == 1
        drive = Drive(rng, look(rng), FPS)  # one camera, one day: the light and the road do not jump
        while drive.duration < minutes * 60 * (0.85 if crash else 1.0):
            drive.add(_drive_kind(rng))
        entry = {"text": question, "label": int(crash)}
        if crash:
            collision = drive.add(str(rng.choice(COLLISIONS)))
            entry["event_time"] = round(drive.starts[-1] + collision.critical_time, 3)
        name = f"drive_{n:03d}_{'crash' if crash else 'normal'}.mp4"
        write_video(folder / name, _frames(drive.segments, FPS, SIZE), FPS)
        _write_boxes(folder / name, _drawn(drive.segments, FPS, SIZE), FPS, SIZE)
        lines.append(json.dumps({"video": name, **entry}))
        truth[name] = {"duration_s": round(drive.duration, 2), **_drive_truth(drive),
                       "event_time": entry.get("event_time")}
        log.info("drive %s: %.0f s, %d segments%s", name, drive.duration, len(drive.segments),
                 ", ends in a collision" if crash else "")
    (out / "test.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    truth_path(out, "test").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")


def generate(out: Path, clips: int, seed: int, drives: int = 0, drive_minutes: float = 3.0,
             question: str = DEFAULT_QUESTION, workers: int = 1) -> None:
    """``clips`` clips split 70/15/15 into ``out``, and ``drives`` drives into ``out/drives``; clips are
    rendered by ``workers`` processes, the same files whatever their number. Validation and test clips are
    research clips; training clips run on as drives play them (``TRAINING_LEAD``, ``HANDOVER_SHARE``)."""
    rng = np.random.default_rng(seed)
    n_val = n_test = max(1, round(clips * 0.15)) if clips >= 3 else 0
    with multiprocessing.Pool(workers) if workers > 1 else nullcontext() as pool:
        for split, count in (("train", clips - n_val - n_test), ("val", n_val), ("test", n_test)):
            if count:
                write_clips(out, split, count, rng, question, pool)
    if drives:
        write_drives(out / "drives", drives, drive_minutes, rng, question)


def write_demo_drive(folder: Path, seed: int, minutes: float = 1.0) -> dict:
    """The drive `make demo` replays: near misses and normal driving, then a collision; ``drive.mp4``,
    ``drive.json`` (its ground truth) and ``drive.boxes.json`` (its road users' boxes) in ``folder``."""
    rng = np.random.default_rng(seed)
    drive = Drive(rng, look(rng), FPS)
    for kind in ("follow", "cut_in_clear", "pass_by", "crossing_clear", "brake_in_time", "open_road"):
        if drive.duration > minutes * 60 * 0.8:
            break
        drive.add(kind)
    crash = drive.add("rear_end")
    truth = {"event_time": round(drive.starts[-1] + crash.critical_time, 3), **_drive_truth(drive), "seed": seed,
             "duration_s": round(drive.duration, 3)}
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / "drive.mp4", _frames(drive.segments, FPS, SIZE), FPS)
    _write_boxes(folder / "drive.mp4", _drawn(drive.segments, FPS, SIZE), FPS, SIZE)
    (folder / "drive.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth
