"""crashwatch runtime: the torch-free half of the project.

Everything here runs with numpy, OpenCV, Pillow, onnxruntime, pyzmq, paho-mqtt, click and PyYAML only, and
imports of the project nothing but ``contract``: sources, the scorer, alerts, event clips, the messages and
their ZeroMQ and MQTT transports, and the loop that ties them together (``monitor.monitor``).
"""
