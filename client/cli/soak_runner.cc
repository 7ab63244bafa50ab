#include "client/cli/soak_runner.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cli/chaos_proxy.h"
#include "client/cli/soak_reference.h"
#include "client/cli/soak_session.h"

namespace sluice::client {
namespace {

constexpr size_t kMaxSamples = 10;
// Sessions with a connection of their own through the chaos proxy, so it can be reset: 1 in 8.
constexpr uint64_t kOwnConnectionEvery = 8;

// The sessions one thread drives, with their reference models and counts.
class Worker {
 public:
  explicit Worker(const SoakContext& context) : context_(context) {}

  absl::Status AddSession(int index, const std::string& model,
                          const std::shared_ptr<const streaming::Program>& program, int route) {
    std::unique_ptr<ReferenceModel>& reference = references_[model];
    if (reference == nullptr) {
      absl::StatusOr<std::unique_ptr<ReferenceModel>> created = ReferenceModel::Create(program);
      if (!created.ok()) return created.status();
      reference = *std::move(created);
    }
    sessions_.push_back(
        std::make_unique<SoakSession>(context_, index, model, reference.get(), &tally_, route));
    return absl::OkStatus();
  }

  // Polls every session until all have finished, or ends them once `stop` is set.
  void Run(const std::atomic<bool>& stop) {
    while (true) {
      if (stop.load()) {
        for (auto& session : sessions_) {
          session->Abort(absl::DeadlineExceededError("the soak timed out"));
        }
        return;
      }
      bool progress = false;
      bool finished = true;
      for (auto& session : sessions_) {
        progress |= session->Poll();
        finished &= session->finished();
      }
      if (finished) return;
      if (!progress) absl::SleepFor(absl::Microseconds(500));
    }
  }

  const SoakTally& tally() const { return tally_; }

 private:
  const SoakContext context_;
  SoakTally tally_;
  std::map<std::string, std::unique_ptr<ReferenceModel>> references_;
  // After references_: sessions free their reference slots when destroyed.
  std::vector<std::unique_ptr<SoakSession>> sessions_;
};

SoakCounts Total(const std::vector<std::unique_ptr<Worker>>& workers) {
  SoakCounts total;
  for (const auto& worker : workers) total.Add(worker->tally().counts());
  return total;
}

// Each session through the proxy holds a few descriptors; raise the soft limit to the hard one.
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

void SoakCounts::Add(const SoakCounts& other) {
  frames_sent += other.frames_sent;
  frames_resent += other.frames_resent;
  frames_abandoned += other.frames_abandoned;
  outputs_verified += other.outputs_verified;
  outputs_mismatched += other.outputs_mismatched;
  outputs_lost += other.outputs_lost;
  outputs_duplicated += other.outputs_duplicated;
  outputs_reordered += other.outputs_reordered;
  outputs_unexpected += other.outputs_unexpected;
  sessions_opened += other.sessions_opened;
  sessions_resumed += other.sessions_resumed;
  sessions_restarted += other.sessions_restarted;
  sessions_completed += other.sessions_completed;
  sessions_failed += other.sessions_failed;
  disconnects += other.disconnects;
  connection_resets += other.connection_resets;
  stalls += other.stalls;
  bursts += other.bursts;
  resume_retries += other.resume_retries;
  resume_ms_max = std::max(resume_ms_max, other.resume_ms_max);
  sessions_drained += other.sessions_drained;
  sessions_refused += other.sessions_refused;
  opens_cancelled += other.opens_cancelled;
  frames_answered += other.frames_answered;
  frames_unanswered += other.frames_unanswered;
  frames_refused += other.frames_refused;
  drain_violations += other.drain_violations;
  for (const auto& [code, n] : other.errors) errors[code] += n;
}

int64_t SoakCounts::error_count() const {
  int64_t n = 0;
  for (const auto& [code, count] : errors) n += count;
  return n;
}

bool SoakResult::ok(const SoakOptions& options) const {
  const bool outputs_ok = counts.outputs_mismatched == 0 && counts.outputs_lost == 0 &&
                          counts.outputs_duplicated == 0 && counts.outputs_reordered == 0 &&
                          counts.outputs_unexpected == 0 && counts.error_count() == 0;
  if (!options.expect_drain) return outputs_ok && counts.sessions_completed == options.sessions;
  // A drained session ends refused, so every session either completed or was refused.
  return outputs_ok && counts.drain_violations == 0 && counts.sessions_drained > 0 &&
         counts.sessions_completed + counts.sessions_refused == options.sessions;
}

absl::StatusOr<SoakResult> RunSoak(StreamingClient& client, const SoakOptions& options) {
  if (options.repository.empty()) {
    return absl::InvalidArgumentError("a model repository is required");
  }
  if (options.models.empty()) return absl::InvalidArgumentError("at least one model is required");
  if (options.sessions < 1) return absl::InvalidArgumentError("sessions must be at least 1");
  if (options.frames < 1) return absl::InvalidArgumentError("frames must be at least 1");
  if (options.workers < 1) return absl::InvalidArgumentError("workers must be at least 1");
  if (options.chaos && options.expect_drain) {
    // A stream dropped by chaos when the drain begins cannot resume (the draining server refuses
    // it), and the frames it had in flight are beyond what the drain rule can account for.
    return absl::InvalidArgumentError("expect_drain does not combine with chaos");
  }

  std::map<std::string, std::shared_ptr<const streaming::Program>> programs;
  for (const std::string& model : options.models) {
    if (programs.contains(model)) continue;
    absl::StatusOr<std::shared_ptr<const streaming::Program>> program =
        LoadRepositoryProgram(options.repository, model);
    if (!program.ok()) return program.status();
    programs[model] = *std::move(program);
  }
  std::unique_ptr<ChaosProxy> proxy;
  if (options.chaos) {
    absl::StatusOr<std::unique_ptr<ChaosProxy>> created = ChaosProxy::Create(options.server);
    if (!created.ok()) return created.status();
    proxy = *std::move(created);
    RaiseFileLimit();
  }
  const SoakContext context{&options, &client, proxy.get()};

  // Declared after the proxy: sessions go before the connections they run through.
  std::vector<std::unique_ptr<Worker>> workers;
  const int worker_count = std::min(options.workers, options.sessions);
  for (int w = 0; w < worker_count; ++w) workers.push_back(std::make_unique<Worker>(context));
  for (int i = 0; i < options.sessions; ++i) {
    const std::string& model = options.models[i % options.models.size()];
    int route = -1;
    if (proxy != nullptr && (options.seed + static_cast<uint64_t>(i)) % kOwnConnectionEvery == 0) {
      absl::StatusOr<int> port = proxy->AddRoute();
      if (!port.ok()) return port.status();
      route = *port;
    }
    if (absl::Status status =
            workers[i % worker_count]->AddSession(i, model, programs[model], route);
        !status.ok()) {
      return status;
    }
  }

  const absl::Time start = absl::Now();
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  int running = worker_count;  // Guarded by mu.
  std::vector<std::thread> threads;
  for (auto& worker : workers) {
    threads.emplace_back([&, w = worker.get()] {
      w->Run(stop);
      absl::MutexLock lock(&mu);
      --running;
    });
  }
  auto all_done = [&running]() { return running == 0; };
  absl::Time next_progress = start + options.progress_interval;
  while (true) {
    const absl::Time deadline =
        stop.load() ? next_progress : std::min(next_progress, start + options.timeout);
    {
      absl::MutexLock lock(&mu);
      if (mu.AwaitWithDeadline(absl::Condition(&all_done), deadline)) break;
    }
    const absl::Time now = absl::Now();
    if (now >= start + options.timeout) stop.store(true);
    if (now >= next_progress) {
      next_progress += options.progress_interval;
      if (options.progress) options.progress(Total(workers), now - start);
    }
  }
  const absl::Duration elapsed = absl::Now() - start;
  for (std::thread& thread : threads) thread.join();

  SoakResult result;
  result.counts = Total(workers);
  result.elapsed = elapsed;
  if (elapsed > absl::ZeroDuration()) {
    const double seconds = absl::ToDoubleSeconds(elapsed);
    result.frames_per_s = static_cast<double>(result.counts.frames_sent) / seconds;
    result.outputs_per_s = static_cast<double>(result.counts.outputs_verified) / seconds;
  }
  for (const auto& worker : workers) {
    for (std::string& line : worker->tally().samples()) {
      if (result.samples.size() < kMaxSamples) result.samples.push_back(std::move(line));
    }
  }
  return result;
}

}  // namespace sluice::client
