#!/usr/bin/env python3
"""Server memory per idle session: sluice-server vs the bare gRPC echo, measured the same way.

Starts each server on a free loopback port, reads its RSS (VmRSS), opens N bidi streams that each
send Open and wait for Opened (then stay idle), reads the RSS again, and reports the growth per
stream. For sluice the state bytes per session (from Opened) are subtracted to get the overhead
beyond the state itself.

  idle_sessions_rss.py --bin build/bin --models models --model cnn_tiny --sessions 10000
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_stubs():
    out = tempfile.mkdtemp(prefix="sluice-stubs-")
    proto_dir = os.path.join(ROOT, "proto")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", "sluice/v1/streaming.proto"])
    if code != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    from sluice.v1 import streaming_pb2, streaming_pb2_grpc  # noqa: E402
    return streaming_pb2, streaming_pb2_grpc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def hold_streams(target, model, n, pb2, pb2_grpc, measure):
    # Several channels: one HTTP/2 connection caps concurrent streams (100 by default in gRPC).
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1),
                                                           ("sluice.conn", i)])
                for i in range(max(1, n // 90 + 1))]
    calls = []
    opened = None
    for i in range(n):
        call = pb2_grpc.StreamingStub(channels[i % len(channels)]).Stream()
        await call.write(pb2.StreamRequest(open=pb2.Open(model=model, session_tag=f"idle{i}")))
        calls.append(call)
    for call in calls:
        response = await call.read()
        if not response.HasField("opened"):
            raise RuntimeError(f"expected Opened, got {response}")
        opened = response.opened
    await asyncio.sleep(2.0)  # Let allocations settle.
    result = measure(opened)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()
    return result


def measure_server(cmd, health_url, target, model, n, pb2, pb2_grpc):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if health_url is None:
                    with socket.create_connection(target.split(":"), timeout=1):
                        break
                elif urllib.request.urlopen(health_url, timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(1.0)
        before = rss_bytes(proc.pid)

        def measure(opened):
            after = rss_bytes(proc.pid)
            return {"rss_before": before, "rss_after": after,
                    "per_session": (after - before) / n,
                    "state_bytes": opened.state_bytes if opened is not None else 0}
        return asyncio.run(hold_streams(target, model, n, pb2, pb2_grpc, measure))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--models", default=os.path.join(ROOT, "models"))
    parser.add_argument("--model", default="cnn_tiny")
    parser.add_argument("--sessions", type=int, default=10000)
    args = parser.parse_args()
    pb2, pb2_grpc = load_stubs()

    grpc_port, http_port = free_port(), free_port()
    sluice = measure_server(
        [os.path.join(args.bin, "sluice-server"), f"--model_repository={args.models}",
         "--host=127.0.0.1", f"--grpc_port={grpc_port}", f"--http_port={http_port}",
         "--backend=cpu", f"--max_sessions={args.sessions + 10}", "--log_level=warn"],
        f"http://127.0.0.1:{http_port}/readyz", f"127.0.0.1:{grpc_port}", args.model,
        args.sessions, pb2, pb2_grpc)
    echo_port = free_port()
    echo = measure_server([os.path.join(args.bin, "sluice-echo-server"), f"--port={echo_port}"],
                          None, f"127.0.0.1:{echo_port}", args.model, args.sessions, pb2,
                          pb2_grpc)
    overhead = sluice["per_session"] - sluice["state_bytes"]
    summary = {"sessions": args.sessions, "model": args.model,
               "sluice_bytes_per_session": round(sluice["per_session"]),
               "sluice_state_bytes": sluice["state_bytes"],
               "sluice_overhead_bytes": round(overhead),
               "echo_bytes_per_stream": round(echo["per_session"]),
               "overhead_vs_echo": round(overhead / echo["per_session"], 2)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
