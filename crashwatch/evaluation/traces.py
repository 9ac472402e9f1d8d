"""A replay's per-stride traces on disk (``traces/NAME.csv``: ``t``, ``probability``) and the clips they belong to
(``replay_eval.json``): written by ``replay-eval``, read back by ``crashwatch metrics`` to compute the metrics
again without replaying. The metrics of a replay are computed from the values as written, so both agree."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from crashwatch.contract.errors import CrashwatchError
from crashwatch.evaluation.curve import Trace

REPORT = "replay_eval.json"
TRACES = "traces"
TIME_DECIMALS, PROBABILITY_DECIMALS = 3, 5


class TracesError(CrashwatchError):
    """A replay folder that cannot be read back; the message names the file (and line)."""


def written(times: Sequence[float], probabilities: Sequence[float]) -> tuple[list[float], list[float]]:
    """The values as a trace file holds them."""
    return ([round(t, TIME_DECIMALS) for t in times], [round(p, PROBABILITY_DECIMALS) for p in probabilities])


def trace_path(folder: Path, file_name: str) -> Path:
    return folder / TRACES / f"{Path(file_name).stem}.csv"


def write_trace(path: Path, times: Sequence[float], probabilities: Sequence[float]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "probability"])
        writer.writerows(zip(*written(times, probabilities)))


def read_replay(folder: Path) -> tuple[dict[str, Any], list[Trace]]:
    """The summary of a ``replay-eval`` folder and every clip's trace."""
    report_path = folder / REPORT
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        summary, clips = report["summary"], report["clips"]
        float(summary["threshold"]), float(summary["warning_window_s"])  # what the metrics need of the replay
        rows = [(c["file_name"], int(c["label"]), c["event_time"], float(c["duration_s"])) for c in clips]
    except FileNotFoundError:
        raise TracesError(f"{report_path}: no such file (give the folder `crashwatch replay-eval --out` "
                          "wrote)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TracesError(f"{report_path}: not a replay-eval report ({type(err).__name__}: {err})") from None
    return summary, [Trace(name, label, event, duration, *_read_trace(trace_path(folder, name)))
                     for name, label, event, duration in rows]


def _read_trace(path: Path) -> tuple[list[float], list[float]]:
    times, probabilities = [], []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != ["t", "probability"]:
                raise TracesError(f"{path}:1: expected the columns t,probability, got {reader.fieldnames}")
            for row in reader:
                try:
                    t, p = float(row["t"]), float(row["probability"])
                except (TypeError, ValueError):
                    raise TracesError(f"{path}:{reader.line_num}: t and probability must be numbers, got "
                                      f"{row['t']!r}, {row['probability']!r}") from None
                if not 0.0 <= p <= 1.0 or (times and t < times[-1]):
                    raise TracesError(f"{path}:{reader.line_num}: a probability in [0, 1] at a time not before "
                                      f"the previous stride's, got t={t}, probability={p}")
                times.append(t)
                probabilities.append(p)
    except FileNotFoundError:
        raise TracesError(f"{path}: no such trace file, though {REPORT} names its clip") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TracesError(f"{path}: cannot read it ({err})") from None
    return times, probabilities
