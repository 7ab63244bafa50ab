#include "client/cli/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sluice::client {
namespace {

constexpr int kSubBits = 8;
constexpr int64_t kSub = int64_t{1} << kSubBits;  // Linear buckets below kSub, exact.
constexpr int64_t kHalf = kSub / 2;               // Sub-buckets per power of two above.
constexpr int kMaxBits = 40;                      // Clamp at 2^40 ns (~18 min).
constexpr int64_t kMaxValue = (int64_t{1} << kMaxBits) - 1;
constexpr int kBuckets = kSub + (kMaxBits - kSubBits) * kHalf;

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

int LatencyHistogram::BucketOf(int64_t nanos) {
  const uint64_t v = static_cast<uint64_t>(std::clamp<int64_t>(nanos, 0, kMaxValue));
  if (v < static_cast<uint64_t>(kSub)) return static_cast<int>(v);
  const int msb = std::bit_width(v) - 1;   // >= kSubBits
  const int shift = msb - (kSubBits - 1);  // v >> shift is in [kHalf, kSub)
  return static_cast<int>(kSub + (shift - 1) * kHalf + ((v >> shift) - kHalf));
}

int64_t LatencyHistogram::BucketMid(int bucket) {
  if (bucket < kSub) return bucket;
  const int64_t above = bucket - kSub;
  const int shift = static_cast<int>(above / kHalf) + 1;
  const int64_t lower = (above % kHalf + kHalf) << shift;
  return lower + ((int64_t{1} << shift) >> 1);
}

void LatencyHistogram::Record(int64_t nanos) {
  nanos = std::clamp<int64_t>(nanos, 0, kMaxValue);
  ++counts_[BucketOf(nanos)];
  if (count_ == 0 || nanos < min_) min_ = nanos;
  if (nanos > max_) max_ = nanos;
  ++count_;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
}

int64_t LatencyHistogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q * count_)));
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketMid(i), min_, max_);
  }
  return max_;
}

}  // namespace sluice::client
