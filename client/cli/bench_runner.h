// The load generator behind `sluice-client bench`: N concurrent sessions on one model, each
// sending random frames either ping-pong (the next frame as soon as the previous one's output
// arrived) or paced at a fixed rate, measuring every frame's end-to-end latency (send -> its
// output). All sessions share a few gRPC connections and the gRPC callback threads: no thread
// per session.
#ifndef SLUICE_CLIENT_CLI_BENCH_RUNNER_H_
#define SLUICE_CLIENT_CLI_BENCH_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cli/latency_histogram.h"
#include "client/lib/streaming_client.h"

namespace sluice::client {

struct BenchProgress {
  int64_t outputs = 0;   // Outputs received so far, warm-up included.
  int64_t expected = 0;  // Outputs expected in all.
  int64_t errors = 0;
  absl::Duration elapsed;  // Since the first frame was sent.
};

struct BenchOptions {
  std::string model;
  int sessions = 1;
  int64_t frames = 1000;  // Measured frames per session.
  int64_t warmup = 0;     // Frames per session sent first and left out of the statistics.
  double rate = 0;        // Frames per second per session; 0 = ping-pong.
  absl::Duration open_timeout = absl::Seconds(10);
  // The whole run is cancelled after this; unfinished sessions count as errors.
  absl::Duration timeout = absl::Minutes(10);
  // When set, called about four times a second from the thread running RunBench.
  std::function<void(const BenchProgress&)> progress;
};

struct BenchResult {
  int sessions = 0;
  int64_t frames = 0;      // Measured outputs received, over all sessions.
  absl::Duration elapsed;  // First measured send to last measured output.
  double frames_per_s = 0;
  LatencyHistogram latency_ns;
  // Failed sessions (Open or stream status), Error responses, missing outputs.
  int64_t errors = 0;
  std::vector<std::string> error_samples;  // The first few error messages.
};

// Runs the benchmark. Errors: InvalidArgument for bad options; every failure of a session is
// counted in BenchResult::errors instead.
absl::StatusOr<BenchResult> RunBench(StreamingClient& client, const BenchOptions& options);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_BENCH_RUNNER_H_
