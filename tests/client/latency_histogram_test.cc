#include "client/cli/latency_histogram.h"

#include <gtest/gtest.h>

#include <cmath>

namespace sluice::client {
namespace {

TEST(LatencyHistogram, EmptyIsZero) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.count(), 0);
  EXPECT_EQ(histogram.Percentile(0.5), 0);
  EXPECT_EQ(histogram.max(), 0);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram histogram;
  for (int v = 1; v <= 100; ++v) histogram.Record(v);
  EXPECT_EQ(histogram.Percentile(0.5), 50);
  EXPECT_EQ(histogram.Percentile(0.99), 99);
  EXPECT_EQ(histogram.Percentile(1.0), 100);
  EXPECT_EQ(histogram.min(), 1);
  EXPECT_EQ(histogram.max(), 100);
}

TEST(LatencyHistogram, LargeValuesWithinOnePercent) {
  LatencyHistogram histogram;
  for (int i = 1; i <= 10000; ++i) histogram.Record(int64_t{1000} * i);  // 1 us .. 10 ms.
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double want = 1000.0 * std::ceil(q * 10000);
    EXPECT_NEAR(static_cast<double>(histogram.Percentile(q)), want, want * 0.01) << q;
  }
  EXPECT_EQ(histogram.max(), 10'000'000);
}

TEST(LatencyHistogram, MergeAddsCountsAndExtremes) {
  LatencyHistogram a;
  LatencyHistogram b;
  a.Record(5'000);
  b.Record(7);
  b.Record(1'000'000'000);
  a.Merge(b);
  EXPECT_EQ(a.count(), 3);
  EXPECT_EQ(a.min(), 7);
  EXPECT_EQ(a.max(), 1'000'000'000);
  EXPECT_NEAR(static_cast<double>(a.Percentile(0.5)), 5000, 50);
}

TEST(LatencyHistogram, OutOfRangeValuesAreClamped) {
  LatencyHistogram histogram;
  histogram.Record(-5);
  histogram.Record(int64_t{1} << 50);
  EXPECT_EQ(histogram.min(), 0);
  EXPECT_EQ(histogram.max(), (int64_t{1} << 40) - 1);
}

}  // namespace
}  // namespace sluice::client
