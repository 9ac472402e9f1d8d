"""The monitor: the torch-free runtime, a stream of frames in, risk and alerts out.

It runs with numpy, OpenCV, Pillow, onnxruntime, pyzmq, paho-mqtt, click and PyYAML only and imports nothing of
the project's but ``crashwatch.contract``. Its rooms, each importing only those below it (import-linter checks
this, setup.cfg):

- ``serving``: process wiring: one camera or a cameras file, the fleet, signals, Triton's server.
- ``pipeline``: one camera's loop and its options: capture, prefetch, scoring, alerts, preview.
- ``engines``: running a bundle's graphs: onnxruntime, OpenVINO, batching across cameras, a Triton client.
- ``evidence``: what is kept on disk: the loop recording, event locks, event clips.
- ``transports``: where messages go: ZeroMQ (with CURVE), MQTT with its outbox, and the subscriber.
- ``messages``, ``frame``, ``redact``: what every room shares.

docs/architecture.md walks through them.
"""
