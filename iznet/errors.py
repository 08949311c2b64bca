"""Errors a user can cause and fix. The CLI prints them as one line; services map them to gRPC codes."""


class IZNetError(Exception):
    """Base class: a clear message for the person who made the call, never a traceback."""

    #: gRPC status code name a service answers with (see services/).
    grpc_code = "INTERNAL"


class UserInputError(IZNetError):
    """Bad input: a corrupt or oversized image, a malformed file, a bad option."""

    grpc_code = "INVALID_ARGUMENT"


class ImageError(UserInputError):
    """An image that cannot be used: unreadable, corrupt, empty, or too large."""


class NotFoundError(IZNetError):
    """A file, dataset, model, gallery or person that does not exist."""

    grpc_code = "NOT_FOUND"


class PreconditionError(IZNetError):
    """The request is well formed but the state forbids it (e.g. a gallery built by another model)."""

    grpc_code = "FAILED_PRECONDITION"


class UnavailableError(IZNetError):
    """A backend the call needs is down or not ready (e.g. a Triton server that is unreachable or has not
    loaded the model); retrying later, or elsewhere, may succeed. The message says which and why."""

    grpc_code = "UNAVAILABLE"


class ResourceExhaustedError(IZNetError):
    """The server is at its limit for this kind of work (e.g. decoded pixels in flight); try again shortly."""

    grpc_code = "RESOURCE_EXHAUSTED"
