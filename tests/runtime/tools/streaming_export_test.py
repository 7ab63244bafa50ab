#!/usr/bin/env python3
"""sluice-run --export_streaming_onnx against onnxruntime, for every streamable reference model.

Each model of tests/models/manifest.tsv is exported as a one-step ONNX model (batch 1, and
batch = the rows of input.npy), checked with onnx.checker, and run frame by frame in
onnxruntime with its state outputs fed back as the next step's state inputs. After dropping the
first warm-up steps, output i must equal output i of the offline model (expected.npy, computed by
onnxruntime on the whole sequence) to rtol = atol = 1e-4.

  .venv/bin/python tests/runtime/tools/streaming_export_test.py --sluice_run BIN --root REPO
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort

ARGS = None


def streamable_models():
    with open(os.path.join(ARGS.root, "tests/models/manifest.tsv")) as f:
        return [row for row in csv.DictReader(f, delimiter="\t") if row["kind"] == "stream"]


def export(model_path, out_path, batch):
    subprocess.run([ARGS.sluice_run, "--model", model_path, "--export_streaming_onnx", out_path,
                    "--export_batch", str(batch)], check=True, capture_output=True, text=True)
    onnx.checker.check_model(onnx.load(out_path), full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(out_path, options, providers=["CPUExecutionProvider"])


def stream(session, frames):
    """Runs one step per frame, feeding every "<state>.next" output back as "<state>"."""
    inputs = session.get_inputs()
    dtypes = {"tensor(float)": np.float32, "tensor(int64)": np.int64}
    states = {i.name: np.zeros(i.shape, dtypes[i.type]) for i in inputs[1:]}
    output_names = [o.name for o in session.get_outputs()]
    model_outputs = len(output_names) - len(states)
    steps = []
    for frame in frames:
        values = session.run(None, {inputs[0].name: frame, **states})
        named = dict(zip(output_names, values))
        states = {name: named[name + ".next"] for name in states}
        steps.append(values[:model_outputs])
    return steps


class StreamingExportTest(unittest.TestCase):
    def check_model(self, row, per_row):
        """per_row: a batch-1 export, each input row streamed alone; else one export whose batch
        is all the rows, stepped together."""
        folder = os.path.join(ARGS.root, "tests/models", row["name"])
        model = os.path.join(ARGS.root, "tests/models", row["path"])
        x = np.load(os.path.join(folder, "input.npy"))
        with tempfile.TemporaryDirectory() as tmp:
            session = export(model, os.path.join(tmp, "batch1.onnx"), 1)
            meta = session.get_modelmeta().custom_metadata_map
            x_name = session.get_inputs()[0].name
            x_time = int(meta[f"sluice.time_axis.{x_name}"])
            x_batch = int(meta[f"sluice.batch_axis.{x_name}"])
            rows = x.shape[x_batch] if x_batch >= 0 else 1
            if not per_row:
                session = export(model, os.path.join(tmp, "batched.onnx"), rows)
            warmup = int(meta["sluice.warmup_frames"])
            self.assertEqual(warmup, int(row["warmup"]))
            outputs = session.get_outputs()
            for group in [[r] for r in range(rows)] if per_row else [list(range(rows))]:
                xs = np.take(x, group, axis=x_batch) if x_batch >= 0 else x
                frames = [np.ascontiguousarray(np.take(xs, t, axis=x_time))
                          for t in range(xs.shape[x_time])]
                steps = stream(session, frames)
                for j in range(len(steps[0])):
                    name = outputs[j].name
                    y_time = int(meta[f"sluice.time_axis.{name}"])
                    y_batch = int(meta[f"sluice.batch_axis.{name}"])
                    expected_file = "expected.npy" if j == 0 else f"expected_{j}.npy"
                    expected = np.load(os.path.join(folder, expected_file))
                    if y_batch >= 0:
                        expected = np.take(expected, group, axis=y_batch)
                    got = np.stack([s[j] for s in steps[warmup:]], axis=y_time)
                    self.assertEqual(got.shape, expected.shape, f"{row['name']} output {name}")
                    np.testing.assert_allclose(
                        got, expected, rtol=1e-4, atol=1e-4,
                        err_msg=f"{row['name']} output {name}, rows {group}, batch {len(group)}")

    def test_batch1_each_row(self):
        for row in streamable_models():
            with self.subTest(model=row["name"]):
                self.check_model(row, per_row=True)

    def test_all_rows_in_one_batch(self):
        for row in streamable_models():
            with self.subTest(model=row["name"]):
                self.check_model(row, per_row=False)

    def test_lstm_behind_a_valid_conv_keeps_its_state_during_warm_up(self):
        # No reference model has a recurrent state behind a warm-up, so build one: a valid
        # (unpadded) conv, then an LSTM that must not step until the conv's outputs are valid.
        from onnx import TensorProto, helper
        rng = np.random.default_rng(7)
        cin, cout, kernel, hidden, frames = 3, 4, 3, 5, 20

        def const(name, shape):
            return helper.make_tensor(name, TensorProto.FLOAT, shape,
                                      rng.uniform(-0.5, 0.5, shape).astype(np.float32).ravel())

        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/conv/Conv"),
             helper.make_node("Transpose", ["c"], ["ct"], perm=[2, 0, 1], name="/Transpose"),
             helper.make_node("LSTM", ["ct", "W", "R", "B"], ["y4"], hidden_size=hidden,
                              name="/lstm/LSTM"),
             helper.make_node("Squeeze", ["y4", "one"], ["y"], name="/Squeeze")],
            "conv_lstm",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, "T"])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T_out", 1, hidden])],
            [const("w", [cout, cin, kernel]), const("b", [cout]),
             const("W", [1, 4 * hidden, cout]), const("R", [1, 4 * hidden, hidden]),
             const("B", [1, 8 * hidden]), helper.make_tensor("one", TensorProto.INT64, [1], [1])])
        x = rng.uniform(-1, 1, (1, cin, frames)).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            offline = os.path.join(tmp, "offline.onnx")
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
                      offline)
            expected = ort.InferenceSession(offline, providers=["CPUExecutionProvider"]).run(
                None, {"x": x})[0]
            session = export(offline, os.path.join(tmp, "streaming.onnx"), 1)
        self.assertIn("%step", [i.name for i in session.get_inputs()])
        steps = stream(session, [np.ascontiguousarray(x[:, :, t]) for t in range(frames)])
        got = np.stack([s[0] for s in steps[kernel - 1:]], axis=0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    def test_refused_model_exits_2(self):
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run(
                [ARGS.sluice_run, "--model",
                 os.path.join(ARGS.root, "tests/models/refused/strided_conv.onnx"),
                 "--export_streaming_onnx", os.path.join(tmp, "out.onnx")],
                capture_output=True, text=True)
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("stride", run.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sluice_run", required=True)
    parser.add_argument("--root", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
