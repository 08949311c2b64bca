"""Generated gRPC code for the iznet.v1 contracts (make protos). Do not edit."""
