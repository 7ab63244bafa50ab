"""Open Inference Protocol conformance with the real Triton Python client (tritonclient[grpc])
and curl, against a sluice-server on free ports.

  tritonclient_test.py --server build/bin/sluice-server --root <repo root> [unittest args]

Every streamed or per-request output is compared with the offline reference output of
tests/models/<model>/expected.npy (onnxruntime), allclose rtol/atol 1e-4.
"""

import json
import queue
import subprocess
import threading
import time
import unittest

import grpc
import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import oip_harness

ARGS = oip_harness.parse_args()
SERVER = None
REFS = None
TOL = dict(rtol=1e-4, atol=1e-4)


def setUpModule():
    global SERVER, REFS
    REFS = oip_harness.references(ARGS.root)
    SERVER = oip_harness.Server(ARGS.server, ARGS.root)


def tearDownModule():
    if SERVER is not None:
        SERVER.stop()


def make_input(ref, data):
    tensor = tc.InferInput("x", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


def expected_count(ref, start, stop):
    """Outputs that frames [start, stop) of a sequence complete (the warm-up frames none)."""
    return max(0, stop - max(start, ref.warmup))


class OipTest(unittest.TestCase):
    def setUp(self):
        self.client = tc.InferenceServerClient(SERVER.grpc_url)

    def tearDown(self):
        self.client.close()

    def assert_code(self, error, code, fragment):
        status = error.status() or ""
        self.assertIn(code, status, f"{status}: {error.message()}")
        self.assertIn(fragment, error.message())

    def check_output(self, ref, row, y):
        want = ref.row_expected(row)
        self.assertEqual(y.shape, want.shape, f"{ref.name} row {row}")
        np.testing.assert_allclose(y, want, err_msg=f"{ref.name} row {row}", **TOL)

    # ---- metadata and readiness ----

    def test_server_and_model_metadata(self):
        self.assertTrue(self.client.is_server_live())
        self.assertTrue(self.client.is_server_ready())
        meta = self.client.get_server_metadata()
        self.assertEqual(meta.name, "sluice")
        self.assertIn("sequence", list(meta.extensions))
        for name, ref in REFS.items():
            self.assertTrue(self.client.is_model_ready(name))
            md = self.client.get_model_metadata(name)
            self.assertEqual(md.name, name)
            self.assertEqual(list(md.versions), ["1"])
            self.assertEqual([i.name for i in md.inputs], ["x"])
            self.assertEqual(md.inputs[0].datatype, "FP32")
            shape = list(md.inputs[0].shape)
            self.assertEqual(shape[ref.time_axis], -1)
            self.assertEqual(shape[ref.batch_axis], 1)
            self.assertEqual([o.name for o in md.outputs], ["y"])
            config = self.client.get_model_config(name).config
            self.assertEqual(config.name, name)
            self.assertEqual(config.max_batch_size, 0)
            self.assertTrue(config.HasField("sequence_batching"))
            self.assertEqual(list(config.input[0].dims), shape)
        stats = self.client.get_inference_statistics("lstm2")
        self.assertEqual(stats.model_stats[0].name, "lstm2")
        with self.assertRaises(InferenceServerException) as e:
            self.client.get_model_metadata("no_such_model")
        self.assert_code(e.exception, "NOT_FOUND", "no_such_model")
        with self.assertRaises(InferenceServerException) as e:
            self.client.is_model_ready("lstm2", model_version="2")
        self.assert_code(e.exception, "NOT_FOUND", "version")

    # ---- streaming: many sequences on one ModelStreamInfer stream ----

    def test_stream_16_sequences_chunks_of_1_and_7(self):
        # Sequence i: model i % 3, batch row i % 8, chunks of 1 frame (even i) or 7 (odd i);
        # ids are numbers, and strings for every fourth sequence.
        plans = []
        for i in range(16):
            ref = REFS[oip_harness.MODELS[i % 3]]
            chunk = 1 if i % 2 == 0 else 7
            seq_id = f"seq-{i}" if i % 4 == 3 else 1000 + i
            bounds = [(s, min(s + chunk, ref.frames)) for s in range(0, ref.frames, chunk)]
            plans.append(dict(ref=ref, row=i % 8, id=seq_id, bounds=bounds))

        results = queue.Queue()
        self.client.start_stream(callback=lambda result, error: results.put((result, error)))
        sent = 0
        for step in range(max(len(p["bounds"]) for p in plans)):
            for i, plan in enumerate(plans):
                if step >= len(plan["bounds"]):
                    continue
                start, stop = plan["bounds"][step]
                self.client.async_stream_infer(
                    plan["ref"].name, [make_input(plan["ref"], plan["ref"].row_input(plan["row"], start, stop))],
                    request_id=f"{i}:{step}", sequence_id=plan["id"],
                    sequence_start=step == 0, sequence_end=step == len(plan["bounds"]) - 1)
                sent += 1
        got = {}
        order = {i: [] for i in range(16)}
        for _ in range(sent):
            result, error = results.get(timeout=60)
            self.assertIsNone(error, error and error.message())
            i, step = map(int, result.get_response().id.split(":"))
            got[(i, step)] = result.as_numpy("y")
            order[i].append(step)
        self.client.stop_stream()

        for i, plan in enumerate(plans):
            ref = plan["ref"]
            self.assertEqual(order[i], sorted(order[i]), f"sequence {i} answered out of order")
            pieces = []
            for step, (start, stop) in enumerate(plan["bounds"]):
                y = got[(i, step)]
                self.assertEqual(y.shape[ref.time_axis], expected_count(ref, start, stop),
                                 f"sequence {i} request {step}")
                pieces.append(y)
            self.check_output(ref, plan["row"], np.concatenate(pieces, axis=ref.time_axis))

    def test_stream_outrunning_the_server(self):
        # 4 sequences x 120 one-frame requests, all sent before any answer is read, on a model
        # that queues 2 frames per session: the server holds the stream back (it stops reading)
        # and every answer still comes, in order and right. Each sequence restarts every 40
        # frames (sequence_start on a live id), so its outputs repeat the reference.
        ref = REFS["lstm2"]
        model = oip_harness.SMALL_QUEUE_MODEL
        repeats = 3
        results = queue.Queue()
        self.client.start_stream(callback=lambda result, error: results.put((result, error)))
        sent = 0
        for k in range(repeats * ref.frames):
            t = k % ref.frames
            for s in range(4):
                self.client.async_stream_infer(
                    model, [make_input(ref, ref.row_input(s, t, t + 1))], request_id=f"{s}:{k}",
                    sequence_id=600 + s, sequence_start=t == 0,
                    sequence_end=k == repeats * ref.frames - 1)
                sent += 1
        got = {}
        for _ in range(sent):
            result, error = results.get(timeout=60)
            self.assertIsNone(error, error and error.message())
            s, k = map(int, result.get_response().id.split(":"))
            got[(s, k)] = result.as_numpy("y")
        self.client.stop_stream()
        for s in range(4):
            y = np.concatenate([got[(s, k)] for k in range(repeats * ref.frames)], axis=0)
            np.testing.assert_allclose(y, np.concatenate([ref.row_expected(s)] * repeats, axis=0),
                                       **TOL)

    def test_stream_errors_are_in_stream(self):
        results = queue.Queue()
        self.client.start_stream(callback=lambda result, error: results.put((result, error)))
        ref = REFS["lstm2"]
        # A request for a sequence that was never started.
        self.client.async_stream_infer("lstm2", [make_input(ref, ref.row_input(0, 0, 1))],
                                       request_id="orphan", sequence_id=987654)
        _, error = results.get(timeout=30)
        self.assertIsNotNone(error)
        self.assertIn("987654 is not active", error.message())
        # The stream goes on: a good sequence on it still works.
        self.client.async_stream_infer("lstm2", [make_input(ref, ref.row_input(0, 0, 3))],
                                       request_id="ok", sequence_id=987655, sequence_start=True,
                                       sequence_end=True)
        result, error = results.get(timeout=30)
        self.assertIsNone(error, error and error.message())
        np.testing.assert_allclose(result.as_numpy("y"),
                                   np.take(ref.row_expected(0), range(3), axis=0), **TOL)
        self.client.stop_stream()

    # ---- unary ModelInfer ----

    def test_model_infer_per_frame_with_sequence_ids(self):
        # Four sequences per model at once, one thread each, one frame per request.
        failures = []

        def run(ref, row, seq_id):
            try:
                client = tc.InferenceServerClient(SERVER.grpc_url)
                pieces = []
                for t in range(ref.frames):
                    r = client.infer(ref.name, [make_input(ref, ref.row_input(row, t, t + 1))],
                                     sequence_id=seq_id, sequence_start=t == 0,
                                     sequence_end=t == ref.frames - 1)
                    y = r.as_numpy("y")
                    if y.shape[ref.time_axis] != expected_count(ref, t, t + 1):
                        raise AssertionError(f"{ref.name} frame {t}: shape {y.shape}")
                    pieces.append(y)
                client.close()
                y = np.concatenate(pieces, axis=ref.time_axis)
                np.testing.assert_allclose(y, ref.row_expected(row), **TOL)
            except Exception as e:  # Reported by the main thread.
                failures.append(f"{ref.name} row {row}: {e!r}")

        threads = [threading.Thread(target=run, args=(ref, row, 5000 + 10 * k + row))
                   for k, ref in enumerate(REFS.values()) for row in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])

    def test_model_infer_whole_sequence_without_id(self):
        for ref in REFS.values():
            for row in (0, 5):
                r = self.client.infer(ref.name, [make_input(ref, ref.row_input(row))])
                self.check_output(ref, row, r.as_numpy("y"))

    def test_typed_fp32_contents(self):
        # The same request as raw_input_contents would carry, as contents.fp32_contents.
        ref = REFS["espdl_tcn_block"]
        x = ref.row_input(2)
        request = service_pb2.ModelInferRequest(model_name=ref.name, id="typed")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
        request.outputs.add(name="y")
        with grpc.insecure_channel(SERVER.grpc_url) as channel:
            response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
        self.assertEqual(response.id, "typed")
        out = response.outputs[0]
        self.assertEqual((out.name, out.datatype), ("y", "FP32"))
        y = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(out.shape)
        self.check_output(ref, 2, y)

    def test_sequence_restart_and_end(self):
        ref = REFS["lstm2"]
        x = ref.row_input(1, 0, 4)
        # Start, feed 4 frames, then start the same id again: state must be fresh.
        for _ in range(2):
            r = self.client.infer(ref.name, [make_input(ref, x)], sequence_id=77,
                                  sequence_start=True)
            np.testing.assert_allclose(r.as_numpy("y"),
                                       np.take(ref.row_expected(1), range(4), axis=0), **TOL)
        self.client.infer(ref.name, [make_input(ref, ref.row_input(1, 4, 5))], sequence_id=77,
                          sequence_end=True)
        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(ref.name, [make_input(ref, ref.row_input(1, 5, 6))], sequence_id=77)
        self.assert_code(e.exception, "INVALID_ARGUMENT", "77 is not active")

    def test_errors(self):
        ref = REFS["espdl_tcn_block"]
        x = ref.row_input(0, 0, 2)
        with self.assertRaises(InferenceServerException) as e:
            self.client.infer("no_such_model", [make_input(ref, x)])
        self.assert_code(e.exception, "NOT_FOUND", "no_such_model")

        wrong_name = tc.InferInput("input", list(x.shape), "FP32")
        wrong_name.set_data_from_numpy(x)
        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(ref.name, [wrong_name])
        self.assert_code(e.exception, "INVALID_ARGUMENT", "no input 'input'")

        bad = ref.row_input(0, 0, 2)[:, :-1, :].copy()  # One channel short.
        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(ref.name, [make_input(ref, bad)])
        self.assert_code(e.exception, "INVALID_ARGUMENT", "shape")

        as_fp64 = tc.InferInput("x", list(x.shape), "FP64")
        as_fp64.set_data_from_numpy(x.astype(np.float64))
        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(ref.name, [as_fp64])
        self.assert_code(e.exception, "INVALID_ARGUMENT", "datatype FP64")

        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(ref.name, [make_input(ref, x)],
                              outputs=[tc.InferRequestedOutput("z")])
        self.assert_code(e.exception, "INVALID_ARGUMENT", "no output 'z'")

        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(ref.name, [make_input(ref, x)], sequence_id=424242)
        self.assert_code(e.exception, "INVALID_ARGUMENT", "424242 is not active")

    def test_idle_sequence_times_out(self):
        ref = REFS["lstm2"]
        model = oip_harness.IDLE_MODEL
        results = queue.Queue()
        self.client.start_stream(callback=lambda result, error: results.put((result, error)))
        self.client.async_stream_infer(model, [make_input(ref, ref.row_input(0, 0, 2))],
                                       request_id="first", sequence_id=31, sequence_start=True)
        result, error = results.get(timeout=30)
        self.assertIsNone(error, error and error.message())
        # No request for longer than the idle timeout: the server ends the sequence and says so
        # on the stream of its last request.
        _, error = results.get(timeout=10 + oip_harness.IDLE_TIMEOUT_MS / 1000)
        self.assertIsNotNone(error)
        self.assertIn("idle", error.message())
        self.client.stop_stream()
        with self.assertRaises(InferenceServerException) as e:
            self.client.infer(model, [make_input(ref, ref.row_input(0, 2, 3))], sequence_id=31)
        self.assert_code(e.exception, "INVALID_ARGUMENT", "31 is not active")

    # ---- HTTP (curl) ----

    def curl(self, *args):
        out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], check=True,
                             capture_output=True, text=True, timeout=30).stdout
        body, code = out.rsplit("\n", 1)
        return int(code), body

    def test_curl_json_sequence_of_3_frames(self):
        code, body = self.curl(SERVER.http_url + "/v2")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["name"], "sluice")
        ref = REFS["espdl_tcn_block"]
        pieces = []
        for t in range(3):
            x = ref.row_input(3, t, t + 1)
            body = json.dumps({
                "id": f"frame-{t}",
                "parameters": {"sequence_id": 4242, "sequence_start": t == 0,
                               "sequence_end": t == 2},
                "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                            "data": x.ravel().tolist()}],
            })
            code, text = self.curl("-X", "POST", "-H", "Content-Type: application/json",
                                   "--data-binary", body,
                                   SERVER.http_url + f"/v2/models/{ref.name}/infer")
            self.assertEqual(code, 200, text)
            answer = json.loads(text)
            self.assertEqual(answer["id"], f"frame-{t}")
            out = answer["outputs"][0]
            self.assertEqual((out["name"], out["datatype"]), ("y", "FP32"))
            pieces.append(np.array(out["data"], dtype=np.float32).reshape(out["shape"]))
        y = np.concatenate(pieces, axis=ref.time_axis)
        want = np.take(ref.row_expected(3), range(3), axis=ref.time_axis)
        np.testing.assert_allclose(y, want, **TOL)
        # The sequence ended with its third request.
        code, text = self.curl("-X", "POST", "--data-binary", body,
                               SERVER.http_url + f"/v2/models/{ref.name}/infer")
        self.assertEqual(code, 400, text)
        self.assertIn("not active", json.loads(text)["error"])
        code, text = self.curl("-X", "POST", "--data-binary", "{not json",
                               SERVER.http_url + f"/v2/models/{ref.name}/infer")
        self.assertEqual(code, 400, text)
        code, text = self.curl("-X", "POST", "--data-binary", body,
                               SERVER.http_url + "/v2/models/no_such_model/infer")
        self.assertEqual(code, 404, text)

    # ---- last: nothing leaked ----

    def test_zz_every_session_closed(self):
        models = list(oip_harness.MODELS) + list(oip_harness.VARIANTS)
        deadline = time.time() + 10
        while True:
            active = {m: SERVER.sessions_active(m) for m in models}
            if not any(active.values()) or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(active, {m: 0 for m in models})


if __name__ == "__main__":
    unittest.main(verbosity=2)
