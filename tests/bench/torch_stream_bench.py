#!/usr/bin/env python3
"""PyTorch eager doing the streaming step of a causal conv chain (models/cnn_tiny).

The model's Conv weights are read from the offline ONNX file (a chain of causal Conv1d, each
optionally followed by ReLU, like cnn_tiny). A step, per conv: window = cat(cache, frame) over
time, y = conv1d(window) (one output frame), cache = window[..., 1:]; under torch.no_grad() with
torch.set_num_threads(1). Before timing, the streamed outputs of 24 frames are checked against
onnxruntime running the offline model on the same sequence (rtol = atol = 1e-4). Prints one JSON
line per batch size in the keys of sluice-run --bench --json.

  torch_stream_bench.py --model models/cnn_tiny/model.onnx [--batch 1,64] [--steps 1000]
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stats  # noqa: E402


def conv_chain(path):
    """[(weight, bias, dilation, groups, relu)] of the model's Convs, in graph order."""
    model = onnx.load(path)
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
               for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    chain = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if any(s != 1 for s in attrs.get("strides", [1])):
            sys.exit(f"{path}: {node.name} is strided; only causal conv chains are supported")
        chain.append((weights[node.input[1]], weights[node.input[2]],
                      attrs.get("dilations", [1])[0], attrs.get("group", 1),
                      consumers.get(node.output[0]) == ["Relu"]))
    if not chain:
        sys.exit(f"{path}: no Conv nodes")
    return chain


class StreamingConvChain:
    def __init__(self, chain, batch):
        self.chain = chain
        self.caches = [torch.zeros(batch, w.shape[1] * g, (w.shape[2] - 1) * d)
                       for w, _, d, g, _ in chain]

    def step(self, frame):  # [batch, channels] -> [batch, out channels]
        x = frame.unsqueeze(-1)
        for i, (w, b, dilation, groups, relu) in enumerate(self.chain):
            window = torch.cat([self.caches[i], x], dim=2)
            self.caches[i] = window[:, :, 1:]
            x = F.conv1d(window, w, b, dilation=dilation, groups=groups)
            if relu:
                x = F.relu(x)
        return x.squeeze(-1)


def check_against_onnxruntime(path, chain, frames=24):
    channels = chain[0][0].shape[1] * chain[0][3]
    x = np.random.default_rng(3).uniform(-1, 1, (1, channels, frames)).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    stream = StreamingConvChain(chain, 1)
    got = np.stack([stream.step(torch.from_numpy(x[:, :, t])).numpy() for t in range(frames)],
                   axis=2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4,
                               err_msg="the PyTorch step does not match the offline model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="offline ONNX model (a causal conv chain)")
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup_steps", type=int, default=100)
    args = parser.parse_args()

    torch.set_num_threads(1)
    chain = conv_chain(args.model)
    flops_per_frame = sum(2 * w.numel() for w, *_ in chain)
    with torch.no_grad():
        check_against_onnxruntime(args.model, chain)
        channels = chain[0][0].shape[1] * chain[0][3]
        for batch in (int(b) for b in args.batch.split(",")):
            stream = StreamingConvChain(chain, batch)
            frames = [torch.from_numpy(f) for f in bench_stats.random_frames((batch, channels))]
            times, cpu_share = bench_stats.time_steps(stream.step, frames, args.warmup_steps,
                                                      args.steps)
            bench_stats.emit(bench_stats.summarize(
                times, batch, flops_per_frame, cpu_share, runner="pytorch-eager", api="python",
                version=torch.__version__, model=args.model))


if __name__ == "__main__":
    main()
