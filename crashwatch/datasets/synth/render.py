"""Drawing a scenario as dashcam frames with OpenCV: a pinhole camera 1.3 m above a straight road."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from crashwatch.datasets.synth.scenario import LANE, Agent, Scenario

CAMERA_HEIGHT = 1.3
NEAREST = 0.6  # metres: anything closer is clipped to this distance (it fills the view)
DRAW_DISTANCE = 120.0  # metres: nothing farther is drawn (a car there is 3 pixels wide)
FOCAL = 0.8  # focal length over the frame's width
HALF_VIEW = 0.5 / FOCAL  # how far across, per metre ahead, the frame's edge lies
SHAKE_PITCH_RATE, SHAKE_YAW_RATE = 0.73, 0.51  # radians per frame: 7.3 and 5.1 rad/s at the generator's 10 fps


class Camera:
    def __init__(self, width: int, height: int, horizon: float) -> None:
        self.width, self.height = width, height
        self.f = FOCAL * width
        self.cx = width / 2
        self.horizon = horizon

    def point(self, x: float, z: float, y: float = 0.0) -> tuple[int, int]:
        z = max(z, NEAREST)
        return int(round(self.cx + self.f * x / z)), int(round(self.horizon + self.f * (CAMERA_HEIGHT - y) / z))


def _shade(colour: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * k, 0, 255)) for c in colour)


def _ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    return np.array([cam.point(x0, z0), cam.point(x1, z0), cam.point(x1, z1), cam.point(x0, z1)], np.int32)


def _draw_road(img: np.ndarray, cam: Camera, sc: Scenario, s_ego: float, light: float) -> None:
    lk = sc.look
    road = _shade((lk["road"],) * 3, light)
    cv2.fillPoly(img, [_ground_quad(cam, -1.5 * LANE, 1.5 * LANE, NEAREST, 300)], road)
    if sc.crossing_at is not None:
        z = sc.crossing_at - s_ego
        if -6 < z < DRAW_DISTANCE:
            cv2.fillPoly(img, [_ground_quad(cam, -60, 60, z - 5, z + 5)], road)
            for k in range(-4, 5):  # zebra crossing
                cv2.fillPoly(img, [_ground_quad(cam, k * 1.1 - 0.3, k * 1.1 + 0.3, z - 7.5, z - 5.5)], _shade((230,) * 3, light))
    white = _shade((235, 235, 235), light)
    for edge in (-1.5 * LANE, 1.5 * LANE):
        cv2.fillPoly(img, [_ground_quad(cam, edge - 0.08, edge + 0.08, NEAREST, 300)], white)
    phase = s_ego % 10.0
    for divider in (-0.5 * LANE, 0.5 * LANE):  # dashes move with the ego car: the cue for its speed
        for k in range(0, 16):
            z0 = k * 10.0 - phase
            if z0 + 3 > NEAREST:
                cv2.fillPoly(img, [_ground_quad(cam, divider - 0.07, divider + 0.07, max(z0, NEAREST), z0 + 3)], white)
    post = s_ego % 25.0
    for k in range(0, 8):  # roadside posts
        z = k * 25.0 - post + 2
        if z > NEAREST + 0.5:
            for side in (-1, 1):
                base = cam.point(side * 7.5, z)
                top = cam.point(side * 7.5, z, 1.2)
                cv2.line(img, base, top, _shade((200, 200, 200), light), max(1, int(cam.f * 0.12 / z)))


def _draw_agent(img: np.ndarray, cam: Camera, agent: Agent, z: float, x: float, light: float, braking: bool) -> None:
    """A road user; a vehicle seen from behind shows its brake lights (brighter, and a third one high in the
    middle) while ``braking``, the cue a driver reads first that the car ahead is slowing hard."""
    near, far = max(z - agent.length / 2, NEAREST), z + agent.length / 2
    left, right = x - agent.width / 2, x + agent.width / 2
    body = _shade(agent.colour, light)
    if agent.kind in ("pedestrian", "cyclist"):
        (u0, v0), (u1, _) = cam.point(left, near), cam.point(right, near)
        top = cam.point(x, near, agent.height)[1]
        head = max(2, (v0 - top) // 7)
        cv2.rectangle(img, (u0, top + 2 * head), (u1, v0), body, -1)
        cv2.circle(img, ((u0 + u1) // 2, top + head), head, _shade((150, 170, 210), light), -1)
        if agent.kind == "cyclist":
            wheel = max(2, (v0 - top) // 5)
            cv2.circle(img, (u0 + wheel, v0 - wheel), wheel, (20, 20, 20), 2)
            cv2.circle(img, (u1 - wheel, v0 - wheel), wheel, (20, 20, 20), 2)
        return
    h = agent.height
    far_face = [cam.point(left, far), cam.point(right, far), cam.point(right, far, h), cam.point(left, far, h)]
    near_face = [cam.point(left, near), cam.point(right, near), cam.point(right, near, h), cam.point(left, near, h)]
    cv2.fillPoly(img, [np.array(far_face, np.int32)], _shade(body, 0.55))
    side = (0, 3) if x > 0 else (1, 2)  # the side facing the road centre
    cv2.fillPoly(img, [np.array([near_face[side[0]], far_face[side[0]], far_face[side[1]], near_face[side[1]]], np.int32)],
                 _shade(body, 0.75))
    roof = [near_face[3], near_face[2], far_face[2], far_face[3]]
    cv2.fillPoly(img, [np.array(roof, np.int32)], _shade(body, 1.1))
    cv2.fillPoly(img, [np.array(near_face, np.int32)], body)
    (u0, v0), (u1, v1) = near_face[0], near_face[2]
    width, height = u1 - u0, v0 - v1
    window = (u0 + width // 8, v1 + height // 10, u1 - width // 8, v1 + int(height * 0.42))
    cv2.rectangle(img, window[:2], window[2:], _shade((60, 50, 40), light), -1)
    lit = braking and not agent.oncoming
    lamp = (60, 220, 255) if agent.oncoming else (120, 120, 255) if lit else (30, 30, 180)
    lamp_w, lamp_h = max(1, width // 7), max(1, height // 9)
    for lu in (u0 + width // 14, u1 - width // 14 - lamp_w):
        cv2.rectangle(img, (lu, v0 - height // 3), (lu + lamp_w, v0 - height // 3 + lamp_h), lamp, -1)
    if lit:
        centre, top = (u0 + u1) // 2, v1 + int(height * 0.42)
        cv2.rectangle(img, (centre - lamp_w, top), (centre + lamp_w, top + max(1, lamp_h // 2)), lamp, -1)
    cv2.rectangle(img, (u0, v0 - max(1, height // 12)), (u1, v0), (15, 15, 15), -1)


@dataclass(frozen=True)
class AgentBox:
    """Where a drawn road user lies in the frame (pixels, clipped to it) and how far and how far across it is
    (metres): the per-frame ground truth a trainer can supervise the vision encoder with."""

    u0: int
    v0: int
    u1: int
    v1: int
    near: float  # distance from the camera to the agent's nearest face
    x: float  # across the road, the ego lane's centre at 0
    agent: Agent = field(compare=False, repr=False)  # the road user drawn there (not in ``as_list``)

    def as_list(self) -> list[float]:
        return [self.u0, self.v0, self.u1, self.v1, round(self.near, 3), round(self.x, 3)]

    def relative(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the box relative to a frame of ``size``, from the first pixel's edge to past the
        last one's (a box to the frame's right edge ends at 1)."""
        width, height = size
        return self.u0 / width, self.v0 / height, (self.u1 + 1) / width, (self.v1 + 1) / height


def frame_camera(sc: Scenario, t: float, size: tuple[int, int], index: int) -> Camera:
    """The camera of frame ``index`` at time ``t``: braking pitch and shake move the horizon and centre."""
    width, height = size
    lk = sc.look
    rng = np.random.default_rng((lk["seed"], index))
    _, v_ego = sc.ego.at(t)
    _, v_before = sc.ego.at(max(t - 0.1, 0.0))
    pitch = max(v_before - v_ego, 0.0) * 10.0 * height / 180  # the nose dips when braking
    shake = lk["shake"] * height / 180
    # The shake runs on the video's frame count, not the scene's time: a drive hands one scene over to the
    # next without the camera jumping.
    dy = shake * np.sin(SHAKE_PITCH_RATE * index + lk["seed"] % 7) + rng.normal(0, shake * 0.3) + pitch
    dx = shake * 0.6 * np.sin(SHAKE_YAW_RATE * index + lk["seed"] % 5)
    cam = Camera(width, height, height * 0.45 + dy)
    cam.cx += dx
    return cam


def _visible_agents(sc: Scenario, t: float) -> list[tuple[float, float, Agent]]:
    """(z, x, agent) of the agents drawn at ``t``, farthest first (the painter's order)."""
    placed = sorted(((*sc.relative(a, t), a) for a in sc.agents), key=lambda item: -item[0])
    return [(z, x, a) for z, x, a in placed if _drawn_at_depth(a, z)]


def _drawn_at_depth(agent: Agent, z: float) -> bool:
    return z - agent.length / 2 < DRAW_DISTANCE and z + agent.length / 2 >= NEAREST


def in_view(agent: Agent, z: float, x: float, margin: float = 1.0) -> bool:
    """Whether any of ``agent`` at (``z`` ahead, ``x`` across) could be in the frame, ``margin`` metres to
    spare across for camera shake: what a drive may not make appear or vanish at once."""
    across = abs(x) - agent.width / 2 - margin
    return _drawn_at_depth(agent, z) and across < HALF_VIEW * max(z - agent.length / 2, NEAREST)


def agent_boxes(sc: Scenario, t: float, size: tuple[int, int], index: int) -> list[AgentBox]:
    """The image boxes of the agents ``render_frame`` draws for the same arguments."""
    cam = frame_camera(sc, t, size, index)
    boxes = []
    for z, x, agent in _visible_agents(sc, t):
        near = max(z - agent.length / 2, NEAREST)
        corners = [cam.point(across, along, up) for across in (x - agent.width / 2, x + agent.width / 2)
                   for along in (near, z + agent.length / 2) for up in (0.0, agent.height)]
        us, vs = [c[0] for c in corners], [c[1] for c in corners]
        u0, v0 = max(min(us), 0), max(min(vs), 0)
        u1, v1 = min(max(us), size[0] - 1), min(max(vs), size[1] - 1)
        if u1 > u0 and v1 > v0:
            boxes.append(AgentBox(u0, v0, u1, v1, near, x, agent))
    return boxes


def render_frame(sc: Scenario, t: float, size: tuple[int, int], index: int) -> np.ndarray:
    """The scenario's frame at time ``t`` as a BGR image of ``size`` (width, height)."""
    width, height = size
    lk = sc.look
    rng = np.random.default_rng((lk["seed"], index + (1 << 24)))  # noise and rain; the camera has its own
    s_ego, _ = sc.ego.at(t)
    cam = frame_camera(sc, t, size, index)
    light = lk["light"]
    img = np.empty((height, width, 3), np.uint8)
    horizon = int(np.clip(cam.horizon, 0, height))
    sky = np.linspace(1.0, 0.75, max(horizon, 1))[:, None] * np.asarray(lk["sky"], np.float32)[None, :] * light
    img[:horizon] = np.clip(sky, 0, 255).astype(np.uint8)[:, None, :]
    img[horizon:] = _shade(lk["ground"], light)
    _draw_road(img, cam, sc, s_ego, light)
    for z, x, agent in _visible_agents(sc, t):
        _draw_agent(img, cam, agent, z, x, light, agent.along.braking(t))
    if lk["rain"]:
        for _ in range(int(width * height / 900)):
            u, v = int(rng.integers(width)), int(rng.integers(height))
            cv2.line(img, (u, v), (u - 2, v + 7), (200, 200, 210), 1)
    if lk["noise"] > 0:
        noise = np.empty(img.shape, np.int16)
        cv2.setRNGSeed(int(rng.integers(1 << 30)))
        cv2.randn(noise, 0, lk["noise"])
        img = cv2.add(img, noise, dtype=cv2.CV_8U)
    return img


def write_video(path, frames, fps: float) -> None:
    """Frames (BGR) to an MPEG-4 file."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot write a video there")
    for frame in frames:
        writer.write(frame)
    writer.release()
