"""Running a bundle's graphs: the local runtimes (onnxruntime, OpenVINO), batching of calls from many cameras,
and a Triton server's graphs over gRPC, all behind one ``Engine``; ``model.RiskModel`` is a bundle opened on
one of them."""
