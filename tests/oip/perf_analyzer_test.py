"""Triton's perf_analyzer, unmodified, in sequence mode against sluice's gRPC endpoint.

  perf_analyzer_test.py --server build/bin/sluice-server --root <repo root>

perf_analyzer reads the model's metadata and config (sequence_batching: a stateful model), then
runs sequences of --sequence-length requests with sequence_id / start / end, over unary
ModelInfer calls or one ModelStreamInfer stream (--streaming). Each run is bounded
(count_windows of a fixed request count) and must exit 0 and report a throughput; afterwards
every sequence must have been closed on the server.

perf_analyzer ships inside the tritonclient 2.41.1 manylinux wheel (scripts/setup.sh installs it
into .venv/bin); it links libcudart.so.12, which the nvidia-cuda-runtime-cu12 wheel provides
(never called without a GPU), and libb64.so.0d (Debian libb64-0d).
"""

import importlib.util
import os
import re
import subprocess
import sys
import time
import unittest

import oip_harness

ARGS = oip_harness.parse_args()
SERVER = None

# (model, --shape for the request tensor: T frames per request, batch 1)
SHAPES = {
    "lstm2": "x:1,1,10",  # [T,B,C], one frame per request
    "vollo_valid_cnn": "x:1,16,7",  # [B,C,T], seven frames per request, warm-up 4 frames
}


def perf_analyzer_command():
    """The perf_analyzer binary and the environment it needs, or an AssertionError saying why
    it cannot run here."""
    binary = os.path.join(os.path.dirname(sys.executable), "perf_analyzer")
    if not os.path.exists(binary):
        raise AssertionError(
            f"{binary} is missing: scripts/setup.sh installs it (tritonclient==2.41.1)")
    env = dict(os.environ)
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise AssertionError("the nvidia-cuda-runtime-cu12 wheel (libcudart.so.12, which "
                             "perf_analyzer links) is missing: run scripts/setup.sh")
    lib = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    env["LD_LIBRARY_PATH"] = lib + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    probe = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True)
    if "error while loading shared libraries" in probe.stderr:
        raise AssertionError(f"perf_analyzer cannot start on this machine: {probe.stderr.strip()}")
    return binary, env


def setUpModule():
    global SERVER
    SERVER = oip_harness.Server(ARGS.server, ARGS.root)


def tearDownModule():
    if SERVER is not None:
        SERVER.stop()


class PerfAnalyzerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary, cls.env = perf_analyzer_command()

    def run_perf_analyzer(self, model, concurrency, streaming):
        command = [
            self.binary, "-m", model, "-u", SERVER.grpc_url, "-i", "grpc",
            "--sequence-length", "20", "--concurrency-range", str(concurrency),
            "--shape", SHAPES[model],
            "--measurement-mode", "count_windows", "--measurement-request-count", "100",
            # A 2-core machine shared with the client is noisy; any three windows will do.
            "--stability-percentage", "100", "--max-trials", "10",
        ]
        if streaming:
            command.append("--streaming")
        label = f"{model} concurrency {concurrency}{' streaming' if streaming else ''}"
        started = time.time()
        run = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=300)
        output = run.stdout + run.stderr
        self.assertEqual(run.returncode, 0, f"perf_analyzer {label} failed:\n{output}")
        throughput = re.search(r"Throughput: ([0-9.]+) infer/sec", output)
        self.assertIsNotNone(throughput, f"perf_analyzer {label} printed no throughput:\n{output}")
        self.assertGreater(float(throughput.group(1)), 0.0)
        p50 = re.search(r"p50 latency: (\d+) usec", output)
        p99 = re.search(r"p99 latency: (\d+) usec", output)
        sequences = re.search(r"Sequence count: (\d+)", output)
        print(f"\nperf_analyzer {label}: {throughput.group(1)} infer/sec, "
              f"p50 {p50.group(1) if p50 else '?'} usec, p99 {p99.group(1) if p99 else '?'} usec, "
              f"{sequences.group(1) if sequences else '?'} sequences "
              f"({time.time() - started:.1f} s)", flush=True)
        # perf_analyzer ends every sequence it started (sequence_end) before it exits.
        deadline = time.time() + 10
        while SERVER.sessions_active(model) and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(SERVER.sessions_active(model), 0, f"sessions left open after {label}")

    def test_unary_concurrency_1(self):
        self.run_perf_analyzer("lstm2", 1, streaming=False)

    def test_unary_concurrency_16(self):
        self.run_perf_analyzer("lstm2", 16, streaming=False)

    def test_streaming_concurrency_1(self):
        self.run_perf_analyzer("lstm2", 1, streaming=True)

    def test_streaming_concurrency_16(self):
        self.run_perf_analyzer("lstm2", 16, streaming=True)

    def test_streaming_chunks_of_7_with_warmup(self):
        self.run_perf_analyzer("vollo_valid_cnn", 4, streaming=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
