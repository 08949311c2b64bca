"""Loopback ports for local processes (``iznet up``, tests, benchmarks)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` right now (another process may still take it before us)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
