"""crashwatch export: a trained checkpoint to an ONNX bundle the torch-free monitor runs."""
