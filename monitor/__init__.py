"""crashwatch runtime: the torch-free half of the project.

Everything here runs with numpy, OpenCV, onnxruntime, pyzmq, click and PyYAML only. The training/serving
contract (frame sampling, preprocessing, prompt layout) lives here too, so that the trainer imports the very
code the monitor serves with.
"""
