"""Graceful stop of the gateway: stop taking calls, finish those in flight (bounded), then shut Serve down.

Ray Serve's own shutdown kills the gRPC proxy with the replicas, so calls in flight fail at once. Instead, on
SIGTERM the gateway process calls :func:`drain_app`: every replica (a :class:`Drainable`) is told to refuse new
calls (``UNAVAILABLE``, "shutting down": a client retries elsewhere or later) and reports how many it is still
answering; the process waits until all report none, or ``timeout`` seconds, and only then shuts Serve down.
"""

from __future__ import annotations

import contextlib
import time

import grpc

DRAINING_DETAILS = "the gateway is shutting down and takes no new calls; send it again (elsewhere, or later)"


class Draining(Exception):
    """A call that arrived after the drain began (crosses Ray's process boundary: a plain, picklable one)."""


class Drainable:
    """Mixin of the gateway deployment: :meth:`in_flight` around each call, :meth:`drain` for the driver."""

    _iz_in_flight = 0
    _iz_draining = False

    @contextlib.asynccontextmanager
    async def in_flight(self, grpc_context=None):
        if self._iz_draining:
            if grpc_context is not None:
                grpc_context.set_code(grpc.StatusCode.UNAVAILABLE)
                grpc_context.set_details(DRAINING_DETAILS)
            raise Draining(DRAINING_DETAILS)
        self._iz_in_flight += 1
        try:
            yield
        finally:
            self._iz_in_flight -= 1

    async def drain(self) -> dict:
        """Refuse new calls from now on; returns this replica's id and the calls it is still answering."""
        import ray

        self._iz_draining = True
        return {"replica": ray.get_runtime_context().get_actor_id(), "in_flight": self._iz_in_flight}


def drain_app(app_name: str, replicas: int, timeout: float, say=print) -> int:
    """Drain every replica of ``app_name`` (see the module docstring); returns the calls still in flight when
    it gave up waiting (0: all finished)."""
    from ray import serve

    deadline = time.monotonic() + max(0.0, timeout)
    try:
        handle = serve.get_app_handle(app_name)
    except Exception as exc:  # noqa: BLE001 - no application (it never started): nothing to drain
        say(f"gateway: nothing to drain ({exc.__class__.__name__})")
        return 0
    seen: dict[str, int] = {}
    started = time.monotonic()
    while True:
        left = deadline - time.monotonic()
        try:  # each call reaches one replica; keep asking until every replica has answered with none left
            answer = handle.drain.remote().result(timeout_s=max(0.5, left))
            seen[answer["replica"]] = int(answer["in_flight"])
        except Exception as exc:  # noqa: BLE001
            say(f"gateway: drain call failed ({exc.__class__.__name__}: {exc})")
        if len(seen) >= replicas and not any(seen.values()):
            say(f"gateway: drained {len(seen)} replica(s) in {time.monotonic() - started:.2f}s")
            return 0
        if time.monotonic() >= deadline:
            left_in_flight = sum(seen.values())
            say(f"gateway: drain timeout after {timeout:.1f}s with {left_in_flight} call(s) in flight")
            return left_in_flight
        time.sleep(0.05)
