"""Exceptions of the sluice client. Every one is a SluiceError."""
import grpc

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(value):
    """A google.rpc.Code number (as in sluice.v1.Status.code) -> grpc.StatusCode."""
    return _CODES.get(int(value), grpc.StatusCode.UNKNOWN)


class SluiceError(Exception):
    """Base class of every error the client raises."""


class SluiceRpcError(SluiceError):
    """The server ended a call with a non-OK status (stream-ending errors, unary calls).

    `code` is the grpc.StatusCode, `details` the server's message.
    """

    def __init__(self, code, details, what=""):
        self.code = code
        self.details = details or ""
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{code.name}: {self.details}")


class ModelNotFoundError(SluiceRpcError):
    """NOT_FOUND: the server has no model of that name."""


class FrameRejectedError(SluiceError):
    """An in-stream Error: the server rejected one Frames request (wrong shape, dtype, byte
    length, tag count...). The session goes on; the rejected frames got no seq. `seq` is the
    seq the first rejected frame would have had."""

    def __init__(self, code, message, seq):
        self.code = code
        self.message = message
        self.seq = seq
        super().__init__(f"frames rejected at seq {seq}: {code.name}: {message}")


class SluiceProtocolError(SluiceError):
    """The server's responses broke the streaming API's rules (e.g. outputs out of order)."""


class StreamClosedError(SluiceError):
    """send()/reset() on a stream that was closed or has ended."""


def from_rpc_error(error, what=""):
    """grpc.RpcError -> SluiceRpcError (ModelNotFoundError for NOT_FOUND)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    cls = ModelNotFoundError if code == grpc.StatusCode.NOT_FOUND else SluiceRpcError
    return cls(code, details, what)
