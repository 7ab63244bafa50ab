"""The generated gRPC stubs (sluice_client/_gen, made from proto/ by setup.py at build time)."""
__all__ = ["pb2", "pb2_grpc"]

try:
    from ._gen.sluice.v1 import streaming_pb2 as pb2  # noqa: F401
    from ._gen.sluice.v1 import streaming_pb2_grpc as pb2_grpc  # noqa: F401
except ImportError as e:  # A source checkout that was never built.
    raise ImportError(
        "sluice_client's gRPC stubs are missing (they are generated from proto/ at install "
        "time): run `pip install --no-build-isolation -e client/python` from the repository "
        f"root ({e})") from e
