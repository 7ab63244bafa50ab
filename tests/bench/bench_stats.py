"""What the Python step benchmarks share: random frame sets and the statistics sluice-run --bench
reports (same keys, same percentile rule), so their JSON lines line up with sluice's."""
import json
import time

import numpy as np

# Distinct frame sets cycled through, as in runtime/tools/step_latency.cc.
FRAME_SETS = 8


def random_frames(shape, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(FRAME_SETS)]


def time_steps(step, inputs, warmup_steps, steps):
    """Calls step(inputs[i % len(inputs)]) for i = 0, 1, ...: warmup_steps times untimed, then
    `steps` times, each timed. Returns (per-step ns, cpu_share): the process's CPU time over
    wall time across the timed steps, about 1.0 when pinned to one core no one else used."""
    for i in range(warmup_steps):
        step(inputs[i % len(inputs)])
    times = []
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    for i in range(warmup_steps, warmup_steps + steps):
        start = time.perf_counter_ns()
        step(inputs[i % len(inputs)])
        times.append(time.perf_counter_ns() - start)
    return times, (time.process_time_ns() - cpu) / (time.perf_counter_ns() - wall)


def summarize(times_ns, batch, flops_per_frame, cpu_share, **labels):
    """One JSON-ready dict: batch, steps, p50_us, p99_us, mean_us, frames_per_s, gflops,
    cpu_share."""
    times = np.sort(np.asarray(times_ns, dtype=np.float64)) / 1e3
    steps = len(times)
    mean = float(times.mean())
    result = dict(labels)
    result.update({
        "batch": batch,
        "steps": steps,
        "p50_us": round(float(times[min(int(0.5 * steps), steps - 1)]), 2),
        "p99_us": round(float(times[min(int(0.99 * steps), steps - 1)]), 2),
        "mean_us": round(mean, 2),
        "frames_per_s": round(batch * steps / (times.sum() * 1e-6), 1),
        "gflops": round(flops_per_frame * batch / (mean * 1e3), 2),
        "cpu_share": round(cpu_share, 3),
    })
    return result


def emit(result):
    print(json.dumps(result), flush=True)
