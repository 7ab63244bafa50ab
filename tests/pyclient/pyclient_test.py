"""The Python client package (client/python) installed and run against a real sluice-server.

  pyclient_test.py --server build/bin/sluice-server --root <repo root> [--workdir DIR] [unittest args]

1. Installs client/python with `pip install --no-deps --no-build-isolation --no-index --target`
   from a copy of client/python and proto/ laid out as in the repository, so the package's build
   hook generates the gRPC stubs from ../../proto; sluice_client is imported from that target.
2. Starts sluice-server on free loopback ports (port 0; its log names them) with models/.
3. Streams a generated WAV (log-mel and PCM front ends, kws_cnn) and a generated CSV of ticks
   (tick_lstm): one output per frame, seqs 0..T-1 in order, tags echoed, values equal to
   onnxruntime on the model's ONNX file over the whole sequence (offline layout [1, C, T] or
   [1, T, C]), rtol/atol 1e-4. Also: Reset and the OFFLINE layout, an in-stream Error (bad shape)
   that leaves the session intact, concurrent sessions sending faster than they read, client-side
   validation, the command lines, and an unknown model -> ModelNotFoundError (NOT_FOUND).
"""
import argparse
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
import numpy as np
import onnxruntime as ort


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="path of sluice-server")
    parser.add_argument("--root", required=True, help="repository root")
    parser.add_argument("--workdir", help="scratch directory (default: the system temp dir)")
    args, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0]] + rest  # What is left goes to unittest.
    return args


ARGS = parse_args()
ROOT = os.path.abspath(ARGS.root)
TOL = dict(rtol=1e-4, atol=1e-4)
MODELS = ("kws_cnn", "tick_lstm")

WORK = None     # This run's scratch directory.
SITE = None     # pip --target directory holding the installed package.
SERVER = None
CLIENT = None
sc = None       # The installed sluice_client package.
WAV = None      # A generated 16-bit PCM WAV file.
TICKS = None    # A generated tick CSV.
TICK_TIMES = None
INSTALL_SECONDS = None


def install_package():
    """pip-installs a copy of client/python (with proto/ beside it as in the repository) into
    WORK/site and imports it from there."""
    global SITE, sc, INSTALL_SECONDS
    src = os.path.join(WORK, "src")
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "_gen", "__pycache__")
    shutil.copytree(os.path.join(ROOT, "client", "python"), os.path.join(src, "client", "python"),
                    ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "proto"), os.path.join(src, "proto"))
    SITE = os.path.join(WORK, "site")
    env = dict(os.environ)
    env.pop("SLUICE_PROTO_DIR", None)  # The protos must be found relative to the package.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--no-cache-dir", "--target", SITE,
         os.path.join(src, "client", "python")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    INSTALL_SECONDS = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"pip install of client/python failed:\n{done.stdout}")
    sys.path.insert(0, SITE)
    import sluice_client
    import sluice_client.audio
    import sluice_client.market
    sc = sluice_client


class Server:
    """sluice-server on free loopback ports serving models/; stop() drains it (SIGTERM)."""

    def __init__(self, binary):
        self.log_path = os.path.join(WORK, "server.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ)
        env.setdefault("POCL_CACHE_DIR", os.path.join(WORK, "pocl-cache"))
        self.proc = subprocess.Popen(
            [binary, "--model_repository", os.path.join(ROOT, "models"), "--grpc_port", "0",
             "--http_port", "0", "--host", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.grpc_url = f"127.0.0.1:{self._wait_for_port()}"

    def _wait_for_port(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice-server exited with {self.proc.returncode}:\n"
                                   + self.log_text())
            m = re.search(r"gRPC listening on [^\s]*:(\d+)", self.log_text())
            if m:
                return int(m.group(1))
            time.sleep(0.05)
        raise RuntimeError("sluice-server did not report its gRPC port:\n" + self.log_text())

    def wait_models_ready(self, client, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                states = {m.name: m.ready for m in client.list_models(timeout=5)}
                if all(states.get(name) for name in MODELS):
                    return
            except sc.SluiceRpcError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"models {MODELS} not ready:\n" + self.log_text())

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"sluice-server exited with {self.proc.returncode} after SIGTERM; "
                               f"its log ends:\n{self.log_text()[-4000:]}")


def make_wav(path, seconds=1.23, rate=16000):
    """A chirp with noise and a silent gap: 16-bit mono PCM."""
    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * (200 + 1800 * t) * t) + 0.05 * rng.standard_normal(t.size)
    x[int(0.5 * rate):int(0.6 * rate)] = 0.0
    sc.audio.write_wav(path, np.clip(x * 32767, -32768, 32767).astype(np.int16), rate)


def make_ticks(path, count=300):
    """A random-walk tick CSV; a few rows lack quotes or sizes. Returns the time strings."""
    rng = np.random.default_rng(5)
    price, now, times = 101.25, 1700000000.0, []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "price", "size", "bid", "ask", "bid_size", "ask_size", "side"])
        for i in range(count):
            price *= float(np.exp(rng.normal(0, 2e-4)))
            now += float(rng.exponential(0.02))
            spread = 0.01 * (1 + rng.integers(0, 3))
            row = [f"{now:.6f}", f"{price:.4f}", int(rng.integers(1, 900)),
                   f"{price - spread / 2:.4f}", f"{price + spread / 2:.4f}",
                   int(rng.integers(0, 2000)), int(rng.integers(0, 2000)),
                   rng.choice(["buy", "sell", ""])]
            if i % 37 == 5:
                row[3] = row[4] = row[5] = row[6] = ""
            times.append(row[0])
            w.writerow(row)
    return times


_SESSIONS = {}


def offline(model, frames):
    """The model's offline output for frames [T, *frame_shape] (run as one [1, ...] sequence by
    onnxruntime), as [T, *output frame_shape]."""
    info = CLIENT.model_info(model)
    if model not in _SESSIONS:
        _SESSIONS[model] = ort.InferenceSession(
            os.path.join(ROOT, "models", model, "model.onnx"),
            providers=["CPUExecutionProvider"])
    sess = _SESSIONS[model]
    x = frames.astype(np.float32)
    if frames.dtype == np.int16:
        x = x / np.float32(32768)
    x = np.ascontiguousarray(sc.to_offline(x, info.input))
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return sc.from_offline(y, info.outputs[0])


def setUpModule():
    global WORK, SERVER, CLIENT, WAV, TICKS, TICK_TIMES
    base = ARGS.workdir
    if base:
        os.makedirs(base, exist_ok=True)
    WORK = tempfile.mkdtemp(prefix="pyclient-", dir=base)
    install_package()
    SERVER = Server(ARGS.server)
    CLIENT = sc.SluiceClient(SERVER.grpc_url)
    SERVER.wait_models_ready(CLIENT)
    WAV = os.path.join(WORK, "chirp.wav")
    make_wav(WAV)
    TICKS = os.path.join(WORK, "ticks.csv")
    TICK_TIMES = make_ticks(TICKS)
    print(f"\npyclient: pip install took {INSTALL_SECONDS:.1f} s; server at {SERVER.grpc_url}",
          file=sys.stderr)


def tearDownModule():
    if CLIENT is not None:
        CLIENT.close()
    try:
        if SERVER is not None:
            SERVER.stop()
    finally:
        if WORK is not None:
            shutil.rmtree(WORK, ignore_errors=True)


class InstallTest(unittest.TestCase):
    def test_installed_package_and_generated_stubs(self):
        self.assertTrue(sc.__file__.startswith(SITE), sc.__file__)
        v1 = os.path.join(SITE, "sluice_client", "_gen", "sluice", "v1")
        for name in ("streaming_pb2.py", "streaming_pb2_grpc.py", "model_config_pb2.py"):
            self.assertTrue(os.path.exists(os.path.join(v1, name)), name)
        from sluice_client._stubs import pb2
        self.assertEqual(pb2.DESCRIPTOR.name, "sluice/v1/streaming.proto")
        self.assertEqual(pb2.DESCRIPTOR.package, "sluice.v1")
        for script in ("sluice-py-wav", "sluice-py-ticks", "sluice-py-models"):
            self.assertTrue(os.access(os.path.join(SITE, "bin", script), os.X_OK), script)


class FeedTest(unittest.TestCase):
    """The front ends on their own (no server)."""

    def test_logmel_is_chunk_invariant(self):
        whole = sc.audio.wav_frames(WAV, (1, 40), "logmel")
        chunked = np.concatenate([f for f, _ in sc.audio.wav_chunks(WAV, (1, 40), "logmel", 3)])
        self.assertEqual(len(whole), 1 + (int(1.23 * 16000) - 400) // 160)
        np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-6)
        self.assertTrue(np.isfinite(whole).all())

    def test_tick_features_by_hand(self):
        rows = [
            {"time": "10.0", "price": "100", "size": "9", "bid": "99.9", "ask": "100.1",
             "bid_size": "30", "ask_size": "10", "side": "buy"},
            {"time": "10.5", "price": "100.2", "size": "0", "bid": "", "ask": "",
             "bid_size": "", "ask_size": "", "side": "S"},
        ]
        (f0, tag0), (f1, tag1) = sc.market.tick_frames(rows, 8)
        self.assertEqual((tag0, tag1), ("10.0", "10.5"))
        np.testing.assert_allclose(
            f0, [0, np.log(10), 0, 1e4 * 0.2 / 100, 0.5, 1, 0, 0], rtol=1e-6, atol=1e-5)
        ret = 1e4 * np.log(100.2 / 100)
        np.testing.assert_allclose(
            f1, [ret, 0, np.log1p(0.5), 0, 0, -1, 0, ret], rtol=1e-6, atol=1e-5)


class LiveTest(unittest.TestCase):
    def check(self, result, model, frames, tags=None):
        n = len(frames)
        self.assertEqual(result.frames_sent, n)
        self.assertEqual(len(result.seqs), n, "one output per frame")
        np.testing.assert_array_equal(result.seqs, np.arange(n))
        if tags is not None:
            self.assertEqual([t.decode() for t in result.tags], list(tags))
        np.testing.assert_allclose(result.output, offline(model, frames), **TOL)

    def test_models(self):
        names = {m.name: m for m in CLIENT.list_models()}
        for name in MODELS:
            self.assertTrue(names[name].ready, names[name])
        info = CLIENT.model_info("kws_cnn")
        self.assertEqual(info.input.frame_shape, (1, 40))
        self.assertEqual(info.input.offline_shape, (1, 40, -1))
        self.assertEqual(info.outputs[0].frame_shape, (1, 12))
        info = CLIENT.model_info("tick_lstm")
        self.assertEqual((info.input.frame_shape, info.input.time_axis), ((1, 8), 1))

    def test_wav_logmel_through_kws_cnn(self):
        frames = sc.audio.wav_frames(WAV, (1, 40), "logmel")
        with CLIENT.open("kws_cnn", session_tag="wav") as stream:
            self.assertEqual(stream.input.frame_shape, (1, 40))
            self.assertEqual(stream.warmup_frames, 0)
            self.assertEqual(stream.session_tag, "wav")
            result = stream.run(sc.audio.wav_chunks(WAV, stream.input.frame_shape, "logmel", 7))
        times = [f"{i * 0.01:.3f}" for i in range(len(frames))]
        self.check(result, "kws_cnn", frames, times)
        self.assertEqual(result.messages_sent, -(-len(frames) // 7) + 1)  # 7 per chunk, tail
        np.testing.assert_allclose(result.output.sum(axis=-1), 1, atol=1e-5)  # softmax

    def test_wav_pcm_int16_frames(self):
        frames = sc.audio.wav_frames(WAV, (1, 40), "pcm")
        self.assertEqual(frames.dtype, np.int16)
        result = CLIENT.run("kws_cnn", sc.audio.wav_chunks(WAV, (1, 40), "pcm", 16, tags=False))
        self.check(result, "kws_cnn", frames)
        self.assertEqual(result.tags, [None] * len(frames))

    def test_ticks_through_tick_lstm(self):
        frames = sc.market.csv_frames(TICKS, (1, 8))
        self.assertEqual(len(frames), len(TICK_TIMES))
        with CLIENT.open("tick_lstm") as stream:
            outs = list(stream.stream(sc.market.tick_chunks(TICKS, (1, 8), 7)))
            result = stream.collect()
        self.assertEqual(len(result.seqs), 0)  # stream() consumed them all
        self.assertEqual([o.seq for o in outs], list(range(len(frames))))
        self.assertEqual([o.tag.decode() for o in outs], TICK_TIMES)
        got = np.stack([o.value for o in outs])
        np.testing.assert_allclose(got, offline("tick_lstm", frames), **TOL)

    def test_reset_and_offline_layout(self):
        frames = sc.audio.wav_frames(WAV, (1, 40), "logmel")
        spec = CLIENT.model_info("kws_cnn").input
        first, rest = frames[:30], frames[30:]
        with CLIENT.open("kws_cnn") as stream:
            stream.send(first)
            self.assertEqual(stream.reset(), 30)  # next_seq: numbering continues
            half = len(rest) // 2
            for part in (rest[:half], rest[half:]):  # [1, 40, k], the model's own layout
                stream.send(sc.to_offline(part, spec), offline=True)
            stream.close()
            result = stream.collect()
        np.testing.assert_array_equal(result.seqs, np.arange(len(frames)))
        np.testing.assert_allclose(result.output[:30], offline("kws_cnn", first), **TOL)
        # After Reset the state is zero again: the rest is a fresh sequence.
        np.testing.assert_allclose(result.output[30:], offline("kws_cnn", rest), **TOL)

    def test_rejected_frames_leave_the_session_intact(self):
        frames = sc.market.csv_frames(TICKS, (1, 8))[:10]
        with CLIENT.open("tick_lstm", raise_on_error=False) as stream:
            stream.send(frames[:5])
            stream.send_raw(np.zeros(7, "<f4").tobytes(), [1, 7])  # wrong frame shape
            stream.send(frames[5:])
            stream.close()
            result = stream.collect()
        self.assertEqual(len(result.errors), 1)
        error = result.errors[0]
        self.assertEqual(error.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error.seq, 5)  # the seq the rejected frame would have had
        self.assertIn("shape", error.message)
        np.testing.assert_array_equal(result.seqs, np.arange(10))
        np.testing.assert_allclose(result.output, offline("tick_lstm", frames), **TOL)
        # By default iterating raises the error where it arrives among the outputs (the server
        # answers a bad request when it reads it, possibly before earlier frames' outputs).
        seen = []
        with self.assertRaises(sc.FrameRejectedError) as cm:
            with CLIENT.open("tick_lstm") as stream:
                stream.send(frames[:2])
                stream.send_raw(b"\0" * 3, [1, 8])  # too few bytes
                stream.close()
                seen.extend(o.seq for o in stream.outputs())
        self.assertEqual(cm.exception.seq, 2)
        self.assertEqual(cm.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertLessEqual(len(seen), 2)

    def test_concurrent_sessions_send_before_reading(self):
        frames = sc.market.csv_frames(TICKS, (1, 8))
        want = offline("tick_lstm", frames)
        results, failures = {}, []

        def session(i):
            try:
                # One frame per message through a 2-message send queue; nothing is read until
                # everything is sent (the client keeps the outputs that arrive meanwhile).
                with CLIENT.open("tick_lstm", session_tag=f"s{i}", max_queued_requests=2,
                                 max_frames_per_message=1) as stream:
                    stream.send(frames, tags=[f"{i}:{k}" for k in range(len(frames))])
                    stream.close()
                    results[i] = stream.collect()
            except Exception as e:  # noqa: BLE001
                failures.append(e)

        threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(failures, [])
        for i, result in results.items():
            self.assertEqual(result.messages_sent, len(frames))
            np.testing.assert_array_equal(result.seqs, np.arange(len(frames)))
            self.assertEqual(result.tags, [f"{i}:{k}".encode() for k in range(len(frames))])
            np.testing.assert_allclose(result.output, want, **TOL)
        self.assertEqual(len(results), 4)

    def test_client_side_validation(self):
        with CLIENT.open("tick_lstm") as stream:
            with self.assertRaises(ValueError):
                stream.send(np.zeros((3, 7), np.float32))
            with self.assertRaises(TypeError):
                stream.send(np.zeros((3, 1, 8), np.int32))
            with self.assertRaises(ValueError):
                stream.send(np.zeros((3, 1, 8), np.float32), tags=["a"])
            stream.send(np.zeros(8, np.float64))  # one flat frame, converted to float32
            stream.close()
            with self.assertRaises(sc.StreamClosedError):
                stream.send(np.zeros(8, np.float32))
            self.assertEqual(list(stream.collect().seqs), [0])

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(sc.ModelNotFoundError) as cm:
            CLIENT.open("no_such_model")
        self.assertIsInstance(cm.exception, sc.SluiceRpcError)
        self.assertEqual(cm.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("no_such_model", str(cm.exception))
        self.assertIn("NOT_FOUND", str(cm.exception))
        with self.assertRaises(sc.ModelNotFoundError):
            CLIENT.model_info("no_such_model")


class CommandLineTest(unittest.TestCase):
    def run_cli(self, *argv, module=None):
        env = dict(os.environ, PYTHONPATH=SITE)
        if module:
            cmd = [sys.executable, "-m", module]
        else:
            cmd = [os.path.join(SITE, "bin", argv[0])]
            argv = argv[1:]
        return subprocess.run(cmd + ["--server", SERVER.grpc_url] + list(argv), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=120)

    def summary(self, stdout):
        m = re.search(r"^summary: model (\S+) frames sent (\d+) \((\d+) messages\), outputs "
                      r"received (\d+), rejected (\d+), [0-9.]+ s", stdout, re.M)
        self.assertIsNotNone(m, stdout)
        return m.group(1), int(m.group(2)), int(m.group(4)), int(m.group(5))

    def test_wav_module(self):
        frames = len(sc.audio.wav_frames(WAV, (1, 40), "logmel"))
        done = self.run_cli("--model", "kws_cnn", WAV, module="sluice_client.wav")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(self.summary(done.stdout), ("kws_cnn", frames, frames, 0))
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("seq ")]
        self.assertEqual(len(lines), frames)
        self.assertTrue(lines[3].startswith("seq 3 [0.030]: "), lines[3])

    def test_ticks_console_script_quiet(self):
        done = self.run_cli("sluice-py-ticks", "--model", "tick_lstm", "--chunk", "16",
                            "--quiet", TICKS)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(self.summary(done.stdout),
                         ("tick_lstm", len(TICK_TIMES), len(TICK_TIMES), 0))
        self.assertEqual(done.stdout.count("\n"), 1, done.stdout)  # only the summary

    def test_unknown_model_exits_with_not_found(self):
        done = self.run_cli("--model", "no_such_model", TICKS, module="sluice_client.ticks")
        self.assertEqual(done.returncode, 1)
        self.assertIn("NOT_FOUND", done.stderr)
        self.assertIn("no_such_model", done.stderr)
        self.assertNotIn("Traceback", done.stderr)

    def test_models_module(self):
        done = self.run_cli("tick_lstm", module="sluice_client.models")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("frame [1, 8]", done.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
