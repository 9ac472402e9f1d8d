"""Scenarios: the ego car and other road users moving on a straight road, with collisions computed exactly.

Coordinates are metres on the ground: ``s`` along the road (the ego starts at 0), ``x`` across it (the ego's
lane centre is 0, lanes are 3.5 m wide, positive to the right). Every motion is a few constant-acceleration
pieces, so positions are exact at any time and so is the ground truth: the first moment an agent's footprint
overlaps the ego car's is the collision time. Hard negatives are built to look dangerous (large, close,
converging) and are rejected unless their geometry provably never touches the ego car.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LANE = 3.5
EGO_WIDTH = 1.8
EGO_FRONT = 1.9  # camera (windscreen) to front bumper
EGO_LENGTH = 4.5
BRAKING = -1.0  # m/s²: gentler slowing is engine braking and lights no brake lights


@dataclass(frozen=True)
class Motion:
    """Longitudinal motion: start position and speed, then (time, acceleration) changes; speed never < 0."""

    s0: float
    v0: float
    changes: tuple[tuple[float, float], ...] = ()  # (from time, acceleration)

    def at(self, t: float) -> tuple[float, float]:
        if t < 0:  # before its start, as it started (a drive's handover looks back; see train.synth.drive)
            return self.s0 + self.v0 * t, self.v0
        s, v, now, accel = self.s0, self.v0, 0.0, 0.0
        for start, new_accel in (*self.changes, (math.inf, 0.0)):
            end = min(start, t)
            if end > now:
                s, v = _advance(s, v, accel, end - now)
                now = end
            if start >= t:
                break
            accel = new_accel
        return s, v

    def braking(self, t: float) -> bool:
        """Whether the brakes are on at ``t``: a deceleration harder than ``BRAKING`` in force (held once
        stopped, as a driver holds a stopped car), what a car's brake lights show."""
        accel = 0.0
        for start, new_accel in self.changes:
            if start >= t:
                break
            accel = new_accel
        return accel < BRAKING


def _advance(s: float, v: float, a: float, dt: float) -> tuple[float, float]:
    if a < 0 and v + a * dt < 0:  # stops within dt and stays stopped
        stop = -v / a
        return s + v * stop + 0.5 * a * stop * stop, 0.0
    return s + v * dt + 0.5 * a * dt * dt, v + a * dt


@dataclass(frozen=True)
class Lateral:
    """Across-road position: ``x0``, moving to ``x1`` between ``t0`` and ``t0 + duration`` (smoothly), or
    drifting at constant speed ``vx`` (pedestrians and crossing traffic)."""

    x0: float
    x1: float | None = None
    t0: float = 0.0
    duration: float = 1.0
    vx: float = 0.0

    def at(self, t: float) -> float:
        if self.x1 is not None:
            u = min(max((t - self.t0) / self.duration, 0.0), 1.0)
            return self.x0 + (self.x1 - self.x0) * (1 - math.cos(math.pi * u)) / 2
        return self.x0 + self.vx * t


@dataclass(frozen=True)
class Agent:
    kind: str  # car, truck, pedestrian, cyclist
    width: float  # across the road
    length: float  # along the road
    height: float
    colour: tuple[int, int, int]
    along: Motion
    across: Lateral
    oncoming: bool = False  # drawn from the front (headlights) instead of the rear

    def at(self, t: float) -> tuple[float, float]:
        """(s of the agent's centre, x of its centre)."""
        return self.along.at(t)[0], self.across.at(t)


@dataclass
class Scenario:
    """One continuous stretch of driving with its ground truth."""

    kind: str
    duration: float
    ego: Motion
    agents: list[Agent]
    collision: bool  # what the scenario was built to produce (checked against the geometry)
    critical_time: float  # the collision, or the moment of closest approach for a near miss
    look: dict = field(default_factory=dict)  # rendering style: light, noise, shake, colours
    crossing_at: float | None = None  # s of an intersection, drawn across the road

    def relative(self, agent: Agent, t: float) -> tuple[float, float]:
        """(z, x): the agent's centre ahead of the camera, and across the road."""
        s, x = agent.at(t)
        return s - self.ego.at(t)[0], x

    def touching(self, agent: Agent, t: float) -> bool:
        """The agent's footprint overlaps the ego car's at time ``t``."""
        z, x = self.relative(agent, t)
        along = (z - agent.length / 2 < EGO_FRONT) and (z + agent.length / 2 > EGO_FRONT - EGO_LENGTH)
        return along and abs(x) < (agent.width + EGO_WIDTH) / 2

    def collision_time(self, until: float | None = None, step: float = 0.01) -> float | None:
        """The first time any agent touches the ego car, to ``step`` seconds, or None."""
        end = self.duration if until is None else until
        for k in range(int(end / step) + 1):
            t = k * step
            if any(self.touching(a, t) for a in self.agents):
                return t
        return None

    def gap(self, agent: Agent, t: float) -> float:
        """The gap (m) between the agent's footprint and the ego car's at time ``t``; 0 where they touch."""
        z, x = self.relative(agent, t)
        gap_along = max(z - agent.length / 2 - EGO_FRONT, (EGO_FRONT - EGO_LENGTH) - (z + agent.length / 2), 0.0)
        gap_across = max(abs(x) - (agent.width + EGO_WIDTH) / 2, 0.0)
        return math.hypot(gap_along, gap_across)

    def clearance(self, until: float | None = None, step: float = 0.02) -> float:
        """The smallest gap (m) between any agent's footprint and the ego car's over the scenario."""
        end = self.duration if until is None else until
        best = math.inf
        for k in range(int(end / step) + 1):
            t = k * step
            for a in self.agents:
                best = min(best, self.gap(a, t))
        return best

    def colliding_agent(self) -> Agent | None:
        """The road user the scenario's collision involves: the one touching the ego car (nearest it) at the
        collision, ``critical_time``; None where the scenario was not built to collide."""
        if not self.collision or not self.agents:
            return None
        return min(self.agents, key=lambda a: self.gap(a, self.critical_time))


# -- road users ---------------------------------------------------------------------------------------------

def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    palette = [(40, 40, 200), (200, 200, 200), (30, 30, 30), (180, 120, 40), (50, 140, 50), (20, 90, 160),
               (230, 230, 240), (90, 90, 110), (0, 170, 230), (120, 30, 120)]
    base = palette[rng.integers(len(palette))]
    return tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in base)


def vehicle(rng: np.random.Generator, along: Motion, across: Lateral, truck: bool = False, oncoming: bool = False,
            crossing: bool = False) -> Agent:
    width, length, height = (2.5, 9.0, 3.4) if truck else (1.8 + rng.uniform(-0.1, 0.2), 4.4, 1.5 + rng.uniform(0, 0.3))
    if crossing:
        width, length = length, width
    return Agent("truck" if truck else "car", width, length, height, _colour(rng), along, across, oncoming)


def walker(rng: np.random.Generator, along: Motion, across: Lateral, cyclist: bool = False) -> Agent:
    return Agent("cyclist" if cyclist else "pedestrian", 1.6 if cyclist else 0.6, 0.6, 1.7 + rng.uniform(-0.1, 0.15),
                 _colour(rng), along, across)


def look(rng: np.random.Generator) -> dict:
    """Light, weather-like noise and camera shake, varied per scenario."""
    return {
        "light": float(rng.uniform(0.45, 1.1)),
        "noise": float(rng.uniform(0.0, 12.0)),
        "rain": bool(rng.random() < 0.25),
        "shake": float(rng.uniform(0.0, 2.5)),
        "sky": tuple(int(v) for v in rng.integers(120, 230, 3)),
        "ground": tuple(int(v) for v in rng.integers(50, 120, 3)),
        "road": int(rng.integers(55, 110)),
        "seed": int(rng.integers(1 << 30)),
    }
