"""Thin gRPC servers over the core library (detection, embedding, gallery) and the Ray Serve gateway."""
