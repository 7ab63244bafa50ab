#!/usr/bin/env python3
"""(Re)generate sluice's reference ONNX models.

Run from anywhere:

    /work/main/.venv/bin/python tests/models/export_models.py

For every *streamable* model this writes

    tests/models/<name>/model.onnx    torch.onnx.export, dynamic time axis "T"
    tests/models/<name>/input.npy     float32, full offline input sequence
    tests/models/<name>/expected.npy  float32, offline output computed by onnxruntime

and for every model sluice must *refuse* (non-causal / unsupported) it writes

    tests/models/refused/<name>.onnx

plus tests/models/manifest.tsv describing all of them.

Everything is deterministic (fixed seeds, single-threaded ORT).  The expected
outputs come from onnxruntime (an implementation independent of torch); torch
and ORT are asserted to agree to 1e-4.  Each streamable model is additionally
checked for causality: running ORT on a prefix of the input must reproduce the
matching prefix of the full output (output frame i depends only on input frames
<= i + warmup), which is what sluice's streaming execution has to reproduce.
"""

import io
import os
import sys
import contextlib
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REFUSED_DIR = os.path.join(HERE, "refused")
TOL = 1e-4
OPSET = 13

warnings.filterwarnings("ignore")  # torch.onnx tracer warnings are expected noise
torch.set_num_threads(1)


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------
class PaddedConv1d(nn.Module):
    """Causal conv the way many users write it: left F.pad, then padding=0 Conv1d."""

    def __init__(self, cin, cout, k, dilation=1, groups=1):
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv = nn.Conv1d(cin, cout, k, dilation=dilation, groups=groups, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (self.pad, 0)))


class Chomp1d(nn.Module):
    def __init__(self, chomp):
        super().__init__()
        self.chomp = chomp

    def forward(self, x):
        return x[:, :, : -self.chomp].contiguous()


# ----------------------------------------------------------------------------
# Streamable models
# ----------------------------------------------------------------------------
class VolloValidCNN(nn.Module):
    def __init__(self, cin=16, hidden=32, cout=4, k=3):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, hidden, k)
        self.conv2 = nn.Conv1d(hidden, cout, k)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class VolloPaddedCNN(nn.Module):
    def __init__(self, cin=16, hidden=32, cout=4, k=3):
        super().__init__()
        self.conv1 = PaddedConv1d(cin, hidden, k, dilation=1)
        self.conv2 = PaddedConv1d(hidden, cout, k, dilation=2)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class CNNTiny(nn.Module):
    def __init__(self, c=128, k=8):
        super().__init__()
        self.conv1 = PaddedConv1d(c, c, k)
        self.conv2 = PaddedConv1d(c, c, k)
        self.conv3 = PaddedConv1d(c, c, k)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return F.relu(self.conv3(x))


class EspdlTCNBlock(nn.Module):
    """ESP-DL seed TestModel_0."""

    def __init__(self, cin=8, c=16, k=3, dilation=2):
        super().__init__()
        self.padding = (k - 1) * dilation
        self.prev_conv = nn.Conv1d(cin, c, 1)
        self.layer = nn.ModuleList([
            nn.Sequential(nn.Conv1d(c, c, 1), nn.BatchNorm1d(c)),
            nn.Conv1d(c, c, k, dilation=dilation, groups=c),
            nn.Sigmoid(),
            nn.Conv1d(c, c, 1),
        ])

    def forward(self, input):
        input = self.prev_conv(input)
        out1 = self.layer[0](input)
        out1 = F.pad(out1, (self.padding, 0))
        out1 = self.layer[1](out1)
        out2 = self.layer[2](out1)
        output = self.layer[3](out1 * out2) + input
        return output


class ChompTCN(nn.Module):
    """Classic locuslab TemporalBlock stack (weight_norm conv + Chomp1d)."""

    def __init__(self, cin=6, c=12, k=3):
        super().__init__()
        wn = torch.nn.utils.weight_norm
        p1, p2 = (k - 1) * 1, (k - 1) * 2
        self.conv1 = wn(nn.Conv1d(cin, c, k, padding=p1, dilation=1))
        self.chomp1 = Chomp1d(p1)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(0.2)
        self.conv2 = wn(nn.Conv1d(c, c, k, padding=p2, dilation=2))
        self.chomp2 = Chomp1d(p2)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(0.2)
        self.downsample = nn.Conv1d(cin, c, 1) if cin != c else None
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.dropout1(self.relu1(self.chomp1(self.conv1(x))))
        out = self.dropout2(self.relu2(self.chomp2(self.conv2(out))))
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class LSTM2(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(10, 24, num_layers=2)  # batch_first=False: [T, B, C]
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


class GRUTanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(12, 20, batch_first=True)  # [B, T, C]
        self.fc = nn.Linear(20, 6)

    def forward(self, x):
        y, _ = self.gru(x)
        return torch.tanh(self.fc(y))


class OpsZoo(nn.Module):
    def __init__(self, cin=8, c=16, cout=6):
        super().__init__()
        self.conv = PaddedConv1d(cin, c, 3)
        self.bn = nn.BatchNorm1d(c)  # after a ReLU, so torch cannot fuse it into the Conv
        self.fc1 = nn.Linear(c, c)
        self.ln = nn.LayerNorm(c)
        self.fc2 = nn.Linear(32, cout)

    def forward(self, x):                      # [B, 8, T]
        h = self.bn(F.relu(self.conv(x)))      # [B, 16, T], BatchNormalization node
        h = h.transpose(1, 2)                  # [B, T, 16]
        h = self.ln(self.fc1(h))
        a = F.gelu(h)                          # erf form
        b = F.silu(h)
        c = F.softplus(h)
        d = F.leaky_relu(h, 0.1)
        e = torch.clamp(a + b, -1.0, 1.0)      # Clip
        s = torch.softmax(c, dim=-1)           # over channels
        f = (d - 0.5) / 3.0
        cat = torch.cat([e, s, f], dim=-1)     # [B, T, 48]
        p, q = torch.split(cat, [20, 28], dim=-1)
        u = p[..., :12] * q[..., 4:16]         # channel slices
        v = torch.cat([u, q[..., 8:28]], dim=-1)  # [B, T, 32]
        y = self.fc2(v)                        # [B, T, 6]
        return y.transpose(1, 2)               # [B, 6, T]


class MixedDilated(nn.Module):
    def __init__(self, cin=8, c=16, cout=5, k=5, d=3, groups=4):
        super().__init__()
        p = (k - 1) * d
        self.gconv = nn.Conv1d(cin, c, k, dilation=d, groups=groups, padding=p)
        self.chomp = Chomp1d(p)
        self.vconv = nn.Conv1d(c, c, 2)       # valid: warm-up of 1 frame
        self.fc = nn.Linear(c, cout)

    def forward(self, x):                      # [B, 8, T]
        h = torch.relu(self.chomp(self.gconv(x)))
        h = torch.relu(self.vconv(h))          # [B, 16, T-1]
        return self.fc(h.transpose(1, 2)).transpose(1, 2)  # [B, 5, T-1]


# ----------------------------------------------------------------------------
# Models to refuse
# ----------------------------------------------------------------------------
class SymmetricPadConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class MeanOverTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 1)

    def forward(self, x):
        return self.conv(x).mean(dim=2)


class BidirLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, bidirectional=True)

    def forward(self, x):
        return self.lstm(x)[0]


class Attention(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.q = nn.Linear(c, c)
        self.k = nn.Linear(c, c)
        self.v = nn.Linear(c, c)
        self.scale = 1.0 / (c ** 0.5)

    def forward(self, x):                      # [B, T, C]
        q, k, v = self.q(x), self.k(x), self.v(x)
        att = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.scale, dim=-1)
        return torch.matmul(att, v)


class StridedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (2, 0)))


class LSTMReturnsState(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8)

    def forward(self, x):
        y, (h, _) = self.lstm(x)
        return y, h


class BatchNormTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = PaddedConv1d(4, 4, 3)
        self.norm = nn.InstanceNorm1d(4)

    def forward(self, x):
        return self.norm(self.conv(x))


# ----------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------
# name, factory, input shape (with T), time_axis, warmup, opset, do_constant_folding
STREAM = [
    ("vollo_valid_cnn",  VolloValidCNN,  (8, 16, 48),  2, 4, OPSET, True),
    ("vollo_padded_cnn", VolloPaddedCNN, (8, 16, 48),  2, 0, OPSET, False),
    ("cnn_tiny",         CNNTiny,        (2, 128, 32), 2, 0, OPSET, False),
    ("espdl_tcn_block",  EspdlTCNBlock,  (8, 8, 48),   2, 0, OPSET, True),
    ("chomp_tcn",        ChompTCN,       (8, 6, 48),   2, 0, OPSET, False),
    ("lstm2",            LSTM2,          (40, 8, 10),  0, 0, OPSET, True),
    ("gru_tanh",         GRUTanh,        (8, 40, 12),  1, 0, OPSET, True),
    ("ops_zoo",          OpsZoo,         (8, 8, 48),   2, 0, 14,    True),
    ("mixed_dilated",    MixedDilated,   (8, 8, 64),   2, 1, OPSET, True),
]

# name, factory, input shape, time_axis, output names, (op_type, predicate) to
# locate the offending node, reason keyword
REFUSE = [
    ("symmetric_pad_conv", SymmetricPadConv, (1, 4, 32), 2, ["y"],
     ("Conv", None), "right padding"),
    ("mean_over_time", MeanOverTime, (1, 4, 32), 2, ["y"],
     ("ReduceMean", None), "over time"),
    ("bidir_lstm", BidirLSTM, (32, 1, 4), 0, ["y"],
     ("LSTM", None), "bidirectional"),
    ("attention", Attention, (1, 32, 8), 1, ["y"],
     # the q @ k^T MatMul: its second input comes from a Transpose
     ("MatMul", "kT"), "across time"),
    ("strided_conv", StridedConv, (1, 4, 32), 2, ["y"],
     ("Conv", None), "stride"),
    ("lstm_returns_state", LSTMReturnsState, (32, 1, 4), 0, ["y", "h_n"],
     ("LSTM", None), "Y_h"),
    ("batchnorm_time", BatchNormTime, (1, 4, 32), 2, ["y"],
     ("InstanceNormalization", None), "over time"),
]


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def seed_all(name):
    seed = sum(ord(ch) * (i + 1) for i, ch in enumerate(name)) % (2 ** 31)
    torch.manual_seed(seed)
    return np.random.RandomState(seed)


def randomize_bn(model, rng):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, n).astype(np.float32)))
            m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n).astype(np.float32)))
            m.weight.data.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n).astype(np.float32)))
            m.bias.data.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, n).astype(np.float32)))


def randomize_weight_norm_g(model, rng):
    # make g != ||v|| so the g * v / ||v|| subgraph is not an identity
    for m in model.modules():
        if hasattr(m, "weight_g"):
            g = m.weight_g.data
            g.mul_(torch.from_numpy(rng.uniform(0.5, 1.5, g.shape).astype(np.float32)))


def export(model, x, path, time_axis, opset, folding, out_names=("y",), out_time_axes=None,
           dynamic_batch=False):
    # Users export with a dynamic batch as well as a dynamic time axis; the batch axis is the
    # first axis that is not time (layouts [B,C,T], [B,T,C], [T,B,C]).
    batch_axis = 1 if time_axis == 0 else 0
    in_axes = {time_axis: "T"}
    if dynamic_batch:
        in_axes[batch_axis] = "B"
    dyn = {"x": in_axes}
    if out_time_axes is None:
        out_time_axes = [time_axis] * len(out_names)
    for n, ax in zip(out_names, out_time_axes):
        if ax is not None:
            dyn[n] = {ax: "T_out"}
            if dynamic_batch:
                dyn[n][1 if ax == 0 else 0] = "B"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), torch.no_grad():
        torch.onnx.export(
            model, (x,), path,
            input_names=["x"], output_names=list(out_names),
            dynamic_axes=dyn, opset_version=opset,
            do_constant_folding=folding,
        )
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_run(sess, x):
    return sess.run(None, {"x": x})


def fmt_shape(s):
    return "[" + ",".join(str(d) for d in s) + "]"


def sym_dims(vi):
    return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
def export_stream(name, factory, shape, time_axis, warmup, opset, folding):
    rng = seed_all(name)
    model = factory()
    randomize_bn(model, rng)
    randomize_weight_norm_g(model, rng)
    model.eval()

    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        y_torch = model(xt).numpy()

    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    export(model, xt, path, time_axis, opset, folding, dynamic_batch=True)

    sess = ort_session(path)
    (y,) = ort_run(sess, x)
    y = y.astype(np.float32)
    assert y.shape == y_torch.shape, (name, y.shape, y_torch.shape)
    err = float(np.max(np.abs(y - y_torch)))
    assert err <= TOL, f"{name}: torch vs ORT max abs diff {err}"

    T = shape[time_axis]
    assert y.shape[time_axis] == T - warmup, (name, y.shape, T, warmup)

    # Dynamic-T + causality check: ORT on prefixes reproduces the full output's prefix.
    for Tp in (warmup + 1, T // 2 + 3, T - 1):
        xp = np.take(x, np.arange(Tp), axis=time_axis)
        (yp,) = ort_run(sess, np.ascontiguousarray(xp))
        yref = np.take(y, np.arange(Tp - warmup), axis=time_axis)
        perr = float(np.max(np.abs(yp - yref)))
        assert perr <= 1e-5, f"{name}: prefix T={Tp} differs by {perr} (not causal?)"

    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "expected.npy"), y)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in ("model.onnx", "input.npy", "expected.npy"))
    print(f"{name:20s} stream  in={fmt_shape(x.shape):14s} out={fmt_shape(y.shape):14s} "
          f"torch/ort={err:.1e} size={size}B")
    return size


def find_node(m, op_type, pred):
    cands = [n for n in m.graph.node if n.op_type == op_type]
    if pred == "kT":
        producers = {o: n for n in m.graph.node for o in n.output}
        cands = [n for n in cands
                 if n.input[1] in producers and producers[n.input[1]].op_type == "Transpose"]
    assert len(cands) == 1, (op_type, [n.name for n in cands])
    return cands[0].name


def export_refuse(name, factory, shape, time_axis, out_names, locate, reason):
    rng = seed_all(name)
    model = factory()
    model.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        yt = model(xt)
    yt = yt if isinstance(yt, tuple) else (yt,)
    os.makedirs(REFUSED_DIR, exist_ok=True)
    path = os.path.join(REFUSED_DIR, name + ".onnx")
    out_time_axes = [time_axis if (o.dim() > time_axis and o.shape[time_axis] == shape[time_axis]
                                   or name == "strided_conv") else None for o in yt]
    m = export(model, xt, path, time_axis, OPSET, True, out_names, out_time_axes)
    outs = ort_run(ort_session(path), x)
    for a, b in zip(outs, yt):
        err = float(np.max(np.abs(a - b.numpy())))
        assert err <= TOL, f"{name}: torch vs ORT max abs diff {err}"
    node = find_node(m, *locate)
    size = os.path.getsize(path)
    print(f"{name:20s} refuse  in={fmt_shape(x.shape):14s} "
          f"out={','.join(fmt_shape(o.shape) for o in outs):14s} node={node} size={size}B")
    return node, size


def export_unknown_op():
    """Hand-built graph: Relu -> TopK(k=2 over channels) on a [1, C, T] input."""
    name = "unknown_op"
    C = 4
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, "T"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "T"])
    k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="/relu/Relu"),
        helper.make_node("TopK", ["r", "k"], ["y", "idx"], name="/TopK", axis=1),
    ]
    g = helper.make_graph(nodes, "unknown_op", [x], [y], initializer=[k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="sluice-tests")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    os.makedirs(REFUSED_DIR, exist_ok=True)
    path = os.path.join(REFUSED_DIR, name + ".onnx")
    onnx.save(m, path)
    rng = seed_all(name)
    xin = rng.standard_normal((1, C, 32)).astype(np.float32)
    (yo,) = ort_run(ort_session(path), xin)
    ref = -np.sort(-np.maximum(xin, 0), axis=1)[:, :2]
    assert np.allclose(yo, ref), name
    size = os.path.getsize(path)
    print(f"{name:20s} refuse  in={fmt_shape(xin.shape):14s} out={fmt_shape(yo.shape):14s} "
          f"node=/TopK size={size}B")
    return "/TopK", size


def main():
    rows = [("name", "kind", "path", "node", "reason", "time_axis", "warmup")]
    total = 0
    for name, factory, shape, ta, wu, opset, folding in STREAM:
        total += export_stream(name, factory, shape, ta, wu, opset, folding)
        rows.append((name, "stream", f"{name}/model.onnx", "-", "-", str(ta), str(wu)))
    for name, factory, shape, ta, outs, locate, reason in REFUSE:
        node, size = export_refuse(name, factory, shape, ta, outs, locate, reason)
        total += size
        rows.append((name, "refuse", f"refused/{name}.onnx", node, reason, "-", "-"))
    node, size = export_unknown_op()
    total += size
    rows.append(("unknown_op", "refuse", "refused/unknown_op.onnx", node, "unsupported op", "-", "-"))

    with open(os.path.join(HERE, "manifest.tsv"), "w") as f:
        for r in rows:
            f.write("\t".join(r) + "\n")
    print(f"total {total} bytes ({total / 1e6:.2f} MB), {len(rows) - 1} models; "
          f"manifest: {os.path.relpath(os.path.join(HERE, 'manifest.tsv'))}")
    assert total < 5_000_000


if __name__ == "__main__":
    sys.exit(main())
