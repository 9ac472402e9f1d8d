"""The scenario catalogue: collisions and hard negatives that look like them.

Each builder draws a scenario and the catalogue keeps it only if the exact geometry agrees with what it was
built to be: a collision must happen (between 4 and 9 s in), a negative must never touch the ego car. Hard
negatives keep what a model could take as danger: a lead car braking hard (the ego brakes too and stops in
time), a cut-in that clears, a pedestrian or car crossing just ahead or stopping at the kerb, an oncoming
truck or a car overtaking close by.
"""

from __future__ import annotations

import numpy as np

from crashwatch.datasets.synth.scenario import EGO_FRONT, LANE, Lateral, Motion, Scenario, look, vehicle, walker

COLLISIONS = ("rear_end", "cut_in", "crossing", "oncoming_drift")
NEAR_MISSES = ("brake_in_time", "cut_in_clear", "crossing_clear", "kerb_stop", "pass_by")
NORMAL = ("follow", "open_road")
KINDS = COLLISIONS + NEAR_MISSES + NORMAL
HORIZON = 12.0  # seconds simulated to decide whether a scenario ever collides


def _side(rng: np.random.Generator) -> float:
    return -1.0 if rng.random() < 0.5 else 1.0


def _rear_end(rng, ego_v, ego_stops: bool):
    gap = rng.uniform(10, 26)
    lead = vehicle(rng, Motion(gap + EGO_FRONT + 2.2, ego_v + rng.uniform(-1, 1), ((rng.uniform(1.5, 4.5), -rng.uniform(6, 9)),)),
                   Lateral(rng.uniform(-0.3, 0.3)))
    ego = Motion(0.0, ego_v)
    if ego_stops:
        react = lead.along.changes[0][0] + rng.uniform(0.2, 0.6)
        ego = Motion(0.0, ego_v, ((react, -9.5),))
    return ego, [lead]


def _cut_in(rng, ego_v, clears: bool):
    """A car in the next lane moves into the ego lane; slower than the ego it is hit from behind, faster it
    pulls away (the near miss)."""
    side = _side(rng)
    start, duration = rng.uniform(2.5, 5.0), rng.uniform(1.2, 2.0)
    if clears:  # overtakes from alongside and cuts in ahead, the gap opening
        dv, ahead = rng.uniform(3, 8), rng.uniform(-8, -1)
    else:
        dv = -rng.uniform(3, 7)
        ahead = rng.uniform(1, 6) - dv * (start + duration)  # still ahead, close, when the lane change ends
    car = vehicle(rng, Motion(ahead + EGO_FRONT + 2.2, max(ego_v + dv, 1.0)),
                  Lateral(side * LANE, rng.uniform(-0.3, 0.3), start, duration))
    return Motion(0.0, ego_v), [car]


def _crossing(rng, ego_v, offset: float):
    """A road user crossing the ego lane at an intersection; ``offset`` (m) is where it is, across the road,
    when the ego car reaches the crossing point: 0 is a hit, beyond the footprints a near miss."""
    t_meet = rng.uniform(4.5, 8.0)
    kind = rng.choice(["pedestrian", "cyclist", "car"])
    speed = {"pedestrian": rng.uniform(1.2, 2.2), "cyclist": rng.uniform(3, 5), "car": rng.uniform(5, 9)}[kind]
    side = _side(rng)
    make = {"pedestrian": lambda m, lateral: walker(rng, m, lateral),
            "cyclist": lambda m, lateral: walker(rng, m, lateral, cyclist=True),
            "car": lambda m, lateral: vehicle(rng, m, lateral, crossing=True)}[kind]
    probe = make(Motion(0, 0), Lateral(0))
    s_cross = ego_v * t_meet + EGO_FRONT - probe.length / 2 - 0.3
    x_meet = side * offset
    agent = make(Motion(s_cross, 0.0), Lateral(x_meet + side * speed * t_meet, vx=-side * speed))
    return Motion(0.0, ego_v), [agent], s_cross


def _kerb_stop(rng, ego_v):
    t_meet = rng.uniform(4.5, 8.0)
    side = _side(rng)
    s = ego_v * t_meet + EGO_FRONT
    person = walker(rng, Motion(s, 0.0), Lateral(side * rng.uniform(7, 10), side * rng.uniform(2.9, 3.6),
                                                 rng.uniform(0.5, 2.0), rng.uniform(3.0, 5.0)))
    return Motion(0.0, ego_v), [person], s


def _oncoming(rng, ego_v, drifts: bool):
    their_v = rng.uniform(8, 18)
    meet = rng.uniform(5.0, 8.5)
    s0 = (ego_v + their_v) * meet + EGO_FRONT
    truck = rng.random() < 0.4
    lateral = Lateral(-LANE, rng.uniform(-0.3, 0.0), meet - rng.uniform(2.0, 3.0), rng.uniform(1.2, 2.0)) if drifts \
        else Lateral(-LANE + rng.uniform(-0.2, 0.4))
    return Motion(0.0, ego_v), [vehicle(rng, Motion(s0, -their_v), lateral, truck=truck, oncoming=True)]


def _pass_by(rng, ego_v):
    if rng.random() < 0.5:
        return _oncoming(rng, ego_v, drifts=False)
    side = _side(rng)  # overtaken by a faster car or truck, close in the next lane
    car = vehicle(rng, Motion(-rng.uniform(8, 15), ego_v + rng.uniform(3, 8)), Lateral(side * rng.uniform(3.1, 3.6)),
                  truck=rng.random() < 0.5)
    return Motion(0.0, ego_v), [car]


def _follow(rng, ego_v):
    lead = vehicle(rng, Motion(rng.uniform(15, 40), ego_v + rng.uniform(-0.5, 0.8)), Lateral(rng.uniform(-0.3, 0.3)))
    others = [vehicle(rng, Motion(rng.uniform(10, 60), ego_v + rng.uniform(-3, 3)), Lateral(_side(rng) * LANE))
              for _ in range(rng.integers(0, 3))]
    return Motion(0.0, ego_v), [lead, *others]


def _open_road(rng, ego_v):
    parked = [vehicle(rng, Motion(rng.uniform(20, 90), 0.0), Lateral(_side(rng) * rng.uniform(5.6, 6.5)))
              for _ in range(rng.integers(0, 3))]
    return Motion(0.0, ego_v), parked


def build(kind: str, rng: np.random.Generator, attempts: int = 2000) -> Scenario:
    """A scenario of ``kind`` whose geometry is checked to be what the kind promises."""
    for _ in range(attempts):
        ego_v = rng.uniform(7, 18)
        crossing_at = None
        if kind in ("rear_end", "brake_in_time"):
            ego, agents = _rear_end(rng, ego_v, ego_stops=kind == "brake_in_time")
        elif kind in ("cut_in", "cut_in_clear"):
            ego, agents = _cut_in(rng, ego_v, clears=kind == "cut_in_clear")
        elif kind == "crossing":
            ego, agents, crossing_at = _crossing(rng, ego_v, rng.uniform(0.0, 0.6))
        elif kind == "crossing_clear":
            ego, agents, crossing_at = _crossing(rng, ego_v, rng.uniform(2.6, 5.0))
        elif kind == "kerb_stop":
            ego, agents, crossing_at = _kerb_stop(rng, ego_v)
        elif kind == "oncoming_drift":
            ego, agents = _oncoming(rng, ego_v, drifts=True)
        elif kind == "pass_by":
            ego, agents = _pass_by(rng, ego_v)
        elif kind == "follow":
            ego, agents = _follow(rng, ego_v)
        elif kind == "open_road":
            ego, agents = _open_road(rng, ego_v)
        else:
            raise ValueError(f"unknown scenario kind {kind!r}; choose from {KINDS}")
        scenario = Scenario(kind, HORIZON, ego, agents, kind in COLLISIONS, 0.0, look(rng), crossing_at)
        hit = scenario.collision_time()
        if kind in COLLISIONS:
            if hit is None or not 4.0 <= hit <= 9.0:
                continue
            scenario.critical_time = hit
        else:
            if hit is not None or (kind in NEAR_MISSES and scenario.clearance(step=0.05) > 4.0):
                continue
            if kind == "cut_in_clear":  # most alarming as it lands in the ego lane
                lane_change = agents[0].across
                scenario.critical_time = lane_change.t0 + lane_change.duration
            elif kind in NEAR_MISSES:
                scenario.critical_time = _closest_approach(scenario)
            else:
                scenario.critical_time = rng.uniform(4.5, 8.0)
            if not 4.0 <= scenario.critical_time <= 9.0:
                continue
        scenario.duration = scenario.critical_time + 1.0
        return scenario
    raise RuntimeError(f"could not build a {kind!r} scenario in {attempts} attempts")


def _closest_approach(scenario: Scenario, step: float = 0.05) -> float:
    """When the nearest agent is nearest to the ego car (the moment a near miss is most alarming)."""
    times = np.arange(0.0, HORIZON, step)
    gaps = [_gap_at(scenario, t) for t in times]
    return float(times[int(np.argmin(gaps))])


def _gap_at(scenario: Scenario, t: float) -> float:
    return min(np.hypot(*scenario.relative(a, t)) for a in scenario.agents)
