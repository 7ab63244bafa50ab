// sluice-client bench: N concurrent sessions, per-frame end-to-end latency and throughput.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "client/cli/bench_runner.h"
#include "client/cli/commands.h"
#include "client/cli/common_flags.h"
#include "client/cli/load_flags.h"

ABSL_FLAG(int64_t, warmup, 0,
          "bench: frames per session sent before the measured ones and left out of the "
          "statistics.");
ABSL_FLAG(double, rate, 0,
          "bench: frames per second per session, paced (open loop); 0 = ping-pong (each frame "
          "is sent as soon as the previous frame's output arrived).");

namespace sluice::client {
namespace {

double Us(int64_t nanos) { return static_cast<double>(nanos) / 1000.0; }

void PrintProgress(const BenchProgress& progress) {
  const double seconds = absl::ToDoubleSeconds(progress.elapsed);
  std::fprintf(stderr, "\r[bench] %lld/%lld outputs  %.0f frames/s  %.1f s  errors %lld   ",
               static_cast<long long>(progress.outputs), static_cast<long long>(progress.expected),
               seconds > 0 ? progress.outputs / seconds : 0.0, seconds,
               static_cast<long long>(progress.errors));
  std::fflush(stderr);
}

}  // namespace

const Command kBenchCommand = {
    "bench",
    "Run N concurrent sessions; report frames/s and per-frame latency percentiles.",
    "Runs --sessions concurrent sessions on --model, each sending --frames random frames\n"
    "(ping-pong, or paced at --rate frames/s), and reports total frames/s and the end-to-end\n"
    "latency (send -> its output) p50/p90/p99/p99.9/max in microseconds (--json: one object\n"
    "with sessions, frames, frames_per_s, p50_us, p90_us, p99_us, p999_us, max_us, errors).\n"
    "Exit code 1 when any error occurred.\n"
    "  sluice-client bench [--server HOST:PORT] --model NAME --sessions N --frames F "
    "[--rate FPS] [--warmup W] [--json]",
    "client/cli/bench_command.cc",
    &RunBenchCommand,
    "client/cli/load_flags.cc"};

int RunBenchCommand() {
  BenchOptions options;
  options.model = absl::GetFlag(FLAGS_model);
  options.sessions = absl::GetFlag(FLAGS_sessions);
  options.frames = absl::GetFlag(FLAGS_frames);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  options.rate = absl::GetFlag(FLAGS_rate);
  options.open_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  const bool live = isatty(STDERR_FILENO) == 1;
  if (live) options.progress = PrintProgress;
  auto client = ClientFromFlags(absl::GetFlag(FLAGS_connections));
  if (!client.ok()) {
    std::cerr << "sluice-client bench: " << client.status() << "\n";
    return 1;
  }
  absl::StatusOr<BenchResult> result = RunBench(**client, options);
  if (live) std::fprintf(stderr, "\r\033[K");
  if (!result.ok()) {
    std::cerr << "sluice-client bench: " << result.status() << "\n";
    return 1;
  }
  for (const std::string& error : result->error_samples) {
    std::cerr << "sluice-client bench: error: " << error << "\n";
  }
  const LatencyHistogram& latency = result->latency_ns;
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat(
        "{\"sessions\": %d, \"frames\": %d, \"frames_per_s\": %.1f, \"p50_us\": %.1f, "
        "\"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, "
        "\"errors\": %d}\n",
        result->sessions, result->frames, result->frames_per_s, Us(latency.Percentile(0.5)),
        Us(latency.Percentile(0.9)), Us(latency.Percentile(0.99)), Us(latency.Percentile(0.999)),
        Us(latency.max()), result->errors);
  } else {
    std::cout << absl::StrFormat(
        "sluice-client bench: %s on %s, %d sessions x %d frames, %s\n"
        "  frames      %d in %.3f s = %.0f frames/s\n"
        "  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n"
        "  errors      %d\n",
        options.model, (*client)->server(), options.sessions, options.frames,
        options.rate > 0 ? absl::StrFormat("paced at %g frames/s each", options.rate)
                         : std::string("ping-pong"),
        result->frames, absl::ToDoubleSeconds(result->elapsed), result->frames_per_s,
        Us(latency.Percentile(0.5)), Us(latency.Percentile(0.9)), Us(latency.Percentile(0.99)),
        Us(latency.Percentile(0.999)), Us(latency.max()), result->errors);
  }
  return result->errors > 0 ? 1 : 0;
}

}  // namespace sluice::client
