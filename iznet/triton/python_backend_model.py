"""Triton python-backend model: serves this version's ``model.onnx`` with onnxruntime on the CPU.

``iznet export`` copies this file next to ``model.onnx`` as ``<model>/<version>/model.py``. It is used when the
Triton server has no ONNX Runtime backend (the CPU-only tritonserver bundled with ``nvidia-pytriton``), with the
config ``<model>/configs/python_cpu.pbtxt`` (``tritonserver --model-config-name=python_cpu``). On the official
Triton image the default ``config.pbtxt`` runs the same ``model.onnx`` on the ONNX Runtime backend instead.

Runs inside Triton's python stub, which needs ``numpy`` and ``onnxruntime`` importable (not IZ*Net).
Dynamic batching hands ``execute`` several requests at once: they run as one onnxruntime batch.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("onnx_intra_op_threads", "1") or 1)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = cfg["input"][0]["name"]
        self.output = cfg["output"][0]["name"]

    def execute(self, requests):
        try:
            arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
            out = self.session.run([self.output], {self.input: np.concatenate(arrays)})[0]
        except Exception as exc:  # an answer per request, never a dead stub
            err = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        responses, start = [], 0
        for a in arrays:
            part = out[start:start + len(a)]
            start += len(a)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, part)]))
        return responses

    def finalize(self):
        self.session = None
