"""`sluice-client soak` against a real sluice-server.

  soak_test.py --server BIN --client BIN --root SRC --workdir DIR --scenario NAME
               [--sessions N] [--frames F] [--seed S] [--timeout SECONDS]

Each scenario builds a model repository in WORKDIR (the bundled models/ kws_cnn, tick_lstm and
cnn_tiny, plus tests/models vollo_valid_cnn and mixed_dilated, whose warm-up of 4 and 1 frames
exercises the seq mapping), starts sluice-server on free loopback ports (port 0; its log names
them), waits for /readyz, runs the soak with --json, checks its result and the server's /metrics,
and stops the server with SIGTERM, which must exit 0.

  opencl-fault  --backend opencl on PoCL's CPU device with --inject_device_fault_after_steps, so
                every model's device fails mid-run and its sessions move to the CPU backend;
                --resume_grace_ms 10000; soak --chaos. The soak must pass, and /metrics must show
                sluice_backend_fallbacks_total >= 1 and sluice_sessions_resumed_total >= 1.
  cpu-chaos     --backend cpu, --resume_grace_ms 10000, soak --chaos: must pass with
                sluice_sessions_resumed_total >= 1.
  mismatch      the server's cnn_tiny is another model file of the same shapes
                (tests/models/cnn_tiny) than the local reference's (models/cnn_tiny): the soak
                must exit 1 and report mismatched outputs (and no other kind of failure).
  drain         --backend cpu, --drain_timeout_s 20, soak --expect_drain with more frames than
                it can send: once every session is open and outputs flow, SIGTERM the server.
                The server must exit 0 within the drain timeout (plus a small margin); the soak
                must pass (every drained stream answered a gap-free, verified prefix of its
                frames, ending exactly at the server's refusal seq when it named one; every new
                Open refused), and every session must have been drained.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

BUNDLED = ("kws_cnn", "tick_lstm", "cnn_tiny")
DRAIN_TIMEOUT_S = 20  # The drain scenario's --drain_timeout_s.
# The server's exit after the drain: the gRPC shutdown (up to 1 s) and the model repository's.
DRAIN_EXIT_MARGIN_S = 5
WARMUP_MODELS = ("vollo_valid_cnn", "mixed_dilated")  # From tests/models.


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="path of sluice-server")
    parser.add_argument("--client", required=True, help="path of sluice-client")
    parser.add_argument("--root", required=True, help="repository root")
    parser.add_argument("--workdir", required=True, help="scratch directory (recreated)")
    parser.add_argument("--scenario", required=True, choices=("opencl-fault", "cpu-chaos",
                                                              "mismatch", "drain"))
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=600, help="soak timeout, seconds")
    return parser.parse_args()


def make_repository(root, path, cnn_tiny_from=None):
    """A repository of symlinks: the bundled models (with their config.pbtxt) and the warm-up
    models; cnn_tiny_from replaces cnn_tiny's model.onnx."""
    os.makedirs(path)
    for name in BUNDLED:
        if name == "cnn_tiny" and cnn_tiny_from:
            os.makedirs(os.path.join(path, name))
            os.symlink(cnn_tiny_from, os.path.join(path, name, "model.onnx"))
        else:
            os.symlink(os.path.join(root, "models", name), os.path.join(path, name))
    for name in WARMUP_MODELS:
        os.makedirs(os.path.join(path, name))
        os.symlink(os.path.join(root, "tests", "models", name, "model.onnx"),
                   os.path.join(path, name, "model.onnx"))
    return path


class Server:
    """sluice-server on free loopback ports; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, binary, workdir, flags):
        self.log_path = os.path.join(workdir, "server.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--grpc_port", "0", "--http_port", "0", "--host", "127.0.0.1"] + flags,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.grpc_port = self._wait_for_port(r"gRPC listening on [^\s]*:(\d+)")
        self.http_port = self._wait_for_port(r"HTTP[^\n]*listening on [^\s]*:(\d+)")

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def _wait_for_port(self, pattern):
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice-server exited with {self.proc.returncode}:\n"
                                   + self.log_text())
            m = re.search(pattern, self.log_text())
            if m:
                return int(m.group(1))
            time.sleep(0.05)
        raise RuntimeError(f"no '{pattern}' in the server log:\n" + self.log_text())

    def get(self, path):
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()

    def wait_ready(self, timeout=300):
        """Until /readyz answers 200 (OpenCL kernels compile on first start)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                status, body = self.get("/readyz")
                if status == 200:
                    return body.strip()
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice-server exited with {self.proc.returncode}:\n"
                                   + self.log_text())
            time.sleep(0.2)
        raise RuntimeError("sluice-server not ready:\n" + self.log_text())

    def metric(self, name, label=""):
        """The sum of every sample of `name` in /metrics whose labels contain `label` (0 when
        absent)."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if re.match(re.escape(name) + r"(\{|\s)", line) and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def soak_command(args, server, repository, models, extra_flags):
    command = [args.client, "soak", "--server", f"127.0.0.1:{server.grpc_port}",
               "--model_repository", repository, "--models", ",".join(models),
               "--sessions", str(args.sessions), "--frames", str(args.frames),
               "--seed", str(args.seed), "--timeout", f"{args.timeout}s", "--json"] + extra_flags
    print("+", " ".join(command), flush=True)
    return command


def soak_result(returncode, stdout):
    print(stdout, end="", flush=True)
    lines = stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"the soak printed no result (exit code {returncode})")
    return json.loads(lines[-1])


def run_soak(args, server, repository, models, chaos):
    command = soak_command(args, server, repository, models, ["--chaos"] if chaos else [])
    started = time.monotonic()
    # stderr (progress every 5 s, failure samples) passes straight through.
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=args.timeout + 120)
    seconds = time.monotonic() - started
    return done.returncode, soak_result(done.returncode, done.stdout), seconds


def run_drain(args, server, repository, models, failures):
    """The drain scenario: SIGTERM the server in the middle of the soak (see the module doc)."""
    soak = subprocess.Popen(soak_command(args, server, repository, models, ["--expect_drain"]),
                            stdout=subprocess.PIPE, text=True)
    try:
        # Every session open, and a couple of hundred outputs per session on average, so that
        # the drain meets full queues and outputs in flight on every stream.
        wanted_outputs = 200 * args.sessions
        active = outputs = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and soak.poll() is None:
            active = server.metric("sluice_sessions_active")
            outputs = server.metric("sluice_frames_total", 'direction="out"')
            if active >= args.sessions and outputs >= wanted_outputs:
                break
            time.sleep(0.2)
        print(f"before SIGTERM: {active:g} sessions active, {outputs:g} outputs sent", flush=True)
        check(soak.poll() is None, "the soak is still running at SIGTERM", failures)
        check(active >= args.sessions, f"all {args.sessions} sessions are open at SIGTERM",
              failures)
        sigterm = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        limit = DRAIN_TIMEOUT_S + DRAIN_EXIT_MARGIN_S
        try:
            exit_code = server.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            exit_code = None
        drain_seconds = time.monotonic() - sigterm
        check(exit_code == 0, f"sluice-server exits 0 {drain_seconds:.1f} s after SIGTERM, within "
              f"--drain_timeout_s {DRAIN_TIMEOUT_S} + {DRAIN_EXIT_MARGIN_S} s (got {exit_code})",
              failures)
        stdout, _ = soak.communicate(timeout=60)
        print(f"soak: exit code {soak.returncode} {time.monotonic() - sigterm:.1f} s after "
              "SIGTERM", flush=True)
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.wait()
    result = soak_result(soak.returncode, stdout)
    check(soak.returncode == 0 and result["ok"], "the soak passes", failures)
    for key in ("drain_violations", "outputs_lost", "outputs_mismatched", "outputs_duplicated",
                "outputs_reordered", "outputs_unexpected", "sessions_failed"):
        check(result[key] == 0, f"{key} == 0", failures)
    check(result["errors"] == {}, f"no errors (got {result['errors']})", failures)
    drained = result["sessions_drained"]
    check(drained > 0 and drained + result["sessions_completed"] == args.sessions,
          f"every session that had not completed was drained ({drained} of {args.sessions})",
          failures)
    check(result["sessions_refused"] >= drained,
          f"every drained session's new Open was refused ({result['sessions_refused']}, of which "
          f"{result['opens_cancelled']} cancelled by the server's gRPC shutdown)", failures)
    # Only a stream whose frames the server refused tells the client how many it accepted (the
    # exact form of the rule). That depends on timing: the clients must send more frames while
    # the server still answers those queued before the drain, which needs full queues. Usually
    # thousands of frames are refused; in 2 of 58 runs none were, so it is not asserted.
    check(result["frames_answered"] > 0 and result["outputs_verified"] > 0,
          f"frames answered ({result['frames_answered']}) and outputs verified "
          f"({result['outputs_verified']}); unanswered {result['frames_unanswered']}, of which "
          f"refused by the server {result['frames_refused']}", failures)
    log = server.log_text()
    m = re.search(r"draining (\d+) session", log)
    check(m is not None and int(m.group(1)) >= 1,
          f"the server drained {m.group(1) if m else 'no'} session(s)", failures)
    check("still open after the drain timeout" not in log,
          "no session was still open at the drain timeout", failures)


def check(condition, message, failures):
    print(("ok    " if condition else "FAIL  ") + message, flush=True)
    if not condition:
        failures.append(message)


def check_soak(args, server, repository, models, failures):
    """The scenarios that run the soak to its end against a server that stays up."""
    code, result, seconds = run_soak(args, server, repository, models,
                                     chaos=args.scenario != "mismatch")
    print(f"soak: exit code {code} after {seconds:.1f} s", flush=True)
    if args.scenario == "mismatch":
        check(code == 1, "the soak exits 1", failures)
        check(not result["ok"], "the soak reports a failure", failures)
        check(result["outputs_mismatched"] > 0, "mismatched outputs are reported", failures)
        check(result["outputs_verified"] > 0, "tick_lstm's outputs still verify", failures)
        for key in ("outputs_lost", "outputs_duplicated", "outputs_reordered",
                    "outputs_unexpected", "sessions_failed"):
            check(result[key] == 0, f"{key} == 0", failures)
    else:
        check(code == 0 and result["ok"], "the soak passes", failures)
        check(result["sessions_completed"] == args.sessions, "every session completed",
              failures)
        check(result["outputs_verified"] > 0, "outputs were verified", failures)
        check(result["sessions_resumed"] >= 1, "the soak resumed sessions", failures)
        check(result["sessions_restarted"] >= 1, "the soak restarted sessions", failures)
        resumed = server.metric("sluice_sessions_resumed_total")
        check(resumed >= 1, f"sluice_sessions_resumed_total = {resumed:g} >= 1", failures)
        if args.scenario == "opencl-fault":
            fallbacks = server.metric("sluice_backend_fallbacks_total")
            check(fallbacks >= 1, f"sluice_backend_fallbacks_total = {fallbacks:g} >= 1",
                  failures)
            migrated = server.metric("sluice_sessions_migrated_total")
            print(f"      sluice_sessions_migrated_total = {migrated:g}", flush=True)


def main():
    args = parse_args()
    workdir = os.path.abspath(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    root = os.path.abspath(args.root)
    repository = make_repository(root, os.path.join(workdir, "repo"))
    models = list(BUNDLED + WARMUP_MODELS)
    flags = ["--resume_grace_ms", "10000"]
    served = repository
    if args.scenario == "opencl-fault":
        # A few hundred steps per model instance: well into the run, whatever the batch sizes.
        flags += ["--backend", "opencl", "--opencl_device", "cpu",
                  "--opencl_cache_dir", os.path.join(workdir, "opencl-cache"),
                  "--inject_device_fault_after_steps", "300"]
    else:
        flags += ["--backend", "cpu"]
    if args.scenario == "drain":
        flags += ["--drain_timeout_s", str(DRAIN_TIMEOUT_S)]
    if args.scenario == "mismatch":
        served = make_repository(root, os.path.join(workdir, "served"),
                                 os.path.join(root, "tests", "models", "cnn_tiny", "model.onnx"))
        models = ["cnn_tiny", "tick_lstm"]
    server = Server(args.server, workdir, ["--model_repository", served] + flags)
    failures = []
    try:
        print("readyz:", server.wait_ready(), flush=True)
        if args.scenario == "drain":
            run_drain(args, server, repository, models, failures)
        else:
            check_soak(args, server, repository, models, failures)
    finally:
        exit_code = server.stop()
    check(exit_code == 0, f"sluice-server exits 0 after SIGTERM (got {exit_code})", failures)
    if failures:
        print("server log tail:\n" + "\n".join(server.log_text().splitlines()[-40:]))
        print(f"{len(failures)} check(s) failed: {failures}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
