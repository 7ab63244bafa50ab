#include "client/cli/bench_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <queue>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/lib/frame_layout.h"
#include "client/lib/status_util.h"

namespace sluice::client {
namespace {

constexpr int kShards = 16;        // Histogram shards (by session index) to spread the locks.
constexpr int kRandomFrames = 64;  // Distinct random frames, reused round robin.
constexpr size_t kMaxErrorSamples = 8;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What all sessions share: the frames, the histogram shards, the error and progress counters.
// Thread-safety: thread-safe.
class Bench {
 public:
  explicit Bench(const BenchOptions& options) : options_(options) {}

  const BenchOptions& options() const { return options_; }

  // Called once before any frame is sent.
  void InitFrames(int64_t frame_size) {
    frame_size_ = frame_size;
    std::mt19937 rng(12345);
    std::uniform_real_distribution<float> uniform(-1.f, 1.f);
    frames_.resize(kRandomFrames * frame_size);
    for (float& v : frames_) v = uniform(rng);
  }
  int64_t frame_size() const { return frame_size_; }
  const float* Frame(int64_t seq) const {
    return frames_.data() + (seq % kRandomFrames) * frame_size_;
  }

  void RecordLatency(int session, int64_t nanos) {
    Shard& shard = shards_[session % kShards];
    absl::MutexLock lock(&shard.mu);
    shard.histogram.Record(nanos);
  }
  LatencyHistogram MergedLatency() {
    LatencyHistogram merged;
    for (Shard& shard : shards_) {
      absl::MutexLock lock(&shard.mu);
      merged.Merge(shard.histogram);
    }
    return merged;
  }

  void AddOutputs(int64_t n) { outputs_.fetch_add(n, std::memory_order_relaxed); }
  int64_t outputs() const { return outputs_.load(std::memory_order_relaxed); }

  void Error(std::string message) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++errors_;
    if (error_samples_.size() < kMaxErrorSamples) error_samples_.push_back(std::move(message));
  }
  int64_t errors() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return errors_;
  }
  std::vector<std::string> error_samples() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return error_samples_;
  }

  void SessionFinished() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++finished_;
  }
  // Waits up to `timeout` for `sessions` finished sessions.
  bool AwaitFinished(int sessions, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto all = [this, sessions]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_ >= sessions; };
    return mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
  }

  void set_cancelled() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  struct Shard {
    absl::Mutex mu;
    LatencyHistogram histogram ABSL_GUARDED_BY(mu);
  };

  const BenchOptions options_;
  int64_t frame_size_ = 0;
  std::vector<float> frames_;  // Written by InitFrames() only, before any send.
  Shard shards_[kShards];
  std::atomic<int64_t> outputs_{0};
  std::atomic<bool> cancelled_{false};

  mutable absl::Mutex mu_;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> error_samples_ ABSL_GUARDED_BY(mu_);
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
};

// One benchmark session: sends frames (from the starter / pacer thread or, ping-pong, from its
// own response callback) and times each frame's output.
// Thread-safety: thread-safe; callbacks arrive one at a time on gRPC threads.
class BenchSession {
 public:
  BenchSession(Bench& bench, int index) : bench_(bench), index_(index) {}

  // Creates the stream and opens the model; `frame_size` is the frame size every session must
  // have (0: not known yet). On failure the error is counted and false returned; the session then
  // takes no further part.
  bool Open(StreamingClient& client, int64_t frame_size) ABSL_LOCKS_EXCLUDED(mu_) {
    const BenchOptions& options = bench_.options();
    SessionOptions session_options;
    session_options.on_response = [this](const v1::StreamResponse& r) { OnResponse(r); };
    session_options.on_done = [this](const absl::Status& s) { OnDone(s); };
    session_ = client.NewSession(std::move(session_options));
    absl::StatusOr<v1::Opened> opened =
        session_->Open(options.model, absl::StrCat("bench-", index_), options.open_timeout);
    std::string error;
    {
      absl::MutexLock lock(&mu_);
      if (!opened.ok()) {
        error = absl::StrCat("Open: ", opened.status().ToString());
      } else if (ended_) {
        error = absl::StrCat("the stream ended right after Opened: ", early_status_.ToString());
      } else if (frame_size != 0 && FrameSize(opened->input()) != frame_size) {
        error = absl::StrCat("frame size ", FrameSize(opened->input()),
                             " differs from the first session's ", frame_size);
      }
      if (!error.empty()) {
        state_ = State::kNotRunning;
      } else {
        frame_size_ = FrameSize(opened->input());
        model_warmup_ = opened->warmup_frames();
        first_measured_seq_ = model_warmup_ + options.warmup;
        total_frames_ = first_measured_seq_ + options.frames;
        send_ns_.assign(total_frames_, 0);
        state_ = State::kRunning;
      }
    }
    if (!error.empty()) {
      bench_.Error(absl::StrCat("session ", index_, ": ", error));
      session_->Cancel();
      return false;
    }
    return true;
  }

  int64_t frame_size() const { return frame_size_; }

  // Ping-pong: sends the frames that complete no output (model warm-up) and the first one that
  // does; each output then sends the next frame.
  void StartPingPong() {
    for (int64_t i = 0; i <= model_warmup_; ++i) {
      if (!SendNext()) break;
    }
  }

  // Sends the next frame; Close()s after the last. False when there is nothing more to send.
  bool SendNext() ABSL_LOCKS_EXCLUDED(mu_) {
    int64_t seq;
    {
      absl::MutexLock lock(&mu_);
      if (state_ != State::kRunning || next_seq_ >= total_frames_) return false;
      seq = next_seq_++;
      send_ns_[seq] = NowNs();
      if (seq == first_measured_seq_) first_measured_send_ns_ = send_ns_[seq];
    }
    absl::Status status = session_->SendFrames(bench_.Frame(seq), 1);
    if (status.ok() && seq + 1 == total_frames_) status = session_->Close();
    if (!status.ok()) {
      StopWithError(absl::StrCat("session ", index_, ": send seq ", seq, ": ", status.ToString()));
      return false;
    }
    return seq + 1 < total_frames_;
  }

  void Cancel() {
    if (session_ != nullptr) session_->Cancel();
  }

  // Valid once the session finished.
  int64_t measured_outputs() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return measured_outputs_;
  }
  int64_t first_measured_send_ns() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return first_measured_send_ns_;
  }
  int64_t last_output_ns() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return last_output_ns_;
  }

 private:
  // kOpening -> kRunning (-> kStopped after a failed send), or kOpening -> kNotRunning. Only
  // sessions that reached kRunning count in Bench::SessionFinished().
  enum class State { kOpening, kRunning, kStopped, kNotRunning };

  void StopWithError(std::string message) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (state_ != State::kRunning) return;
      state_ = State::kStopped;
    }
    bench_.Error(std::move(message));
    session_->Cancel();
  }

  void OnResponse(const v1::StreamResponse& response) ABSL_LOCKS_EXCLUDED(mu_) {
    const int64_t now = NowNs();
    const bool ping_pong = bench_.options().rate <= 0;
    int64_t answered = 0;
    if (response.has_outputs()) {
      const v1::Outputs& outputs = response.outputs();
      const int64_t first = static_cast<int64_t>(outputs.first_seq());
      answered = outputs.count();
      absl::MutexLock lock(&mu_);
      if (first < model_warmup_ || first + answered > next_seq_) {
        bench_.Error(absl::StrCat("session ", index_, ": Outputs for seq ", first, " + ", answered,
                                  " of ", next_seq_, " frames sent"));
        answered = 0;
      } else {
        for (int64_t seq = first; seq < first + answered; ++seq) {
          if (seq < first_measured_seq_) continue;
          bench_.RecordLatency(index_, now - send_ns_[seq]);
          ++measured_outputs_;
          last_output_ns_ = now;
        }
        outputs_ += answered;
      }
      bench_.AddOutputs(answered);
    } else if (response.has_error()) {
      answered = 1;
      {
        absl::MutexLock lock(&mu_);
        ++frame_errors_;
      }
      bench_.Error(absl::StrCat("session ", index_, ": Error for seq ", response.error().seq(),
                                ": ", FromWireStatus(response.error().status()).ToString()));
    }
    if (ping_pong) {
      for (int64_t i = 0; i < answered; ++i) {
        if (!SendNext()) break;
      }
    }
  }

  void OnDone(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    int64_t missing = 0;
    bool stopped = false;
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      if (state_ == State::kOpening) {  // Open() reports it.
        early_status_ = status;
        return;
      }
      if (state_ == State::kNotRunning) return;  // Counted by Open().
      stopped = state_ == State::kStopped;       // Counted by StopWithError().
      missing = (total_frames_ - model_warmup_) - outputs_ - frame_errors_;
    }
    if (!stopped && !status.ok()) {
      bench_.Error(absl::StrCat("session ", index_, bench_.cancelled() ? " (timed out)" : "",
                                ": stream ended with ", status.ToString()));
    } else if (!stopped && missing > 0) {
      bench_.Error(absl::StrCat("session ", index_, ": the stream ended with ", missing,
                                " outputs missing"));
    }
    bench_.SessionFinished();
  }

  Bench& bench_;
  const int index_;

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kOpening;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status early_status_ ABSL_GUARDED_BY(mu_);
  int64_t frame_size_ = 0;                             // Set by Open() before any send.
  int64_t model_warmup_ = 0;                           // Set by Open() before any send.
  int64_t first_measured_seq_ = 0;                     // Set by Open() before any send.
  int64_t total_frames_ = 0;                           // Set by Open() before any send.
  std::vector<int64_t> send_ns_ ABSL_GUARDED_BY(mu_);  // By seq.
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t outputs_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t frame_errors_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t measured_outputs_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t first_measured_send_ns_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_output_ns_ ABSL_GUARDED_BY(mu_) = 0;

  // Last member, so it is destroyed (cancelled and waited for) before the state its callbacks use.
  std::unique_ptr<Session> session_;
};

// Rate mode: sends every running session's frames at `rate` per second each, staggered.
void Pace(std::vector<BenchSession*> sessions, double rate, const std::atomic<bool>& stop) {
  const int64_t period = static_cast<int64_t>(1e9 / rate);
  using Due = std::pair<int64_t, size_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> queue;
  std::mt19937_64 rng(777);
  const int64_t start = NowNs();
  for (size_t i = 0; i < sessions.size(); ++i) {
    queue.push({start + static_cast<int64_t>(rng() % std::max<int64_t>(period, 1)), i});
  }
  while (!queue.empty() && !stop.load(std::memory_order_relaxed)) {
    const auto [due, i] = queue.top();
    const int64_t wait = due - NowNs();
    if (wait > 0) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(wait, 20'000'000)));
      continue;
    }
    queue.pop();
    if (sessions[i]->SendNext()) queue.push({due + period, i});
  }
}

}  // namespace

absl::StatusOr<BenchResult> RunBench(StreamingClient& client, const BenchOptions& options) {
  if (options.model.empty()) return absl::InvalidArgumentError("a model name is required");
  if (options.sessions < 1) return absl::InvalidArgumentError("sessions must be at least 1");
  if (options.frames < 1) return absl::InvalidArgumentError("frames must be at least 1");
  if (options.warmup < 0) return absl::InvalidArgumentError("warmup must not be negative");
  if (options.rate < 0) return absl::InvalidArgumentError("rate must not be negative");

  Bench bench(options);
  std::vector<std::unique_ptr<BenchSession>> sessions;
  std::vector<BenchSession*> running;
  for (int i = 0; i < options.sessions; ++i) {
    sessions.push_back(std::make_unique<BenchSession>(bench, i));
    if (!sessions.back()->Open(client, bench.frame_size())) continue;
    if (running.empty()) bench.InitFrames(sessions.back()->frame_size());
    running.push_back(sessions.back().get());
  }

  const int64_t expected = static_cast<int64_t>(running.size()) * (options.warmup + options.frames);
  const absl::Time start = absl::Now();
  std::atomic<bool> stop_pacer{false};
  std::thread pacer;
  if (options.rate > 0) {
    pacer = std::thread(Pace, running, options.rate, std::cref(stop_pacer));
  } else {
    for (BenchSession* session : running) session->StartPingPong();
  }
  const int wanted = static_cast<int>(running.size());
  bool timed_out = false;
  while (!bench.AwaitFinished(wanted, absl::Milliseconds(250))) {
    if (options.progress) {
      options.progress(
          BenchProgress{bench.outputs(), expected, bench.errors(), absl::Now() - start});
    }
    if (!timed_out && absl::Now() - start > options.timeout) {
      timed_out = true;
      bench.set_cancelled();
      stop_pacer.store(true);
      for (BenchSession* session : running) session->Cancel();
    }
  }
  stop_pacer.store(true);
  if (pacer.joinable()) pacer.join();
  if (options.progress) {
    options.progress(BenchProgress{bench.outputs(), expected, bench.errors(), absl::Now() - start});
  }

  BenchResult result;
  result.sessions = options.sessions;
  int64_t first_send = std::numeric_limits<int64_t>::max();
  int64_t last_output = 0;
  for (BenchSession* session : running) {
    const int64_t measured = session->measured_outputs();
    result.frames += measured;
    if (measured > 0) {
      first_send = std::min(first_send, session->first_measured_send_ns());
      last_output = std::max(last_output, session->last_output_ns());
    }
  }
  if (result.frames > 0 && last_output > first_send) {
    result.elapsed = absl::Nanoseconds(last_output - first_send);
    result.frames_per_s =
        static_cast<double>(result.frames) / absl::ToDoubleSeconds(result.elapsed);
  }
  result.latency_ns = bench.MergedLatency();
  result.errors = bench.errors();
  result.error_samples = bench.error_samples();
  return result;
}

}  // namespace sluice::client
