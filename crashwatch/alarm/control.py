"""The running alarm's control socket: ``crashwatch alarm mute`` (a button's hook, a phone, a shell) asks it to
mute or unmute, or for its state, as one JSON request and one JSON answer over ZeroMQ (REQ/REP, loopback by
default, so the same on Windows as on Linux)."""

from __future__ import annotations

import json
from typing import Any

import zmq

from crashwatch.alarm.unit import Alarm
from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.transports.zeromq import check_endpoint


class ControlError(CrashwatchError):
    """The control endpoint cannot be bound, or no alarm answers on it; the message names it."""


class ControlSocket:
    """Answers requests for the alarm: ``{"mute": SECONDS}`` (0 unmutes) and ``{"state": true}``."""

    def __init__(self, endpoint: str, alarm: Alarm) -> None:
        self.alarm = alarm
        self.endpoint = check_endpoint(endpoint)
        self._socket = zmq.Context.instance().socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(self.endpoint)
        except zmq.ZMQError as err:
            self._socket.close()
            raise ControlError(f"--control {endpoint}: cannot listen there ({err}); is another alarm running? "
                               "Give another --control") from None

    def poll(self) -> None:
        """Answer the requests waiting, without waiting for one."""
        while self._socket.poll(0):
            try:
                request = json.loads(self._socket.recv())
                if "mute" in request:
                    seconds = float(request["mute"])
                    if not 0 <= seconds <= 86400:
                        raise ValueError(f"mute for 0 to 86400 seconds, got {seconds:g}")
                    self.alarm.mute(seconds)
                answer: dict[str, Any] = {"ok": True, **self.alarm.state()}
            except (ValueError, TypeError, AttributeError) as err:
                answer = {"ok": False, "error": str(err)}
            self._socket.send(json.dumps(answer).encode())

    def close(self) -> None:
        self._socket.close()


def ask(endpoint: str, request: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
    """Send ``request`` to the alarm listening on ``endpoint``; its answer, or ControlError."""
    endpoint = check_endpoint(endpoint, connect=True)
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(endpoint)
        socket.send(json.dumps(request).encode())
        if not socket.poll(int(timeout * 1000)):
            raise ControlError(f"no alarm answered on {endpoint} within {timeout:g} s: is `crashwatch alarm run` "
                               "running there (its --control)?")
        answer: dict[str, Any] = json.loads(socket.recv())
    finally:
        socket.close()
    if not answer.get("ok"):
        raise ControlError(f"the alarm on {endpoint} refused: {answer.get('error')}")
    return answer
