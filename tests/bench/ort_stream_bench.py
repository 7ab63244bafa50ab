#!/usr/bin/env python3
"""ONNX Runtime stepping a streaming model exported by sluice-run --export_streaming_onnx.

One Run() per step through the Python API with IOBinding: every input and output is bound once
to preallocated OrtValues, the state outputs of a step are the state inputs of the next (two
binding sets, swapped each step), so a step is run_with_iobinding() and nothing else; only that
call is timed. The batch is the export's (--export_batch N: N sessions per Run()). ORT runs on
one thread (intra- and inter-op), sequential execution, all graph optimizations. Prints one
JSON line in the keys of sluice-run --bench --json.

  ort_stream_bench.py --model STREAMING.onnx [--steps 1000] [--warmup_steps 100]
"""
import argparse
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stats  # noqa: E402

DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a streaming model (sluice-run export)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--label", default="", help="written as the 'model' key")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    frame_input, *state_inputs = session.get_inputs()
    outputs = session.get_outputs()[:len(session.get_outputs()) - len(state_inputs)]

    def ortvalue(array):
        return ort.OrtValue.ortvalue_from_numpy(array)

    frames = [ortvalue(f) for f in bench_stats.random_frames(frame_input.shape)]
    # states[p][i]: state input i of binding parity p; parity p writes parity 1 - p.
    states = [[ortvalue(np.zeros(i.shape, DTYPES[i.type])) for i in state_inputs]
              for _ in range(2)]
    results = [ortvalue(np.zeros(o.shape, DTYPES[o.type])) for o in outputs]
    bindings = []
    for f in range(bench_stats.FRAME_SETS):
        parity = f % 2
        binding = session.io_binding()
        binding.bind_ortvalue_input(frame_input.name, frames[f])
        for i, state in enumerate(state_inputs):
            binding.bind_ortvalue_input(state.name, states[parity][i])
            binding.bind_ortvalue_output(state.name + ".next", states[1 - parity][i])
        for o, value in zip(outputs, results):
            binding.bind_ortvalue_output(o.name, value)
        bindings.append(binding)

    # Step i runs binding i % 8: reading the states step i - 1 wrote (8 is even).
    times, cpu_share = bench_stats.time_steps(session.run_with_iobinding, bindings,
                                              args.warmup_steps, args.steps)
    bench_stats.emit(bench_stats.summarize(
        times, int(meta["sluice.batch"]), int(meta["sluice.flops_per_frame"]), cpu_share,
        runner="onnxruntime", api="python-iobinding", version=ort.__version__,
        model=args.label or args.model))


if __name__ == "__main__":
    main()
