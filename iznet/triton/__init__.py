"""Serving embedders from NVIDIA Triton Inference Server: the model repository ``iznet export`` writes
(:mod:`iznet.triton.repository`) and the python-backend wrapper for CPU-only Triton builds. The client side is
the ``triton`` backend in :mod:`iznet.embedding.backends`; starting a local tritonserver is
:mod:`services.triton_local`."""
