"""The Car Crash Dataset (Bao et al., ACM MM 2020; github.com/Cogito2012/CarCrashDataset), in the layout its
README gives:

    SRC/videos/Crash-1500/000001.mp4 ...   1,500 accident clips
    SRC/videos/Normal/000001.mp4 ...       3,000 normal clips (from BDD100K)
    SRC/videos/Crash-1500.txt              one line per accident clip (also read from SRC/Crash-1500.txt)
    SRC/vgg16_features/{train,test}.txt    the split: lines "positive/000001.npz 1", "negative/000001.npz 0"

Every clip is 50 frames at 10 fps. A line of Crash-1500.txt is ``vidname,[b1, ..., b50],startframe,youtubeID,
timing,weather,egoinvolve``, ``b`` 1 on the accident's frames (UString's ``CrashDataset.read_anno_file`` reads it
so; copies without the brackets are read too), e.g. ``000007,[0, ..., 1],000290,0012,Day,Snowy,No``.
``event_time`` is the first accident frame / 10 fps; timing (Day/Night), weather (Normal/Snowy/Rainy), ego
involvement (Yes/No), the YouTube id and start frame go to ``meta``. Names repeat between the two folders, so
clips are named ``crash-000001.mp4`` and ``normal-000001.mp4``. Without the split lists (a download of the
videos alone) the clips are split by fractions.
"""

from __future__ import annotations

from pathlib import Path

from crashwatch.contract.dataset import Problem
from crashwatch.datasets.importers.paths import first_existing, optional_existing, read_lines
from crashwatch.datasets.index import VIDEO_SUFFIXES, LabelledVideo

FPS = 10.0
FRAMES = 50
FOLDERS = {"Crash-1500": ("crash", "positive", 1), "Normal": ("normal", "negative", 0)}
EGO = {"yes": True, "no": False}


def read(source: Path, staging: Path, problems: list[Problem]) -> list[LabelledVideo]:
    annotations = first_existing([source / "videos" / "Crash-1500.txt", source / "Crash-1500.txt"],
                                 "CCD annotation file Crash-1500.txt")
    crashes = _annotations(annotations, problems)
    splits = _split_lists(source, problems)
    videos_root = first_existing([source / "videos" / "Crash-1500", source / "Crash-1500"],
                                 "CCD Crash-1500/ video folder").parent
    found, seen = [], set()
    for folder_name, (prefix, group, label) in FOLDERS.items():
        folder = videos_root / folder_name
        if not folder.is_dir():
            problems.append(Problem(folder, None, "no such folder: its clips are not imported"))
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                problems.append(Problem(path, None, "not a video"))
                continue
            event, meta = None, {}
            if label:
                if path.stem not in crashes:
                    problems.append(Problem(path, None, f"no line for it in {annotations.name}"))
                    continue
                event, meta, _ = crashes[path.stem]
                seen.add(path.stem)
            found.append(LabelledVideo(path, label, event, meta={**meta, "source": f"{folder_name}/{path.name}"},
                                       name=f"{prefix}-{path.name}", split=splits.get((group, path.stem))))
    problems += [Problem(annotations, line, f"no video {videos_root / 'Crash-1500' / vid}.mp4")
                 for vid, (_, _, line) in sorted(crashes.items()) if vid not in seen]
    return found


def _annotations(path: Path, problems: list[Problem]) -> dict[str, tuple[float, dict, int]]:
    """Accident clip name -> (event_time, meta, line number) from Crash-1500.txt; bad lines become Problems."""
    crashes: dict[str, tuple[float, dict, int]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parsed = _annotation(line)
        if isinstance(parsed, str):
            problems.append(Problem(path, number, parsed))
            continue
        vid, event, meta = parsed
        if vid in crashes:
            problems.append(Problem(path, number, f"{vid} again (first on line {crashes[vid][2]})"))
            continue
        crashes[vid] = (event, meta, number)
    return crashes


def _annotation(line: str) -> tuple[str, float, dict] | str:
    """One line of Crash-1500.txt, or what is wrong with it."""
    cells = [cell.strip() for cell in line.replace("[", "").replace("]", "").split(",")]
    if len(cells) != 1 + FRAMES + 5:
        return (f"expected a name, {FRAMES} frame labels and 5 fields (startframe, youtubeID, timing, weather, "
                f"egoinvolve), got {len(cells)} comma-separated cells")
    vid, labels, (start, youtube, timing, weather, ego) = cells[0], cells[1:1 + FRAMES], cells[1 + FRAMES:]
    if not vid:
        return "empty video name"
    if any(label not in ("0", "1") for label in labels):
        return f"frame labels must be 0 or 1, got {', '.join(sorted(set(labels) - {'0', '1'}))}"
    if "1" not in labels:
        return "no accident frame (every frame label is 0)"
    if ego.lower() not in EGO:
        return f"egoinvolve must be Yes or No, got {ego!r}"
    meta = {"timing": timing, "weather": weather, "ego_involved": EGO[ego.lower()], "youtube_id": youtube,
            "start_frame": start}
    return vid, labels.index("1") / FPS, meta


def _split_lists(source: Path, problems: list[Problem]) -> dict[tuple[str, str], str]:
    """(positive|negative, clip name) -> train|test, from vgg16_features/{train,test}.txt; empty without them."""
    splits: dict[tuple[str, str], str] = {}
    for split in ("train", "test"):
        listing = optional_existing([source / "vgg16_features" / f"{split}.txt", source / f"{split}.txt"])
        if listing is None:
            continue
        for number, line in enumerate(read_lines(listing), start=1):
            cells = line.split()
            if not cells:
                continue
            group, _, name = cells[0].partition("/")
            if len(cells) != 2 or group not in ("positive", "negative") or not name:
                problems.append(Problem(listing, number, f"expected 'positive/NAME.npz 1' or 'negative/NAME.npz 0', "
                                                         f"got {line.strip()!r:.60}"))
                continue
            splits[(group, Path(name).stem)] = split
    return splits
