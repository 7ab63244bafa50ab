#!/usr/bin/env python3
"""Streams a WAV file (as INT16 frames) or a CSV of ticks (as float32 frames) through a model on
a sluice server and prints each output as it arrives.

    python client/python/stream_example.py --model NAME --wav speech.wav
    python client/python/stream_example.py --model NAME --csv ticks.csv --chunk 4

The stubs are generated from proto/ first (see README.md). One stream is one session: Open,
then Frames (chunks of --chunk frames, stacked as [k, frame_shape...]), then Close; the server
answers Opened, one Outputs per completed frame range, and ends the stream with OK.
"""
import argparse
import csv
import os
import queue
import sys
import wave

import grpc
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load_stubs(path):
    sys.path.insert(0, path)
    from sluice.v1 import streaming_pb2, streaming_pb2_grpc  # noqa: E402 (generated)
    return streaming_pb2, streaming_pb2_grpc


def read_wav(path):
    """Mono 16-bit PCM samples (the first channel of a multi-channel file)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            sys.exit(f"{path}: only 16-bit PCM WAV is supported")
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return samples.reshape(-1, w.getnchannels())[:, 0]


def read_csv(path):
    """One tick per row, float columns; a header row is skipped."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            try:
                rows.append([float(v) for v in row])
            except ValueError:
                if rows:
                    raise
    return np.asarray(rows, dtype="<f4")


def to_frames(values, frame_shape):
    """[T, ...] values (or a flat sample stream) -> [T', *frame_shape], dropping a partial tail."""
    size = int(np.prod(frame_shape))
    flat = values.reshape(-1)
    count = flat.size // size
    return flat[: count * size].reshape((count, *frame_shape))


def pack(pb2, frames, dtype):
    """k frames -> a STACKED Tensor: [k, frame_shape...] (Frames.layout defaults to STACKED)."""
    # The readers give little-endian int16 / float32 arrays, as the wire wants.
    return pb2.Tensor(dtype=dtype, shape=list(frames.shape),
                      data=np.ascontiguousarray(frames).tobytes())


def unpack(tensor, count):
    """An Outputs tensor ([count, frame_shape...]) -> [count, frame_size] float32."""
    if tensor.dtype == 2:  # INT16 reads as value / 32768
        return np.frombuffer(tensor.data, dtype="<i2").reshape(count, -1) / np.float32(32768)
    return np.frombuffer(tensor.data, dtype="<f4").reshape(count, -1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:8001")
    parser.add_argument("--model", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="16-bit PCM WAV, streamed as INT16 frames")
    source.add_argument("--csv", help="one tick per row, streamed as float32 frames")
    parser.add_argument("--chunk", type=int, default=1, help="frames per Frames request")
    parser.add_argument("--stubs", default=os.path.join(HERE, "gen"),
                        help="directory of the generated sluice/v1/streaming_pb2*.py")
    args = parser.parse_args()
    pb2, pb2_grpc = load_stubs(args.stubs)

    opened_q = queue.Queue()  # Hands Opened from the response loop to the request generator.

    def requests():
        yield pb2.StreamRequest(open=pb2.Open(model=args.model, session_tag="stream_example"))
        opened = opened_q.get()
        if opened is None:
            return
        spec = opened.input
        if args.wav:
            frames, dtype = to_frames(read_wav(args.wav), spec.frame_shape), pb2.INT16
        else:
            frames, dtype = to_frames(read_csv(args.csv), spec.frame_shape), pb2.FLOAT32
        print(f"sending {len(frames)} frames of shape {list(spec.frame_shape)} "
              f"in chunks of {args.chunk}", file=sys.stderr)
        for start in range(0, len(frames), args.chunk):
            chunk = frames[start:start + args.chunk]
            tags = [f"f{start + i}".encode() for i in range(len(chunk))]
            yield pb2.StreamRequest(frames=pb2.Frames(tensor=pack(pb2, chunk, dtype), tags=tags))
        yield pb2.StreamRequest(close=pb2.Close())

    with grpc.insecure_channel(args.server) as channel:
        stub = pb2_grpc.StreamingStub(channel)
        try:
            for response in stub.Stream(requests()):
                kind = response.WhichOneof("kind")
                if kind == "opened":
                    o = response.opened
                    print(f"opened session {o.session_id} on {o.model} ({o.backend}), "
                          f"warm-up {o.warmup_frames} frames", file=sys.stderr)
                    opened_q.put(o)
                elif kind == "outputs":
                    out = response.outputs
                    values = unpack(out.tensors[0], out.count)
                    for i in range(out.count):
                        tag = out.tags[i].decode() if out.tags else ""
                        shown = " ".join(f"{v:.4f}" for v in values[i][:8])
                        print(f"seq {out.first_seq + i} {tag}: {shown}"
                              f"{' ...' if values.shape[1] > 8 else ''}")
                elif kind == "error":
                    e = response.error
                    print(f"error at seq {e.seq}: code {e.status.code} {e.status.message}",
                          file=sys.stderr)
        except grpc.RpcError as e:
            opened_q.put(None)
            sys.exit(f"stream failed: {e.code().name}: {e.details()}")


if __name__ == "__main__":
    main()
