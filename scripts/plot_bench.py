#!/usr/bin/env python3
"""Plots benchmark results (JSON lines) into PNGs and prints the plotted numbers as Markdown.

  scripts/plot_bench.py RESULTS_DIR... [--out DIR]     (default DIR: the first RESULTS_DIR/plots)

Reads every *.json and *.jsonl file under each RESULTS_DIR (recursively), one JSON object per line;
files that are not JSON lines (Google Benchmark's JSON) are skipped. Two kinds of records:
  step       batch, p50_us, p99_us, frames_per_s: sluice-run --bench --json (backend,
             precision) and tests/bench/{ort,torch}_stream_bench.py (runner);
  transport  sessions, frames_per_s, p99_us and target 'server' or 'echo' (sluice-client bench
             --json; without a target key, a file name starting echo- or server- gives it, as
             scripts/bench.sh names them).
Repeated measurements of the same point are reduced to their median. Plots, each skipped with
a note when its records are missing:
  step_latency_vs_batch.png  sluice step latency (p50, p99 dashed) and per-session cost vs
                             batch, per backend and precision;
  step_vs_ort_pytorch.png    p50 per step at each batch: sluice, ONNX Runtime, PyTorch eager;
  server_vs_echo.png         server and echo p99 and frames/s vs sessions.
"""
import argparse
import collections
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNNER_LABELS = {
    "onnxruntime": "ONNX Runtime (Python IOBinding)",
    "pytorch-eager": "PyTorch eager",
}


def read_records(roots):
    """(step records, transport records), each record a dict with a 'series' label added."""
    step, transport = [], []
    for folder, _, files in (walked for root in roots for walked in os.walk(root)):
        for name in sorted(files):
            if not name.endswith((".json", ".jsonl")):
                continue
            path = os.path.join(folder, name)
            with open(path) as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
            try:
                records = [json.loads(line) for line in lines]
            except json.JSONDecodeError:
                continue  # Not JSON lines.
            for r in records:
                if not isinstance(r, dict):
                    continue
                if {"batch", "p50_us", "p99_us", "frames_per_s"} <= r.keys():
                    if "runner" in r:
                        r["series"] = RUNNER_LABELS.get(r["runner"], r["runner"])
                    else:
                        r["series"] = f"sluice {r.get('backend', '?')} {r.get('precision', '')}"
                    step.append(r)
                elif {"sessions", "frames_per_s", "p99_us"} <= r.keys():
                    target = r.get("target") or name.split("-")[0]
                    if target in ("server", "echo"):
                        r["series"] = target
                        transport.append(r)
    return step, transport


def medians(records, x_key):
    """{series: {x: {key: median}}} over records with the same series and x."""
    grouped = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in records:
        grouped[r["series"]][r[x_key]].append(r)
    out = {}
    for series, points in grouped.items():
        out[series] = {
            x: {k: statistics.median(r[k] for r in rs)
                for k in ("p50_us", "p99_us", "frames_per_s", "cpu_share")
                if all(k in r for r in rs)}
            for x, rs in sorted(points.items())}
    return out


def log_x(ax, values):
    """A log x axis ticked at exactly `values` (batch sizes, session counts)."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(values))
    ax.set_xticklabels([str(v) for v in sorted(values)])
    ax.minorticks_off()


def sluice_series(step):
    return {s: v for s, v in step.items() if s.startswith("sluice ")}


def plot_latency_vs_batch(step, path):
    series = sluice_series(step)
    if not series:
        return "no sluice-run --bench results"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points in sorted(series.items()):
        batches = list(points)
        line, = left.plot(batches, [p["p50_us"] for p in points.values()], "o-",
                          label=f"{name} p50")
        left.plot(batches, [p["p99_us"] for p in points.values()], "--", color=line.get_color(),
                  label=f"{name} p99")
        right.plot(batches, [p["p50_us"] / b for b, p in points.items()], "o-",
                   color=line.get_color(), label=name)
    left.set(yscale="log", xlabel="batch (sessions per step)", ylabel="µs per step",
             title="Step latency")
    right.set(xlabel="batch (sessions per step)", ylabel="µs per session (p50)",
              title="Cost per session-step")
    right.set_ylim(bottom=0)
    batches = {b for points in series.values() for b in points}
    for ax in (left, right):
        log_x(ax, batches)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def plot_step_comparison(step, path):
    if len(step) < 2 or not any(not s.startswith("sluice ") for s in step):
        return "no ONNX Runtime or PyTorch results beside sluice's"
    names = sorted(step, key=lambda s: (not s.startswith("sluice "), s))
    batches = sorted({b for points in step.values() for b in points})
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 4.4), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        present = [n for n in names if batch in step[n]]
        values = [step[n][batch]["p50_us"] for n in present]
        bars = ax.bar(range(len(present)), values, color=[f"C{names.index(n)}" for n in present])
        base = step.get("sluice cpu fp32", {}).get(batch, {}).get("p50_us")
        for bar, value in zip(bars, values):
            label = f"{value:,.0f} µs" + (f"\n{value / base:.1f}×" if base else "")
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, value), ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(present)))
        ax.set_xticklabels([n.replace(" (", "\n(") for n in present], fontsize=7, rotation=20)
        ax.set(yscale="log", ylabel="p50 µs per step", title=f"batch {batch}")
        ax.set_ylim(bottom=min(values) / 3, top=max(values) * 6)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle("One streaming step, one core (× = ratio to sluice cpu fp32)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def plot_transport(transport, path):
    if not {"server", "echo"} <= transport.keys():
        return "no sluice-client bench results for both the server and the echo"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("echo", "s--"), ("server", "o-")):
        points = transport[name]
        sessions = list(points)
        left.plot(sessions, [p["p99_us"] for p in points.values()], style, label=name)
        right.plot(sessions, [p["frames_per_s"] for p in points.values()], style, label=name)
    left.set(yscale="log", xlabel="sessions", ylabel="p99 µs (frame → output)",
             title="Latency p99: server vs echo floor")
    right.set(xlabel="sessions", ylabel="frames/s", title="Throughput")
    right.set_ylim(bottom=0)
    sessions = {s for points in transport.values() for s in points}
    for ax in (left, right):
        log_x(ax, sessions)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def print_tables(step, transport):
    if step:
        names = sorted(step, key=lambda s: (not s.startswith("sluice "), s))
        batches = sorted({b for points in step.values() for b in points})
        print("Step latency, p50 / p99 µs per step, and CPU/real time of the timed steps (1.00 = "
              "the core was not shared); medians over repeated runs:\n")
        print("| runner | " + " | ".join(f"batch {b}" for b in batches) + " |")
        print("|---|" + "---|" * len(batches))

        def cell(p):
            share = f" ({p['cpu_share']:.2f})" if "cpu_share" in p else ""
            return f"{p['p50_us']:,.1f} / {p['p99_us']:,.1f}{share}"

        for n in names:
            cells = [cell(step[n][b]) if b in step[n] else "—" for b in batches]
            print(f"| {n} | " + " | ".join(cells) + " |")
        base = step.get("sluice cpu fp32")
        if base:
            print("\np50 per step relative to sluice cpu fp32 (same run):\n")
            print("| runner | " + " | ".join(f"batch {b}" for b in batches) + " |")
            print("|---|" + "---|" * len(batches))
            for n in names:
                cells = [f"{step[n][b]['p50_us'] / base[b]['p50_us']:.2f}×"
                         if b in step[n] and b in base else "—" for b in batches]
                print(f"| {n} | " + " | ".join(cells) + " |")
        print("\nframes/s (sessions × steps / time):\n")
        print("| runner | " + " | ".join(f"batch {b}" for b in batches) + " |")
        print("|---|" + "---|" * len(batches))
        for n in names:
            cells = [f"{step[n][b]['frames_per_s']:,.0f}" if b in step[n] else "—"
                     for b in batches]
            print(f"| {n} | " + " | ".join(cells) + " |")
    if transport:
        print("\nTransport (median over rounds):\n")
        print("| target | sessions | p99 µs | frames/s |\n|---|---|---|---|")
        for name, points in sorted(transport.items()):
            for s, p in points.items():
                print(f"| {name} | {s} | {p['p99_us']:,.0f} | {p['frames_per_s']:,.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results directories (searched recursively)")
    parser.add_argument("--out", help="where the PNGs go (default: the first RESULTS/plots)")
    args = parser.parse_args()
    out = args.out or os.path.join(args.results[0], "plots")
    step_records, transport_records = read_records(args.results)
    step = medians(step_records, "batch")
    transport = medians(transport_records, "sessions")
    os.makedirs(out, exist_ok=True)
    for name, plot, data in (("step_latency_vs_batch.png", plot_latency_vs_batch, step),
                             ("step_vs_ort_pytorch.png", plot_step_comparison, step),
                             ("server_vs_echo.png", plot_transport, transport)):
        skipped = plot(data, os.path.join(out, name))
        print(f"{name}: skipped ({skipped})" if skipped else f"wrote {os.path.join(out, name)}",
              file=sys.stderr)
    print_tables(step, transport)


if __name__ == "__main__":
    main()
