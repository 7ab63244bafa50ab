#include "server/admin/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sluice::server {
namespace {

// Exact powers of ten (10^n is exactly representable for n <= 22).
double PowerOfTen(int n) {
  double p = 1.0;
  for (int i = 0; i < n; ++i) p *= 10.0;
  return p;
}

// A sample value or an "le" bound as the text format wants it: the shortest string that parses
// back to the same double, or +Inf / -Inf / NaN. Fixed or exponent notation is chosen as Go's
// strconv.FormatFloat(v, 'g', -1, 64) does, which the Prometheus Go client uses, so "le" values
// read the same as other exporters' ("0.0001", "2.5e-05", "10", "1024").
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Shortest round-trip digits in exponent form, e.g. "-1.024e+03".
  const std::to_chars_result sci =
      std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  if (sci.ec != std::errc()) return absl::StrCat(v);  // Unreachable: 64 chars fit any double.
  const absl::string_view s(buf, static_cast<size_t>(sci.ptr - buf));
  const size_t e = s.find('e');
  int digits = 0;
  for (size_t i = 0; i < e; ++i) digits += (s[i] >= '0' && s[i] <= '9') ? 1 : 0;
  int exponent = 0;
  std::from_chars(buf + e + (s[e + 1] == '+' ? 2 : 1), sci.ptr, exponent);
  int eprec = 6;
  if (eprec > digits && digits >= exponent + 1) eprec = digits;
  if (exponent < -4 || exponent >= eprec) return std::string(s);
  const std::to_chars_result fixed =
      std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, fixed.ptr);
}

// Label values escape backslash, double quote and line feed.
std::string EscapeLabelValue(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// HELP text escapes backslash and line feed.
std::string EscapeHelp(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

// Family names, in rendering order.
constexpr absl::string_view kSessionsActive = "sluice_sessions_active";
constexpr absl::string_view kSessionsTotal = "sluice_sessions_total";
constexpr absl::string_view kFramesTotal = "sluice_frames_total";
constexpr absl::string_view kBatchSize = "sluice_batch_size";
constexpr absl::string_view kQueueDelay = "sluice_queue_delay_seconds";
constexpr absl::string_view kStepSeconds = "sluice_step_seconds";
constexpr absl::string_view kFrameLatency = "sluice_frame_latency_seconds";
constexpr absl::string_view kFallbacks = "sluice_backend_fallbacks_total";
constexpr absl::string_view kMigrated = "sluice_sessions_migrated_total";
constexpr absl::string_view kResumed = "sluice_sessions_resumed_total";
constexpr absl::string_view kErrors = "sluice_errors_total";

bool IsReservedName(absl::string_view name) {
  for (const absl::string_view family :
       {kSessionsActive, kSessionsTotal, kFramesTotal, kFallbacks, kMigrated, kResumed, kErrors}) {
    if (name == family) return true;
  }
  for (const absl::string_view family : {kBatchSize, kQueueDelay, kStepSeconds, kFrameLatency}) {
    for (const absl::string_view suffix : {"", "_bucket", "_sum", "_count"}) {
      if (name == absl::StrCat(family, suffix)) return true;
    }
  }
  return false;
}

void AppendHeader(std::string& out, absl::string_view name, absl::string_view help,
                  absl::string_view type) {
  absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(help), "\n# TYPE ", name, " ", type, "\n");
}

// `labels` is the already escaped label list without braces, e.g. `model="kws"`.
void AppendSample(std::string& out, absl::string_view name, absl::string_view labels,
                  absl::string_view value) {
  if (labels.empty()) {
    absl::StrAppend(&out, name, " ", value, "\n");
  } else {
    absl::StrAppend(&out, name, "{", labels, "} ", value, "\n");
  }
}

void AppendHistogram(std::string& out, absl::string_view name, absl::string_view labels,
                     const Histogram& h) {
  const HistogramSnapshot s = h.Snapshot();
  const std::string bucket = absl::StrCat(name, "_bucket");
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < s.upper_bounds.size(); ++i) {
    AppendSample(out, bucket,
                 absl::StrCat(labels, sep, "le=\"", FormatDouble(s.upper_bounds[i]), "\""),
                 absl::StrCat(s.cumulative_counts[i]));
  }
  AppendSample(out, bucket, absl::StrCat(labels, sep, "le=\"+Inf\""), absl::StrCat(s.count));
  AppendSample(out, absl::StrCat(name, "_sum"), labels, FormatDouble(s.sum));
  AppendSample(out, absl::StrCat(name, "_count"), labels, absl::StrCat(s.count));
}

std::string ModelLabel(const std::string& model) {
  return absl::StrCat("model=\"", EscapeLabelValue(model), "\"");
}

}  // namespace

double HistogramSnapshot::Mean() const {
  return count == 0 ? 0.0 : sum / static_cast<double>(count);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_([&] {
        std::vector<double> b = std::move(upper_bounds);
        b.erase(std::remove_if(b.begin(), b.end(), [](double v) { return !std::isfinite(v); }),
                b.end());
        std::sort(b.begin(), b.end());
        b.erase(std::unique(b.begin(), b.end()), b.end());
        return b;
      }()),
      bucket_counts_(std::make_unique<std::atomic<uint64_t>[]>(upper_bounds_.size() + 1)) {}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  // The first bound >= value: "le" buckets are inclusive. Past the end is the +Inf bucket.
  const size_t i = static_cast<size_t>(
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin());
  bucket_counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);  // A CAS loop on x86-64; lock-free.
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot s;
  s.upper_bounds = upper_bounds_;
  s.cumulative_counts.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    s.cumulative_counts[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  bounds.reserve(static_cast<size_t>(std::max(count, 0)));
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) bounds.push_back(v);
  return bounds;
}

std::vector<double> DecadeBuckets(double min, double max) {
  const int lo = static_cast<int>(std::lround(std::log10(min)));
  const int hi = static_cast<int>(std::lround(std::log10(max)));
  std::vector<double> bounds;
  for (int e = lo; e <= hi; ++e) {
    for (const double m : {1.0, 2.5, 5.0}) {
      if (e == hi && m > 1.0) break;
      // Divide by an exact power of ten so that 2.5e-06 is the double nearest to 2.5e-06.
      bounds.push_back(e < 0 ? m / PowerOfTen(-e) : m * PowerOfTen(e));
    }
  }
  return bounds;
}

std::vector<double> BatchSizeBuckets() { return ExponentialBuckets(1.0, 2.0, 11); }
std::vector<double> QueueDelayBuckets() { return DecadeBuckets(1e-6, 1.0); }
std::vector<double> LatencyBuckets() { return DecadeBuckets(1e-6, 10.0); }

ModelMetrics::ModelMetrics()
    : batch_size(BatchSizeBuckets()),
      queue_delay_seconds(QueueDelayBuckets()),
      frame_latency_seconds(LatencyBuckets()) {}

Histogram* ModelMetrics::StepSeconds(absl::string_view backend) {
  absl::MutexLock lock(&mu_);
  auto it = step_seconds_.find(backend);
  if (it == step_seconds_.end()) {
    it = step_seconds_.emplace(std::string(backend), std::make_unique<Histogram>(LatencyBuckets()))
             .first;
  }
  return it->second.get();
}

void ModelMetrics::ForEachStepSeconds(
    const std::function<void(const std::string&, const Histogram&)>& fn) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [backend, histogram] : step_seconds_) fn(backend, *histogram);
}

Metrics::Metrics() = default;

ModelMetrics* Metrics::ForModel(absl::string_view model) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it == models_.end()) {
    it = models_.emplace(std::string(model), std::make_unique<ModelMetrics>()).first;
  }
  return it->second.get();
}

void Metrics::CountError(absl::StatusCode code) {
  int i = static_cast<int>(code);
  if (i == 0) return;
  if (i < 0 || i >= kNumCodes) i = static_cast<int>(absl::StatusCode::kUnknown);
  errors_[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
}

int64_t Metrics::ErrorCount(absl::StatusCode code) const {
  const int i = static_cast<int>(code);
  if (i <= 0 || i >= kNumCodes) return 0;
  return errors_[static_cast<size_t>(i)].load(std::memory_order_relaxed);
}

absl::Status Metrics::SetGauge(absl::string_view name, absl::string_view help, double value) {
  if (!IsValidMetricName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid Prometheus metric name \"", name, "\""));
  }
  if (IsReservedName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gauge name \"", name, "\" collides with a built-in sluice metric"));
  }
  absl::MutexLock lock(&mu_);
  Gauge& gauge = gauges_[std::string(name)];
  gauge.help = std::string(help);
  gauge.value = value;
  return absl::OkStatus();
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  absl::MutexLock lock(&mu_);

  // Counters and gauges with one sample per model.
  const auto per_model = [&](absl::string_view name, absl::string_view help, absl::string_view type,
                             std::atomic<int64_t> ModelMetrics::*field) {
    AppendHeader(out, name, help, type);
    for (const auto& [model, m] : models_) {
      AppendSample(out, name, ModelLabel(model),
                   absl::StrCat(((*m).*field).load(std::memory_order_relaxed)));
    }
  };
  const auto per_model_histogram = [&](absl::string_view name, absl::string_view help,
                                       Histogram ModelMetrics::*field) {
    AppendHeader(out, name, help, "histogram");
    for (const auto& [model, m] : models_)
      AppendHistogram(out, name, ModelLabel(model), (*m).*field);
  };

  per_model(kSessionsActive, "Streaming sessions currently open.", "gauge",
            &ModelMetrics::sessions_active);
  per_model(kSessionsTotal, "Streaming sessions opened since the server started.", "counter",
            &ModelMetrics::sessions_total);

  AppendHeader(out, kFramesTotal,
               "Frames received from clients (direction=\"in\") and outputs sent to them "
               "(direction=\"out\").",
               "counter");
  for (const auto& [model, m] : models_) {
    const std::string label = ModelLabel(model);
    AppendSample(out, kFramesTotal, absl::StrCat(label, ",direction=\"in\""),
                 absl::StrCat(m->frames_in.load(std::memory_order_relaxed)));
    AppendSample(out, kFramesTotal, absl::StrCat(label, ",direction=\"out\""),
                 absl::StrCat(m->frames_out.load(std::memory_order_relaxed)));
  }

  per_model_histogram(kBatchSize, "Frames per backend step batch.", &ModelMetrics::batch_size);
  per_model_histogram(kQueueDelay, "Time a frame waited in the queue before its batch started.",
                      &ModelMetrics::queue_delay_seconds);

  AppendHeader(out, kStepSeconds, "Duration of one backend step (one batch), per backend.",
               "histogram");
  for (const auto& [model, m] : models_) {
    const std::string label = ModelLabel(model);
    m->ForEachStepSeconds([&](const std::string& backend, const Histogram& h) {
      AppendHistogram(out, kStepSeconds,
                      absl::StrCat(label, ",backend=\"", EscapeLabelValue(backend), "\""), h);
    });
  }

  per_model_histogram(kFrameLatency,
                      "Time from receiving a frame to writing its output to the client.",
                      &ModelMetrics::frame_latency_seconds);
  per_model(kFallbacks,
            "Device failures after which the model's sessions moved to the CPU backend.", "counter",
            &ModelMetrics::fallbacks);
  per_model(kMigrated, "Sessions whose state was moved to another backend.", "counter",
            &ModelMetrics::sessions_migrated);
  per_model(kResumed, "Sessions resumed on a new stream after their link dropped.", "counter",
            &ModelMetrics::sessions_resumed);

  AppendHeader(out, kErrors, "Errors returned to clients, by status code.", "counter");
  for (int i = 1; i < kNumCodes; ++i) {
    AppendSample(
        out, kErrors,
        absl::StrCat("code=\"", absl::StatusCodeToString(static_cast<absl::StatusCode>(i)), "\""),
        absl::StrCat(errors_[static_cast<size_t>(i)].load(std::memory_order_relaxed)));
  }

  for (const auto& [name, gauge] : gauges_) {
    AppendHeader(out, name, gauge.help, "gauge");
    AppendSample(out, name, "", FormatDouble(gauge.value));
  }
  return out;
}

}  // namespace sluice::server
