// RunBench (sluice-client bench) in-process against the fake "double" model (warm-up 2).
#include "client/cli/bench_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/client/fake_streaming_service.h"
#include "tests/common/status_matchers.h"

namespace sluice::client {
namespace {

using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

TEST(BenchRunner, PingPongMeasuresEveryFrame) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  BenchOptions options;
  options.model = "double";
  options.sessions = 8;
  options.frames = 40;
  options.warmup = 5;
  int progress_calls = 0;
  options.progress = [&](const BenchProgress&) { ++progress_calls; };
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(*client, options));
  EXPECT_EQ(result.errors, 0) << (result.error_samples.empty() ? "" : result.error_samples[0]);
  EXPECT_EQ(result.frames, 8 * 40);
  EXPECT_EQ(result.latency_ns.count(), 8 * 40);
  EXPECT_GT(result.frames_per_s, 0);
  EXPECT_GT(result.latency_ns.Percentile(0.5), 0);
  EXPECT_GE(progress_calls, 1);
}

TEST(BenchRunner, PacedSessions) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  BenchOptions options;
  options.model = "double";
  options.sessions = 4;
  options.frames = 50;
  options.rate = 1000;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(*client, options));
  EXPECT_EQ(result.errors, 0) << (result.error_samples.empty() ? "" : result.error_samples[0]);
  EXPECT_EQ(result.frames, 4 * 50);
  // 52 frames per session at 1000/s take about 50 ms.
  EXPECT_GE(absl::ToDoubleSeconds(result.elapsed), 0.03);
}

TEST(BenchRunner, FailedOpensAreCountedAsErrors) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  BenchOptions options;
  options.model = "nope";
  options.sessions = 3;
  options.frames = 10;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(*client, options));
  EXPECT_EQ(result.errors, 3);
  EXPECT_EQ(result.frames, 0);
  ASSERT_FALSE(result.error_samples.empty());
  EXPECT_THAT(result.error_samples[0], HasSubstr("NOT_FOUND"));
}

TEST(BenchRunner, StreamErrorsAreCounted) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  BenchOptions options;
  options.model = "full";
  options.sessions = 2;
  ASSERT_OK_AND_ASSIGN(BenchResult result, RunBench(*client, options));
  EXPECT_EQ(result.errors, 2);
  options.model = "";
  EXPECT_THAT(RunBench(*client, options), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sluice::client
