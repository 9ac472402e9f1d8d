"""Drives without cuts: catalogue scenarios on one road, each handed over to the next.

Cutting from one scenario to the next shows what no camera shows: road users appearing and vanishing at once,
the ego car's speed and the road's dashes jumping. A model takes that for danger (most false alerts on drives
made that way were windows over a cut). So every scenario is moved along the road to where the drive has got
to, and between two of them a handover of a few seconds is played: the ego car changes speed smoothly to the
next scenario's, moving road users of the ending one pull away and turn off the road (parked cars, people on
foot and oncoming traffic keep to what they were doing and are passed), and those of the next one come in from
the side of the road, from behind or from beyond view, each reaching exactly where, and as fast as, the next
scenario starts it. A handover is kept only if, on the exact geometry, nothing appears or vanishes in view and
nothing comes within ``HANDOVER_CLEARANCE`` of the ego car (nor nearer than it already was, after stopping
close behind a car).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from crashwatch.datasets.synth.catalog import build
from crashwatch.datasets.synth.render import DRAW_DISTANCE, HALF_VIEW, NEAREST, in_view
from crashwatch.datasets.synth.scenario import LANE, Agent, Lateral, Motion, Scenario

HANDOVER_SECONDS = (4, 5, 6, 7, 8, 9, 10)  # tried shortest first: whole seconds, so frames stay on the 0.1 s grid
HANDOVER_CLEARANCE = 1.5  # metres between any road user and the ego car during a handover
PULL_AWAY_SECONDS = 4.0  # a road user turning off speeds up this long, then keeps its speed
ATTEMPTS = 50  # scenarios drawn for a drive's next place before giving up
BEYOND_VIEW = DRAW_DISTANCE + 5.0  # metres ahead: not drawn, whatever the shake


@dataclass(frozen=True)
class Segment:
    scenario: Scenario
    start: float  # scenario time of the first frame
    end: float  # scenario time just after the last frame


def shifted(scenario: Scenario, ds: float) -> Scenario:
    """The same scenario ``ds`` metres further along the road: every relative position, and so the ground
    truth, is unchanged; the road's dashes and posts run on from where the drive has got to."""
    def move(motion: Motion) -> Motion:
        return replace(motion, s0=motion.s0 + ds)

    return replace(scenario, ego=move(scenario.ego), agents=[replace(a, along=move(a.along)) for a in scenario.agents],
                   crossing_at=None if scenario.crossing_at is None else scenario.crossing_at + ds)


def _from_time(motion: Motion, t0: float) -> Motion:
    """``motion`` on a clock whose zero is its time ``t0`` (negative: before its start, at its first speed)."""
    s, v = motion.at(t0)
    current = [accel for start, accel in motion.changes if start <= t0]
    later = tuple((start - t0, accel) for start, accel in motion.changes if start > t0)
    return Motion(s, v, ((0.0, current[-1]),) + later if current else later)


def _lateral_from_time(lateral: Lateral, t0: float) -> Lateral:
    if lateral.x1 is not None:
        return replace(lateral, t0=lateral.t0 - t0)
    return replace(lateral, x0=lateral.x0 + lateral.vx * t0)


def _side(x: float, rng: np.random.Generator) -> float:
    if abs(x) > LANE / 2:
        return math.copysign(1.0, x)
    return -1.0 if rng.random() < 0.5 else 1.0


def _out_of_view_offset(agent: Agent, z: float, x: float) -> float:
    """How far across (m) ``agent`` must be moved from ``x``, outwards, to be out of view ``z`` metres ahead."""
    edge = HALF_VIEW * max(z - agent.length / 2, NEAREST) + agent.width / 2 + 2.0
    return max(edge - abs(x), 0.0)


def _turns(agent: Agent) -> bool:
    """A moving vehicle going the ego's way: it can turn off the road, or onto it from the side. Parked cars,
    oncoming or crossing traffic and people on foot keep to what they do: they are passed, or come into view
    from beyond it."""
    return agent.kind in ("car", "truck") and not agent.oncoming and agent.across.vx == 0.0 and agent.along.v0 > 0


class _Handover:
    """The stretch between the scenario ending (``before``, at its time ``t_end``) and the next (``after``)."""

    def __init__(self, before: Scenario, t_end: float, after: Scenario, seconds: float, rng: np.random.Generator):
        self.seconds = seconds
        s_ego, v_ego = before.ego.at(t_end)
        v_next = after.ego.v0
        accel = (v_next - v_ego) / seconds
        self.ego = Motion(s_ego, v_ego, ((0.0, accel), (seconds, 0.0)))
        self.after = shifted(after, self.ego.at(seconds)[0] - after.ego.s0)
        self.leaving = [self._leave(a, t_end, max(accel, 0.0), rng) for a in before.agents]
        self.joining = [self._join(a, rng) for a in self.after.agents]

    def _leave(self, agent: Agent, t_end: float, ego_accel: float, rng: np.random.Generator) -> Agent:
        if not _turns(agent):
            return replace(agent, along=_from_time(agent.along, t_end), across=_lateral_from_time(agent.across, t_end))
        s, v = agent.along.at(t_end)
        x = agent.across.at(t_end)
        along = Motion(s, v, ((0.0, ego_accel + rng.uniform(1.0, 2.5)), (PULL_AWAY_SECONDS, 0.0)))
        leaving = replace(agent, along=along, across=Lateral(x))
        z_end = along.at(self.seconds)[0] - self.ego.at(self.seconds)[0]
        offset = _out_of_view_offset(agent, z_end, x) if z_end - agent.length / 2 < BEYOND_VIEW else 0.0
        turn = Lateral(x, x + _side(x, rng) * offset, rng.uniform(0.0, 0.5), self.seconds * rng.uniform(0.6, 0.8))
        return replace(leaving, across=turn)

    def _join(self, agent: Agent, rng: np.random.Generator) -> Agent:
        if not _turns(agent):
            return replace(agent, along=_from_time(agent.along, -self.seconds),
                           across=_lateral_from_time(agent.across, -self.seconds))
        joining = replace(agent, along=self._keeping_pace(agent.along))
        x = agent.across.at(0.0)
        z_start = joining.along.at(0.0)[0] - self.ego.at(0.0)[0]
        if not in_view(agent, z_start, x):
            return replace(joining, across=Lateral(x))
        start = x + _side(x, rng) * _out_of_view_offset(agent, z_start, x)
        return replace(joining, across=Lateral(start, x, 0.0, self.seconds - rng.uniform(0.5, 1.0)))

    def _keeping_pace(self, along: Motion) -> Motion:
        """A vehicle of the next scenario during the handover: it changes speed as the ego car does, keeping
        its own speed difference to it, to reach its place and speed there. (At its own speed all along it
        could start behind an ego car that was stopped, and drive through it.)"""
        v_end = along.v0
        v_start = max(self.ego.v0 + v_end - self.after.ego.v0, 0.0)
        s_start = along.s0 - (v_start + v_end) / 2 * self.seconds
        later = tuple((start + self.seconds, accel) for start, accel in along.changes)
        return Motion(s_start, v_start, ((0.0, (v_end - v_start) / self.seconds), (self.seconds, 0.0), *later))

    def scenario(self, look: dict) -> Scenario | None:
        """The handover as a scenario of its own (kind ``handover``), or None where it would show a road user
        appear or vanish, or bring one near the ego car."""
        agents = self.leaving + self.joining
        crossing = self.after.crossing_at
        sc = Scenario("handover", self.seconds, self.ego, agents, False, 0.0, look, crossing)
        if any(in_view(a, *sc.relative(a, self.seconds)) for a in self.leaving):
            return None
        if any(in_view(a, *sc.relative(a, 0.0)) for a in self.joining):
            return None
        if crossing is not None and crossing - self.ego.s0 < BEYOND_VIEW:
            return None
        closest = min(HANDOVER_CLEARANCE, sc.clearance(until=0.0))  # a car stopped just ahead may pull away
        if sc.collision_time(step=0.05) is not None or sc.clearance(step=0.05) < closest:
            return None
        return sc


class Drive:
    """A drive being put together: ``add`` a kind of scenario at a time; ``segments`` to render."""

    def __init__(self, rng: np.random.Generator, look: dict, fps: float) -> None:
        self.rng, self.look, self.fps = rng, look, fps
        self.segments: list[Segment] = []
        self.starts: list[float] = []  # drive time of every segment's first frame
        self.duration = 0.0

    def add(self, kind: str) -> Scenario:
        """Draw a scenario of ``kind`` that the drive can be handed over to, play it, and return it (moved to
        where the drive has got to: its times count from its own first frame, ``starts[-1]``)."""
        for _ in range(ATTEMPTS):
            scenario = replace(build(kind, self.rng), look=self.look)
            if not self.segments:
                self._play(scenario)
                return scenario
            before = self.segments[-1]
            for seconds in HANDOVER_SECONDS:
                hand = _Handover(before.scenario, before.end, scenario, seconds, self.rng)
                handover = hand.scenario(self.look)
                if handover is not None:
                    self._play(handover)
                    self._play(hand.after)
                    return hand.after
        raise RuntimeError(f"no {kind!r} scenario could be handed over to in {ATTEMPTS} attempts")

    def _play(self, scenario: Scenario) -> None:
        end = round(scenario.duration * self.fps) / self.fps  # whole frames: the next segment goes on from there
        self.segments.append(Segment(scenario, 0.0, end))
        self.starts.append(self.duration)
        self.duration += end
