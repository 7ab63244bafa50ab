"""Starts a real sluice-server for the Open Inference Protocol tests.

The server gets a temporary model repository made of reference models from tests/models/ and
binds free ports (it is started with port 0 and its log tells which ports it took).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

# Reference models served: lstm2 ([T,B,C], recurrent), espdl_tcn_block ([B,C,T], causal convs),
# vollo_valid_cnn ([B,C,T], unpadded convs: a warm-up of 4 frames).
MODELS = ("lstm2", "espdl_tcn_block", "vollo_valid_cnn")
# A copy of lstm2 whose sequences end after 400 ms without requests.
IDLE_MODEL = "lstm2_idle"
IDLE_TIMEOUT_MS = 400
# A copy of lstm2 that queues at most 2 frames per session, so that a stream outrunning it makes
# the server stop reading the stream until the sequence catches up.
SMALL_QUEUE_MODEL = "lstm2_small_queue"
# Extra models: name -> (reference model folder, config.pbtxt text).
VARIANTS = {
    IDLE_MODEL: ("lstm2", f"session_idle_timeout_ms: {IDLE_TIMEOUT_MS}\n"),
    SMALL_QUEUE_MODEL: ("lstm2", "session_queue_frames: 2\n"),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="path of build/bin/sluice-server")
    parser.add_argument("--root", required=True, help="repository root (for tests/models)")
    args, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0]] + rest  # What is left goes to unittest.
    return args


class Reference:
    """A reference model's offline input and output, and where its time axis is."""

    def __init__(self, root, name, time_axis, warmup):
        folder = os.path.join(root, "tests", "models", name)
        self.name = name
        self.input = np.load(os.path.join(folder, "input.npy")).astype(np.float32)
        self.expected = np.load(os.path.join(folder, "expected.npy")).astype(np.float32)
        self.time_axis = time_axis
        self.warmup = warmup
        # The served models are [T,B,C] (time axis 0) or [B,C,T]; sluice serves batch 1, and a
        # row of the reference batch is one sequence.
        self.batch_axis = 1 if time_axis == 0 else 0
        self.frames = self.input.shape[time_axis]

    def row_input(self, row, start=0, stop=None):
        """Input of batch row `row`, frames [start, stop), in the offline layout with batch 1."""
        x = np.take(self.input, [row], axis=self.batch_axis)
        stop = self.frames if stop is None else stop
        return np.ascontiguousarray(np.take(x, range(start, stop), axis=self.time_axis))

    def row_expected(self, row):
        """Offline output of batch row `row` (T - warm-up frames), batch 1."""
        return np.take(self.expected, [row], axis=self.batch_axis)


def references(root):
    manifest = os.path.join(root, "tests", "models", "manifest.tsv")
    refs = {}
    with open(manifest) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            if row["name"] in MODELS:
                refs[row["name"]] = Reference(root, row["name"], int(row["time_axis"]),
                                              int(row["warmup"]))
    missing = set(MODELS) - set(refs)
    if missing:
        raise RuntimeError(f"models missing from {manifest}: {sorted(missing)}")
    return refs


class Server:
    """sluice-server on free ports with a temporary repository; stop() ends it."""

    def __init__(self, binary, root):
        self.repo = tempfile.mkdtemp(prefix="sluice-oip-")
        for name in MODELS:
            os.makedirs(os.path.join(self.repo, name))
            shutil.copy(os.path.join(root, "tests", "models", name, "model.onnx"),
                        os.path.join(self.repo, name))
        for name, (source, config) in VARIANTS.items():
            os.makedirs(os.path.join(self.repo, name))
            shutil.copy(os.path.join(root, "tests", "models", source, "model.onnx"),
                        os.path.join(self.repo, name))
            with open(os.path.join(self.repo, name, "config.pbtxt"), "w") as f:
                f.write(config)
        self.log_path = os.path.join(self.repo, "server.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--model_repository", self.repo, "--grpc_port", "0", "--http_port", "0",
             "--host", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.grpc_port, self.http_port = self._wait_for_ports()
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"

    def _wait_for_ports(self):
        deadline = time.time() + 60
        grpc_port = http_port = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice-server exited with {self.proc.returncode}:\n"
                                   + self.log_text())
            text = self.log_text()
            m = re.search(r"gRPC listening on [^\s]*:(\d+)", text)
            if m:
                grpc_port = int(m.group(1))
            m = re.search(r"admin HTTP server listening on [^\s]*:(\d+)", text)
            if m:
                http_port = int(m.group(1))
            if grpc_port and http_port:
                return grpc_port, http_port
            time.sleep(0.05)
        raise RuntimeError("sluice-server did not report its ports:\n" + self.log_text())

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def http_json(self, path):
        with urllib.request.urlopen(self.http_url + path, timeout=10) as r:
            return json.loads(r.read())

    def sessions_active(self, model):
        return self.http_json(f"/v2/models/{model}")["sessions_active"]

    def stop(self):
        """Stops the server with SIGTERM (a drain) and raises unless it exits 0. The log is
        copied to $SLUICE_OIP_SERVER_LOG when that is set."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        log = self.log_text()
        if os.environ.get("SLUICE_OIP_SERVER_LOG"):
            shutil.copy(self.log_path, os.environ["SLUICE_OIP_SERVER_LOG"])
        shutil.rmtree(self.repo, ignore_errors=True)
        if self.proc.returncode != 0:
            raise RuntimeError(f"sluice-server exited with {self.proc.returncode} after SIGTERM; "
                               f"its log ends:\n{log[-4000:]}")
