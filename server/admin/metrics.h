// Prometheus metrics for the server: per-model counters, gauges and histograms, errors by status
// code, and a few free-form server gauges, rendered in the text exposition format 0.0.4 for
// GET /metrics.
//
// Hot paths (per frame, per batch, from several threads) touch only atomics. Look a model's
// metrics up once per session or model instance with Metrics::ForModel() and keep the pointer:
//
//   ModelMetrics* m = metrics.ForModel("kws");               // once: takes a mutex
//   m->frames_in.fetch_add(1, std::memory_order_relaxed);    // per frame: lock-free
//   m->batch_size.Observe(batch.size());                     // per batch: lock-free
//   Histogram* step = m->StepSeconds("cpu");                 // once per instance: takes a mutex
//   step->Observe(elapsed_seconds);                          // per batch: lock-free
//
// Metric families (names, labels and types are a public contract: dashboards and alerts use them):
//   sluice_sessions_active{model}                 gauge      ModelMetrics::sessions_active
//   sluice_sessions_total{model}                  counter    ModelMetrics::sessions_total
//   sluice_frames_total{model,direction="in"}     counter    ModelMetrics::frames_in
//   sluice_frames_total{model,direction="out"}    counter    ModelMetrics::frames_out
//   sluice_batch_size{model}                      histogram  ModelMetrics::batch_size
//   sluice_queue_delay_seconds{model}             histogram  ModelMetrics::queue_delay_seconds
//   sluice_step_seconds{model,backend}            histogram  ModelMetrics::StepSeconds(backend)
//   sluice_frame_latency_seconds{model}           histogram  ModelMetrics::frame_latency_seconds
//   sluice_backend_fallbacks_total{model}         counter    ModelMetrics::fallbacks
//   sluice_sessions_migrated_total{model}         counter    ModelMetrics::sessions_migrated
//   sluice_sessions_resumed_total{model}          counter    ModelMetrics::sessions_resumed
//   sluice_errors_total{code}                     counter    Metrics::CountError()
//   <name> (no labels)                            gauge      Metrics::SetGauge()
#ifndef SLUICE_SERVER_ADMIN_METRICS_H_
#define SLUICE_SERVER_ADMIN_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace sluice::server {

// A point-in-time copy of a Histogram's counts.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;  // ascending and finite; the +Inf bucket is implicit
  // upper_bounds.size() + 1 entries: [i] counts observations <= upper_bounds[i], and the last entry
  // (the +Inf bucket) counts every observation, so it equals `count`.
  std::vector<uint64_t> cumulative_counts;
  uint64_t count = 0;
  double sum = 0.0;

  // sum / count, or 0 when there are no observations.
  double Mean() const;
};

// Counts observations into buckets with fixed upper bounds. Thread-safe: Observe() is lock-free
// (atomic bucket counts, and the sum is an atomic double updated by compare-and-swap) and may race
// with Snapshot().
class Histogram {
 public:
  // `upper_bounds` are the inclusive upper bounds ("le") of the finite buckets; they are sorted and
  // duplicates and non-finite values are dropped. An implicit +Inf bucket holds everything above.
  explicit Histogram(std::vector<double> upper_bounds);

  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records one observation. A NaN is ignored (it would turn the sum into NaN for good).
  void Observe(double value);

  // Observations that are concurrent with the call may be partly included: count is the sum of
  // the bucket counts read (so the +Inf bucket always equals count), and sum may lead or lag it by
  // those observations.
  HistogramSnapshot Snapshot() const;

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

 private:
  const std::vector<double> upper_bounds_;
  // upper_bounds_.size() + 1 per-bucket (not cumulative) counts; the last one is the +Inf bucket.
  const std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0.0};
};

// Bucket layouts used by ModelMetrics.
// `count` bounds start, start*factor, start*factor^2, ... (start > 0, factor > 1).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// 1, 2.5, 5 per decade from `min` up to and including `max` (both powers of ten, min < max).
std::vector<double> DecadeBuckets(double min, double max);
// Frames per batch: 1, 2, 4, ..., 1024.
std::vector<double> BatchSizeBuckets();
// Time a frame waits in the queue before its batch starts: 1 us .. 1 s.
std::vector<double> QueueDelayBuckets();
// Backend::Step() time and end-to-end frame latency: 1 us .. 10 s.
std::vector<double> LatencyBuckets();

// One model's metrics (see the table at the top of this file). Thread-safe: the atomics and
// histograms may be updated from any thread without a lock; use std::memory_order_relaxed (they are
// statistics, nothing synchronizes on them). StepSeconds() takes a mutex. Metrics::ForModel() owns
// every ModelMetrics and keeps it at a stable address for the Metrics object's lifetime.
class ModelMetrics {
 public:
  ModelMetrics();

  ModelMetrics(const ModelMetrics&) = delete;
  ModelMetrics& operator=(const ModelMetrics&) = delete;

  std::atomic<int64_t> sessions_active{0};  // gauge: open sessions now (add on open, sub on close)
  std::atomic<int64_t> sessions_total{0};   // sessions ever opened
  std::atomic<int64_t> frames_in{0};        // frames received from clients
  std::atomic<int64_t> frames_out{0};       // outputs sent to clients
  std::atomic<int64_t> fallbacks{0};        // device -> CPU backend fallbacks
  std::atomic<int64_t> sessions_migrated{0};  // sessions whose state moved to another backend
  std::atomic<int64_t> sessions_resumed{0};   // detached sessions resumed on a new stream

  Histogram batch_size;             // frames per Backend::Step() batch
  Histogram queue_delay_seconds;    // enqueue -> batch start, per frame
  Histogram frame_latency_seconds;  // frame received -> its output written, per frame

  // The Backend::Step() duration histogram for `backend` (a label value such as "cpu" or
  // "fpga"), created on first use. Takes a mutex: look it up once per model instance and keep the
  // pointer, which stays valid as long as this ModelMetrics.
  Histogram* StepSeconds(absl::string_view backend) ABSL_LOCKS_EXCLUDED(mu_);

  // Calls `fn(backend, histogram)` for each backend in name order, under the mutex (so `fn` must
  // not call StepSeconds()).
  void ForEachStepSeconds(const std::function<void(const std::string&, const Histogram&)>& fn) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Histogram>, std::less<>> step_seconds_ ABSL_GUARDED_BY(mu_);
};

// The server's metrics registry. Thread-safe: every method may be called concurrently.
// ForModel() and SetGauge() take a mutex; CountError() is lock-free; RenderPrometheus() holds the
// mutex only to walk the model list, never across a hot-path update (those are lock-free).
class Metrics {
 public:
  Metrics();

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The metrics of `model`, created (all zero) on first use. Never null. The pointer stays valid
  // until this Metrics is destroyed: models are never removed, so a reloaded or unloaded model
  // keeps its series.
  ModelMetrics* ForModel(absl::string_view model) ABSL_LOCKS_EXCLUDED(mu_);

  // Adds one to sluice_errors_total{code="<absl::StatusCodeToString(code)>"}. kOk is ignored; a
  // value outside absl's canonical codes counts as UNKNOWN. Lock-free.
  void CountError(absl::StatusCode code);
  // The current count for `code` (0 for kOk).
  int64_t ErrorCount(absl::StatusCode code) const;

  // Sets the label-less gauge `name` (e.g. "sluice_ready") to `value`, creating it with `help` on
  // first use; a later call with a different `help` replaces it. InvalidArgumentError if `name` is
  // not a valid Prometheus metric name or collides with one of the built-in families above
  // (including their _bucket/_sum/_count series).
  absl::Status SetGauge(absl::string_view name, absl::string_view help, double value)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Every family in the text exposition format 0.0.4 (the body of GET /metrics, served as
  // "text/plain; version=0.0.4"): one # HELP and # TYPE line per family, families in a fixed
  // order, models and backends sorted by name, label values escaped. Error counts are rendered for
  // every non-OK code, zeros included, so rates start from a known 0.
  std::string RenderPrometheus() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Gauge {
    std::string help;
    double value = 0.0;
  };

  // absl::StatusCode values 0 (kOk) .. 16 (kUnauthenticated); index = code.
  static constexpr int kNumCodes = 17;
  std::array<std::atomic<int64_t>, kNumCodes> errors_{};

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ModelMetrics>, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Gauge, std::less<>> gauges_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_ADMIN_METRICS_H_
