// The Scheduler: one per loaded model instance. Its thread takes at most one queued entry
// from each ready session, runs the frames among them as one backend Step, and hands each
// session its output. Work-conserving: a batch goes as soon as the backend is idle, capped by
// max_batch; max_queue_delay_us optionally lets an idle backend wait to grow a small batch.
#ifndef SLUICE_SERVER_SCHEDULER_SCHEDULER_H_
#define SLUICE_SERVER_SCHEDULER_SCHEDULER_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/backend.h"
#include "server/session/session.h"

namespace sluice::server {

class Histogram;
class ModelMetrics;

struct SchedulerOptions {
  std::string model;
  int max_batch = 256;
  absl::Duration max_queue_delay = absl::ZeroDuration();
};

// Thread-safe. Owns its backend and the one thread that drives it.
class Scheduler {
 public:
  // `metrics` may be null; otherwise it must outlive the scheduler.
  Scheduler(SchedulerOptions options, std::unique_ptr<Backend> backend, ModelMetrics* metrics);
  ~Scheduler();  // Stops the thread.

  void Start();
  // Stops after the batch in flight. Sessions still queued are left as they are.
  void Stop();

  // Hands a runnable session to the scheduler (Session calls this; at most once at a time per
  // session, until the session's EndTurn returns false).
  void Enqueue(std::shared_ptr<Session> session);

  const streaming::Program& program() const { return backend_->program(); }
  std::string backend_name() const { return backend_->name(); }
  const SchedulerOptions& options() const { return options_; }

  // Totals for tests and logs.
  int64_t steps() const;
  int64_t frames() const;

 private:
  void Loop();
  // Runs one turn for `sessions`: control entries directly, frames as one Step.
  void RunTurn(std::vector<std::shared_ptr<Session>>& sessions);
  void ProcessControl(Session& session, SessionEntry& entry);

  const SchedulerOptions options_;
  const std::unique_ptr<Backend> backend_;
  ModelMetrics* const metrics_;
  Histogram* step_seconds_ = nullptr;

  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<Session>> ready_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t frames_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;

  // Scratch owned by the scheduler thread, sized for max_batch.
  std::vector<SessionEntry> entries_;
  std::vector<StepItem> items_;
  std::vector<Session*> item_sessions_;
  std::vector<SessionEntry*> item_entries_;
  std::vector<std::vector<float>> outputs_;
  std::vector<float*> output_ptrs_;
  std::vector<const float*> frame_outputs_;
  std::vector<uint8_t> ready_flags_;
  std::vector<std::vector<int64_t>> output_frame_shapes_;
  std::vector<int64_t> output_sizes_;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SCHEDULER_SCHEDULER_H_
