// LatencyHistogram: a log-linear histogram of durations in nanoseconds (HDR-style: 256 linear
// sub-buckets per power of two, so any reported percentile is within 0.8% of a recorded value),
// with the exact minimum and maximum. Fixed memory (~36 KB) whatever the sample count.
#ifndef SLUICE_CLIENT_CLI_LATENCY_HISTOGRAM_H_
#define SLUICE_CLIENT_CLI_LATENCY_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace sluice::client {

// Thread-safety: not thread-safe; give each thread its own or guard it, then Merge().
class LatencyHistogram {
 public:
  LatencyHistogram();

  // Records one duration; negative values count as 0, values beyond ~18 minutes are clamped.
  void Record(int64_t nanos);
  void Merge(const LatencyHistogram& other);

  int64_t count() const { return count_; }
  // 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  // The value at quantile q in [0, 1] (0.5 = median, 0.999 = p99.9) in nanoseconds: the midpoint
  // of the bucket holding the ceil(q * count)-th smallest sample, clamped to [min, max]. 0 when
  // empty.
  int64_t Percentile(double q) const;

 private:
  static int BucketOf(int64_t nanos);
  static int64_t BucketMid(int bucket);

  std::vector<int64_t> counts_;
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
};

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_LATENCY_HISTOGRAM_H_
