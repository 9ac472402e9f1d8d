"""Does an explanation point at the hazard? The pointing game over the alert starts that warned of a collision.

For each alert start in a crash clip's warning window (``scoring``) that was explained, on its most telling
frame: whether the map's peak (the centre of its strongest cell) lies on the box of the road user the
collision involves (``NAME.boxes.json`` beside the clip: the generator writes it, a user with labelled boxes
writes one), whether the region's box holds that road user's centre, and the same question of two baselines
that need no model: the frame's centre and the centre of the largest road user in view. A point counts as on
the road user within half a map cell of its box, the map's own resolution, for the baselines alike. Also how
often the most telling frame is one of the window's last two.
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from crashwatch.contract.sidecars import Box, Boxes
from crashwatch.monitor.explain.regions import peak_point
from crashwatch.monitor.messages import Explanation


def _on(box: Box, point: tuple[float, float] | None, rows: int, cols: int) -> bool:
    if point is None:
        return False
    x, y = point
    dx, dy = 0.5 / cols, 0.5 / rows
    return box.x0 - dx <= x <= box.x1 + dx and box.y0 - dy <= y <= box.y1 + dy


def _centre(box: Box) -> tuple[float, float]:
    return (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2


def explanation_rows(clip: str, explanations: Sequence[Explanation], boxes: Boxes | None,
                     warned: Sequence[float]) -> list[dict[str, Any]]:
    """One row per explanation of the clip's alerts: what it said, and for the starts whose time is in
    ``warned`` (the alert starts that warned of the collision) the pointing game against ``boxes``."""
    rows = []
    for e in explanations:
        row: dict[str, Any] = {"file_name": clip, "alert_id": e.alert_id, "event": e.event, "t": e.t,
                               "state": e.state, "reason": e.reason, "compute_ms": e.compute_ms,
                               "ready_after_ms": e.ready_after_ms, "telling_t": None, "share": None,
                               "telling_in_last_two": None, "peak": None, "box": None, "warned": False,
                               "target": None, "peak_hit": None, "box_hit": None, "centre_hit": None,
                               "largest_hit": None}
        if e.state == "ready" and e.frames is not None and e.telling is not None and e.region is not None:
            frame, region = e.frames[e.telling], e.region
            row.update(telling_t=frame["t"], share=frame["share"], telling_in_last_two=e.telling >= len(e.frames) - 2,
                       peak=region["peak"], box=region["box"])
            row["warned"] = e.event == "start" and any(abs(e.t - t) < 1e-6 for t in warned)
            target = boxes.target_at(frame["t"]) if boxes is not None and row["warned"] else None
            if target is not None:
                seen = boxes.at(frame["t"]) if boxes is not None else None
                rows_, cols = region["rows"], region["cols"]
                largest = max(seen or (target,), key=lambda b: (b.x1 - b.x0) * (b.y1 - b.y0))
                box = region["box"]
                row.update(target=[target.x0, target.y0, target.x1, target.y1],
                           peak_hit=_on(target, peak_point(region), rows_, cols),
                           box_hit=box is not None and Box(*box).contains(*_centre(target)),
                           centre_hit=_on(target, (0.5, 0.5), rows_, cols),
                           largest_hit=_on(target, _centre(largest), rows_, cols))
        rows.append(row)
    return rows


def pointing_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pointing game over the rows ``explanation_rows`` made, beside its baselines, and the explanations'
    timing."""
    warned = [r for r in rows if r["warned"]]
    judged = [r for r in warned if r["target"] is not None]
    ready = [r for r in rows if r["state"] == "ready"]

    def rate(key: str, among: Sequence[dict[str, Any]]) -> float | None:
        return round(sum(bool(r[key]) for r in among) / len(among), 3) if among else None

    def median(key: str) -> float | None:
        values = [r[key] for r in ready if r[key] is not None]
        return round(statistics.median(values), 1) if values else None

    return {"explanations": len(rows), "ready": len(ready),
            "skipped": sum(r["state"] == "skipped" for r in rows), "failed": sum(r["state"] == "failed" for r in rows),
            "warnings_explained": len(warned), "warnings_with_target_box": len(judged),
            "pointing_peak": rate("peak_hit", judged), "pointing_box": rate("box_hit", judged),
            "baseline_frame_centre": rate("centre_hit", judged), "baseline_largest_road_user": rate("largest_hit", judged),
            "telling_in_last_two": rate("telling_in_last_two", warned),
            "median_compute_ms": median("compute_ms"), "median_ready_after_ms": median("ready_after_ms"),
            "max_ready_after_ms": max((r["ready_after_ms"] for r in ready if r["ready_after_ms"] is not None),
                                      default=None)}
