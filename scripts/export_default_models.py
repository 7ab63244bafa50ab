"""Exports the bundled default model repository (models/) from PyTorch, the way users export.

  .venv/bin/python scripts/export_default_models.py

Weights are seeded random: these models show the serving path, they are not trained.
  kws_cnn    audio keyword-spotting style causal TCN over 40 log-mel features -> 12 class probs
  tick_lstm  market-data style 2-layer LSTM over 8 tick features -> 3 outputs
  cnn_tiny   3 causal convs 128->128, kernel 8 (the benchmark shape)
"""
import contextlib
import io
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


class CausalConv1d(nn.Conv1d):
    def __init__(self, cin, cout, kernel, dilation=1, groups=1):
        super().__init__(cin, cout, kernel, dilation=dilation, groups=groups)
        self.left = (kernel - 1) * dilation

    def forward(self, x):
        return super().forward(F.pad(x, (self.left, 0)))


class KeywordCnn(nn.Module):
    def __init__(self, mels=40, channels=64, classes=12):
        super().__init__()
        self.inp = nn.Conv1d(mels, channels, 1)
        self.blocks = nn.ModuleList()
        for d in (1, 2, 4, 8):
            self.blocks.append(nn.ModuleDict({
                "dw": CausalConv1d(channels, channels, 3, dilation=d, groups=channels),
                "bn": nn.BatchNorm1d(channels),
                "pw": nn.Conv1d(channels, channels, 1),
            }))
        self.out = nn.Conv1d(channels, classes, 1)

    def forward(self, x):  # [B, 40, T] -> [B, 12, T]
        x = F.relu(self.inp(x))
        for b in self.blocks:
            x = x + F.relu(b["pw"](b["bn"](b["dw"](x))))
        return torch.softmax(self.out(x), dim=1)


class TickLstm(nn.Module):
    def __init__(self, features=8, hidden=32, outputs=3):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x):  # [B, T, 8] -> [B, T, 3]
        y, _ = self.lstm(x)
        return self.head(y)


class CnnTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([CausalConv1d(128, 128, 8) for _ in range(3)])

    def forward(self, x):
        for c in self.convs:
            x = F.relu(c(x))
        return x


def export(name, model, example, time_axis, config):
    model.eval()
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    batch_axis = 1 if time_axis == 0 else 0
    axes = {time_axis: "T", batch_axis: "B"}
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        torch.onnx.export(model, (example,), os.path.join(folder, "model.onnx"),
                          input_names=["x"], output_names=["y"], opset_version=14,
                          dynamic_axes={"x": axes, "y": axes})
    with open(os.path.join(folder, "config.pbtxt"), "w") as f:
        f.write(config)
    print(f"{name}: {os.path.getsize(os.path.join(folder, 'model.onnx'))} bytes")


def main():
    torch.manual_seed(7)
    kws = KeywordCnn()
    for m in kws.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    export("kws_cnn", kws, torch.randn(1, 40, 50), 2,
           "# Audio keyword spotting: one frame = 40 log-mel features (10 ms hop).\n"
           "max_batch: 256\nmax_queue_delay_us: 0\nsession_idle_timeout_ms: 300000\n")
    export("tick_lstm", TickLstm(), torch.randn(1, 50, 8), 1,
           "# Market data: one frame = 8 features of a tick.\n"
           "max_batch: 256\nsession_queue_frames: 128\n")
    export("cnn_tiny", CnnTiny(), torch.randn(1, 128, 16), 2,
           "# Benchmark shape: 3 causal convs, 128 channels, kernel 8.\nmax_batch: 256\n")


if __name__ == "__main__":
    main()
