"""IZ*Net core library: data, detection, embedding, gallery, pipeline, drawing.

Free of servers: the gRPC services in ``services/`` and the jobs in ``training/`` are thin layers over it.
"""

__version__ = "0.1.0"
