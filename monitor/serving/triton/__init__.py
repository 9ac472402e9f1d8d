"""A bundle on NVIDIA Triton, the serving side: the model repository (``repository``) and Triton's own server
from the nvidia-pytriton wheel (``server``). The monitor's gRPC client, and the names the two sides share, are an
engine: ``crashwatch.monitor.engines.triton``."""
