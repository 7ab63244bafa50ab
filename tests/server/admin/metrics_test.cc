#include "server/admin/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/common/status_matchers.h"

namespace sluice::server {
namespace {

using ::sluice::status_testing::StatusIs;
using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// The number of lines of `text` equal to `line`.
int CountLines(const std::string& text, const std::string& line) {
  int n = 0;
  for (absl::string_view l : absl::StrSplit(text, '\n')) n += (l == line) ? 1 : 0;
  return n;
}

bool HasLine(const std::string& text, const std::string& line) {
  return CountLines(text, line) > 0;
}

TEST(Histogram, BucketsAreInclusiveAndCumulative) {
  Histogram h({4.0, 1.0, 2.0, 2.0});  // Sorted and deduplicated.
  for (double v : {0.5, 1.0, 1.5, 4.0, 5.0}) h.Observe(v);
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_THAT(s.upper_bounds, ElementsAre(1.0, 2.0, 4.0));
  EXPECT_THAT(s.cumulative_counts, ElementsAre(2u, 3u, 4u, 5u));
  EXPECT_EQ(s.count, 5u);
  EXPECT_THAT(s.sum, DoubleEq(12.0));
  EXPECT_THAT(s.Mean(), DoubleEq(2.4));
}

TEST(Histogram, IgnoresNaNAndDropsNonFiniteBounds) {
  Histogram h({1.0, std::numeric_limits<double>::infinity(), std::nan("")});
  h.Observe(std::nan(""));
  h.Observe(std::numeric_limits<double>::infinity());
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_THAT(s.upper_bounds, ElementsAre(1.0));
  EXPECT_THAT(s.cumulative_counts, ElementsAre(0u, 1u));
  EXPECT_EQ(s.count, 1u);
}

TEST(Histogram, EmptyHasZeroMean) {
  Histogram h({1.0});
  EXPECT_EQ(h.Snapshot().count, 0u);
  EXPECT_EQ(h.Snapshot().Mean(), 0.0);
}

TEST(Histogram, ConcurrentObserveSumsCorrectly) {
  Histogram h(BatchSizeBuckets());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h] {
      // Small integers: every partial sum is exact in a double, so the total must be exact.
      for (int i = 0; i < kPerThread; ++i) h.Observe(static_cast<double>(1 + i % 8));
    });
  }
  for (std::thread& t : threads) t.join();
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kPerThread);
  // Each of 1..8 appears kThreads * kPerThread / 8 times; 1+2+...+8 = 36.
  EXPECT_EQ(s.sum, 36.0 * kThreads * kPerThread / 8);
  // le=1: value 1; le=2: 1,2; le=4: 1..4; le=8: 1..8.
  const uint64_t per_value = uint64_t{kThreads} * kPerThread / 8;
  EXPECT_EQ(s.cumulative_counts[0], per_value);
  EXPECT_EQ(s.cumulative_counts[1], 2 * per_value);
  EXPECT_EQ(s.cumulative_counts[2], 4 * per_value);
  EXPECT_EQ(s.cumulative_counts[3], 8 * per_value);
  EXPECT_EQ(s.cumulative_counts.back(), s.count);
}

TEST(Buckets, Layouts) {
  EXPECT_THAT(BatchSizeBuckets(), ElementsAre(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024));
  const std::vector<double> queue = QueueDelayBuckets();
  EXPECT_EQ(queue.front(), 1e-6);
  EXPECT_EQ(queue[1], 2.5e-6);
  EXPECT_EQ(queue.back(), 1.0);
  EXPECT_EQ(queue.size(), 19u);  // 1, 2.5, 5 per decade over 6 decades, then 1.
  const std::vector<double> latency = LatencyBuckets();
  EXPECT_EQ(latency.front(), 1e-6);
  EXPECT_EQ(latency.back(), 10.0);
  EXPECT_EQ(latency.size(), 22u);
}

TEST(Metrics, ForModelReturnsTheSameStablePointer) {
  Metrics metrics;
  ModelMetrics* kws = metrics.ForModel("kws");
  kws->frames_in.fetch_add(3);
  for (int i = 0; i < 1000; ++i) metrics.ForModel(absl::StrCat("model", i));
  EXPECT_EQ(metrics.ForModel("kws"), kws);
  EXPECT_EQ(kws->frames_in.load(), 3);
  EXPECT_NE(metrics.ForModel("other"), kws);
}

TEST(Metrics, StepSecondsIsPerBackendAndCached) {
  Metrics metrics;
  ModelMetrics* m = metrics.ForModel("kws");
  Histogram* cpu = m->StepSeconds("cpu");
  EXPECT_EQ(m->StepSeconds("cpu"), cpu);
  EXPECT_NE(m->StepSeconds("fpga"), cpu);
}

TEST(Metrics, ConcurrentCountersSumCorrectly) {
  Metrics metrics;
  ModelMetrics* m = metrics.ForModel("kws");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&metrics, m] {
      for (int i = 0; i < 10000; ++i) {
        m->frames_in.fetch_add(1, std::memory_order_relaxed);
        metrics.CountError(absl::StatusCode::kResourceExhausted);
        // Rendering concurrently with updates must be safe (TSan would flag a race).
        if (i % 2500 == 0) (void)metrics.RenderPrometheus();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(m->frames_in.load(), 40000);
  EXPECT_EQ(metrics.ErrorCount(absl::StatusCode::kResourceExhausted), 40000);
}

TEST(Metrics, RendersCountersGaugesAndHistograms) {
  Metrics metrics;
  ModelMetrics* m = metrics.ForModel("kws");
  m->sessions_active.store(2);
  m->sessions_total.store(7);
  m->frames_in.store(100);
  m->frames_out.store(98);
  m->fallbacks.store(1);
  m->sessions_migrated.store(2);
  m->batch_size.Observe(3);
  m->batch_size.Observe(1024);
  m->queue_delay_seconds.Observe(2e-6);
  m->frame_latency_seconds.Observe(0.5);
  m->StepSeconds("cpu")->Observe(0.001);

  const std::string text = metrics.RenderPrometheus();
  for (const char* line : {
           "# TYPE sluice_sessions_active gauge",
           R"(sluice_sessions_active{model="kws"} 2)",
           "# TYPE sluice_sessions_total counter",
           R"(sluice_sessions_total{model="kws"} 7)",
           "# TYPE sluice_frames_total counter",
           R"(sluice_frames_total{model="kws",direction="in"} 100)",
           R"(sluice_frames_total{model="kws",direction="out"} 98)",
           "# TYPE sluice_batch_size histogram",
           R"(sluice_batch_size_bucket{model="kws",le="1"} 0)",
           R"(sluice_batch_size_bucket{model="kws",le="2"} 0)",
           R"(sluice_batch_size_bucket{model="kws",le="4"} 1)",
           R"(sluice_batch_size_bucket{model="kws",le="512"} 1)",
           R"(sluice_batch_size_bucket{model="kws",le="1024"} 2)",
           R"(sluice_batch_size_bucket{model="kws",le="+Inf"} 2)",
           R"(sluice_batch_size_sum{model="kws"} 1027)",
           R"(sluice_batch_size_count{model="kws"} 2)",
           "# TYPE sluice_queue_delay_seconds histogram",
           R"(sluice_queue_delay_seconds_bucket{model="kws",le="1e-06"} 0)",
           R"(sluice_queue_delay_seconds_bucket{model="kws",le="2.5e-06"} 1)",
           R"(sluice_queue_delay_seconds_bucket{model="kws",le="0.0001"} 1)",
           R"(sluice_queue_delay_seconds_bucket{model="kws",le="0.00025"} 1)",
           R"(sluice_queue_delay_seconds_bucket{model="kws",le="1"} 1)",
           R"(sluice_queue_delay_seconds_count{model="kws"} 1)",
           "# TYPE sluice_step_seconds histogram",
           R"(sluice_step_seconds_bucket{model="kws",backend="cpu",le="0.001"} 1)",
           R"(sluice_step_seconds_bucket{model="kws",backend="cpu",le="+Inf"} 1)",
           R"(sluice_step_seconds_sum{model="kws",backend="cpu"} 0.001)",
           R"(sluice_step_seconds_count{model="kws",backend="cpu"} 1)",
           "# TYPE sluice_frame_latency_seconds histogram",
           R"(sluice_frame_latency_seconds_bucket{model="kws",le="0.25"} 0)",
           R"(sluice_frame_latency_seconds_bucket{model="kws",le="0.5"} 1)",
           R"(sluice_frame_latency_seconds_bucket{model="kws",le="10"} 1)",
           R"(sluice_frame_latency_seconds_sum{model="kws"} 0.5)",
           "# TYPE sluice_backend_fallbacks_total counter",
           R"(sluice_backend_fallbacks_total{model="kws"} 1)",
           "# TYPE sluice_sessions_migrated_total counter",
           R"(sluice_sessions_migrated_total{model="kws"} 2)",
           "# TYPE sluice_errors_total counter",
       }) {
    EXPECT_TRUE(HasLine(text, line)) << "missing line: " << line << "\nin:\n" << text;
  }
  // Exactly one HELP and one TYPE line per family.
  for (const char* family :
       {"sluice_sessions_active", "sluice_sessions_total", "sluice_frames_total",
        "sluice_batch_size", "sluice_queue_delay_seconds", "sluice_step_seconds",
        "sluice_frame_latency_seconds", "sluice_backend_fallbacks_total",
        "sluice_sessions_migrated_total", "sluice_errors_total"}) {
    int help = 0;
    int type = 0;
    for (absl::string_view l : absl::StrSplit(text, '\n')) {
      help += absl::StartsWith(l, absl::StrCat("# HELP ", family, " ")) ? 1 : 0;
      type += absl::StartsWith(l, absl::StrCat("# TYPE ", family, " ")) ? 1 : 0;
    }
    EXPECT_EQ(help, 1) << family;
    EXPECT_EQ(type, 1) << family;
  }
  EXPECT_TRUE(absl::EndsWith(text, "\n"));
}

TEST(Metrics, RendersModelsAndBackendsInNameOrderGroupedByFamily) {
  Metrics metrics;
  metrics.ForModel("zeta")->sessions_total.store(1);
  metrics.ForModel("alpha")->sessions_total.store(2);
  const std::string text = metrics.RenderPrometheus();
  const size_t alpha = text.find(R"(sluice_sessions_total{model="alpha"} 2)");
  const size_t zeta = text.find(R"(sluice_sessions_total{model="zeta"} 1)");
  const size_t next_family = text.find("# HELP sluice_frames_total");
  ASSERT_NE(alpha, std::string::npos);
  ASSERT_NE(zeta, std::string::npos);
  EXPECT_LT(alpha, zeta);
  EXPECT_LT(zeta, next_family);
}

TEST(Metrics, CountsErrorsByCode) {
  Metrics metrics;
  metrics.CountError(absl::StatusCode::kInvalidArgument);
  metrics.CountError(absl::StatusCode::kInvalidArgument);
  metrics.CountError(absl::StatusCode::kNotFound);
  metrics.CountError(absl::StatusCode::kOk);                // Ignored.
  metrics.CountError(static_cast<absl::StatusCode>(1234));  // Counted as UNKNOWN.
  EXPECT_EQ(metrics.ErrorCount(absl::StatusCode::kInvalidArgument), 2);
  EXPECT_EQ(metrics.ErrorCount(absl::StatusCode::kOk), 0);
  const std::string text = metrics.RenderPrometheus();
  EXPECT_TRUE(HasLine(text, R"(sluice_errors_total{code="INVALID_ARGUMENT"} 2)")) << text;
  EXPECT_TRUE(HasLine(text, R"(sluice_errors_total{code="NOT_FOUND"} 1)")) << text;
  EXPECT_TRUE(HasLine(text, R"(sluice_errors_total{code="UNKNOWN"} 1)")) << text;
  // Every non-OK code is present from the start, at zero.
  EXPECT_TRUE(HasLine(text, R"(sluice_errors_total{code="RESOURCE_EXHAUSTED"} 0)")) << text;
  EXPECT_TRUE(HasLine(text, R"(sluice_errors_total{code="UNAUTHENTICATED"} 0)")) << text;
  EXPECT_THAT(text, Not(HasSubstr(R"(code="OK")")));
}

TEST(Metrics, EscapesLabelValues) {
  Metrics metrics;
  ModelMetrics* m = metrics.ForModel("a\"b\\c\nd");
  m->sessions_total.store(1);
  m->StepSeconds("fp\"ga")->Observe(1.0);
  const std::string text = metrics.RenderPrometheus();
  EXPECT_TRUE(HasLine(text, R"(sluice_sessions_total{model="a\"b\\c\nd"} 1)")) << text;
  EXPECT_TRUE(HasLine(text, R"(sluice_step_seconds_count{model="a\"b\\c\nd",backend="fp\"ga"} 1)"))
      << text;
}

TEST(Metrics, SetGaugeRendersAndUpdates) {
  Metrics metrics;
  ASSERT_OK(metrics.SetGauge("sluice_ready", "Whether the server is ready.", 0));
  ASSERT_OK(metrics.SetGauge("sluice_ready", "Whether the server is ready.", 1));
  ASSERT_OK(metrics.SetGauge("sluice_degraded", "Back\\slash and\nnewline.", 0.5));
  const std::string text = metrics.RenderPrometheus();
  EXPECT_EQ(CountLines(text, "# HELP sluice_ready Whether the server is ready."), 1) << text;
  EXPECT_EQ(CountLines(text, "# TYPE sluice_ready gauge"), 1) << text;
  EXPECT_TRUE(HasLine(text, "sluice_ready 1")) << text;
  EXPECT_FALSE(HasLine(text, "sluice_ready 0")) << text;
  EXPECT_TRUE(HasLine(text, R"(# HELP sluice_degraded Back\\slash and\nnewline.)")) << text;
  EXPECT_TRUE(HasLine(text, "sluice_degraded 0.5")) << text;
}

TEST(Metrics, SetGaugeRejectsBadOrReservedNames) {
  Metrics metrics;
  EXPECT_THAT(metrics.SetGauge("", "h", 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(metrics.SetGauge("1abc", "h", 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(metrics.SetGauge("has space", "h", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has space")));
  EXPECT_THAT(metrics.SetGauge("sluice_sessions_active", "h", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("built-in")));
  EXPECT_THAT(metrics.SetGauge("sluice_batch_size_count", "h", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("built-in")));
  EXPECT_OK(metrics.SetGauge("ns:sub_metric2", "h", 1));
}

// Runs `promtool check metrics` on `text`; returns its exit status and fills `output`.
int RunPromtool(const std::string& text, std::string* output) {
  char path[] = "/tmp/sluice_metrics_test_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return -1;
  {
    std::ofstream out(path);
    out << text;
  }
  close(fd);
  const std::string cmd = absl::StrCat("promtool check metrics < ", path, " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  const int status = pclose(pipe);
  unlink(path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool PromtoolOnPath() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

TEST(Metrics, PromtoolAcceptsThePopulatedRegistry) {
  ASSERT_TRUE(PromtoolOnPath()) << "promtool is not on PATH: install the Debian package "
                                   "'prometheus' (apt-get install prometheus; scripts/setup.sh "
                                   "should list it) to check the exposition format";
  Metrics metrics;
  for (const char* model : {"kws", "denoise", "we\"ird\\name\n"}) {
    ModelMetrics* m = metrics.ForModel(model);
    m->sessions_active.fetch_add(1);
    m->sessions_total.fetch_add(3);
    m->frames_in.fetch_add(1000);
    m->frames_out.fetch_add(999);
    m->fallbacks.fetch_add(1);
    m->sessions_migrated.fetch_add(2);
    for (int i = 1; i <= 64; i *= 2) m->batch_size.Observe(i);
    m->queue_delay_seconds.Observe(3e-4);
    m->frame_latency_seconds.Observe(0.02);
    m->StepSeconds("cpu")->Observe(0.004);
    m->StepSeconds("fpga")->Observe(0.0007);
  }
  metrics.CountError(absl::StatusCode::kInvalidArgument);
  metrics.CountError(absl::StatusCode::kDeadlineExceeded);
  ASSERT_OK(metrics.SetGauge("sluice_ready", "1 when the server serves every model.", 1));
  ASSERT_OK(metrics.SetGauge("sluice_degraded", "1 when a device has failed over to CPU.", 0));

  const std::string text = metrics.RenderPrometheus();
  std::string output;
  EXPECT_EQ(RunPromtool(text, &output), 0) << "promtool check metrics said:\n"
                                           << output << "\non:\n"
                                           << text;
}

TEST(Metrics, PromtoolAcceptsTheEmptyRegistry) {
  ASSERT_TRUE(PromtoolOnPath()) << "promtool is not on PATH: install the Debian package "
                                   "'prometheus' (apt-get install prometheus; scripts/setup.sh "
                                   "should list it) to check the exposition format";
  Metrics metrics;
  const std::string text = metrics.RenderPrometheus();
  std::string output;
  EXPECT_EQ(RunPromtool(text, &output), 0) << "promtool check metrics said:\n"
                                           << output << "\non:\n"
                                           << text;
}

}  // namespace
}  // namespace sluice::server
