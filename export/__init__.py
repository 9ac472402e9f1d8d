"""Export: a trained checkpoint to an ONNX bundle the torch-free monitor runs, with the export-only model
variants (the streaming layout's graphs, the zero-shot baseline) and the parity check against PyTorch."""
