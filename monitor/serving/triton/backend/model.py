"""crashwatch's model for Triton's Python backend, copied as ``model.py`` into a model's version folder.

Two kinds, told apart by the model's config: with an ``onnx_file`` parameter it runs that ONNX graph with
onnxruntime (``crashwatch serve-triton``, whose server has no onnxruntime backend), the requests Triton's dynamic
batcher hands over together concatenated into one run; otherwise it serves files of its folder, each output the
bytes of the file its parameter names (``NAME_bundle``: the manifest and prompt arrays, so that a client needs no
copy of the bundle). This file runs inside Triton's stub, not as part of crashwatch: numpy and, for graphs,
onnxruntime are all it imports.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# Tensors go in and out through DLPack: Triton's stubs built with pybind11 older than 2.12 (the nvidia-pytriton
# 0.5.7 wheel's) misread numpy 2 arrays, an input's as_numpy() coming out as zeros and an output made from an
# array as empty; DLPack is read right by every stub and numpy. The stub renames a capsule it consumed to
# "used_dlpack", not the "used_dltensor" numpy looks for, so numpy's capsule destructor reports a ValueError per
# output although nothing is wrong (the stub frees the tensor itself): that one report is kept out of the log.
CONSUMED_CAPSULE = "PyCapsule_GetPointer called with incorrect name"


def quiet_consumed_capsules(unraisable):
    if not (isinstance(unraisable.exc_value, ValueError) and CONSUMED_CAPSULE in str(unraisable.exc_value)):
        sys.__unraisablehook__(unraisable)


sys.unraisablehook = quiet_consumed_capsules


def output_tensor(name, array):
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(array))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.outputs = [output["name"] for output in config["output"]]
        self.inputs = [tensor["name"] for tensor in config.get("input", [])]
        if "onnx_file" in parameters:
            import onnxruntime

            self.session = onnxruntime.InferenceSession(os.path.join(folder, parameters["onnx_file"]),
                                                        providers=["CPUExecutionProvider"])
            self.files = None
        else:
            self.session = None
            self.files = {}
            for name in self.outputs:
                self.files[name] = np.fromfile(os.path.join(folder, parameters[name]), np.uint8)

    def execute(self, requests):
        if self.session is None:
            return [pb_utils.InferenceResponse([output_tensor(name, data) for name, data in self.files.items()])
                    for _ in requests]
        feeds = [{name: np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name)) for name in self.inputs}
                 for request in requests]
        sizes = [len(feed[self.inputs[0]]) for feed in feeds]
        batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.inputs}
        results = self.session.run(self.outputs, batch)
        responses, start = [], 0
        for size in sizes:
            responses.append(pb_utils.InferenceResponse(
                [output_tensor(name, result[start:start + size]) for name, result in zip(self.outputs, results)]))
            start += size
        return responses
