"""An annotated copy of a replayed video: each frame with the risk curve so far, the threshold and the alert
state drawn under it, and while an alert is open its explanation beside it (``explained``), for people to watch
what the monitor saw and said."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from crashwatch.contract.video import VideoFile, bgr
from crashwatch.evaluation.explained import explanation_card
from crashwatch.evaluation.plot import risk_chart
from crashwatch.monitor.evidence.codecs import VideoWriter
from crashwatch.monitor.messages import Alert, Explanation, Risk
from crashwatch.monitor.pipeline.alerts import alert_spans


def annotate_video(source: Path, out: Path, risks: Sequence[Risk], alerts: Sequence[Alert],
                   threshold: float, event_time: float | None = None, width: int = 640,
                   explanations: Sequence[Explanation] = ()) -> Path:
    """Write ``out``: ``source``'s frames scaled to ``width`` with a risk panel below them and, where
    ``explanations`` are given, a column to the right with the newest one explained so far."""
    cards = sorted(((e.t, card) for e in explanations if (card := explanation_card(e, width // 2)) is not None),
                   key=lambda item: item[0])
    times = [r.t for r in risks]
    probabilities = [r.probability for r in risks]
    spans = alert_spans(alerts)
    writer = None
    with VideoFile(source) as video:
        fps = video.fps
        duration = max(times[-1] if times else 0.0, video.header_frames / fps)
        try:
            for index, decoded in video.frames():
                t = index / fps
                frame = bgr(decoded)
                height = int(frame.shape[0] * width / frame.shape[1])
                frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
                shown = [(ti, p) for ti, p in zip(times, probabilities) if ti <= t]
                active = any(start <= t < end for start, end in spans)
                panel = risk_chart([a for a, _ in shown], [p for _, p in shown], threshold,
                                   [(s, min(e, t)) for s, e in spans if s <= t],
                                   event_time if event_time is not None and t >= event_time else None,
                                   f"t = {t:5.1f} s   risk {shown[-1][1]:.2f}" if shown else f"t = {t:5.1f} s",
                                   size=(width, 160), t_end=duration)
                if active:
                    cv2.rectangle(frame, (0, 0), (width - 1, height - 1), (0, 0, 255), 8)
                    cv2.putText(frame, "COLLISION RISK", (16, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 3,
                                cv2.LINE_AA)
                image = np.vstack([frame, panel])
                if cards:
                    image = np.hstack([image, _column(cards, t, image.shape[0], width // 2)])
                if writer is None:  # H.264: the annotated video plays in a browser as well as in a player
                    writer = VideoWriter(out, "h264", fps, image.shape[1], image.shape[0])
                writer.write(image)
        except BaseException:
            if writer is not None:
                writer.abandon()
            raise
    if writer is not None:
        writer.close()
    return out


def _column(cards: list[tuple[float, np.ndarray]], t: float, height: int, width: int) -> np.ndarray:
    """The newest explanation card explained by stream time ``t`` (none before the first), top-aligned."""
    column = np.full((height, width, 3), 20, np.uint8)
    shown = [card for at, card in cards if at <= t]
    if shown:
        card = shown[-1][:height]
        column[:card.shape[0], :card.shape[1]] = card
    else:
        cv2.putText(column, "explanations appear here", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (150, 150, 150), 1,
                    cv2.LINE_AA)
    return column
