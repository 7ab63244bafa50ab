// The Scheduler: one per loaded model instance. Its thread takes at most one queued entry
// from each ready session, runs the frames among them as one backend Step, and hands each
// session its output. Work-conserving: a batch goes as soon as the backend is idle, capped by
// max_batch; max_queue_delay_us optionally lets an idle backend wait to grow a small batch
// (until every session holding a slot here is ready, at most that long).
// When the backend is idle and nobody else waits, the thread that delivered a frame may run
// that one-session turn itself (Enqueue's `may_step_here`), saving the hand-off.
#ifndef SLUICE_SERVER_SCHEDULER_SCHEDULER_H_
#define SLUICE_SERVER_SCHEDULER_SCHEDULER_H_

#include <deque>
#include <functional>
#include <map>
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
  // Makes the CPU backend that sessions move to when the primary backend fails a step. Unset
  // when the primary is the CPU: a failed step then ends the sessions of that batch.
  std::function<absl::StatusOr<std::unique_ptr<Backend>>()> make_fallback;
  // With a fallback: every this many frames a session's state is copied to the host, and the
  // frames since are kept, so its exact state can be rebuilt on the CPU after a device fault.
  int snapshot_interval_frames = 64;
  // Lets Enqueue(..., may_step_here=true) run a lone session's turn on the calling thread (see
  // Enqueue). It saves the scheduler thread's wake-up, which cost more than a cnn_tiny step on a
  // loaded 2-vCPU VM (docs/BENCHMARKS.md).
  bool step_on_caller_when_idle = true;
};

// Thread-safe. Owns its backend and the thread that drives it. One turn runs at a time: the
// scheduler thread's, or a caller's (see Enqueue); whoever runs it holds the stepping token and
// is the backend's only caller meanwhile.
class Scheduler {
 public:
  // `backend` is loaded with `program`. `metrics` may be null; otherwise it must outlive the
  // scheduler.
  Scheduler(SchedulerOptions options, std::shared_ptr<const streaming::Program> program,
            std::unique_ptr<Backend> backend, ModelMetrics* metrics);
  ~Scheduler();  // Stops the thread.

  void Start();
  // Stops after the turn in flight (the thread's or a caller's). Sessions still queued are left
  // as they are.
  void Stop();

  // Hands a runnable session to the scheduler (Session calls this; at most once at a time per
  // session, until the session's EndTurn returns false). With `may_step_here` the caller holds
  // no lock and accepts running one turn of this session itself, backend step included, when
  // the scheduler is started, the backend idle, no other session ready, and the last turn
  // stepped one frame of this same session: a session streaming alone (with a max_queue_delay,
  // also the only one holding a slot here, as the delay would not make it wait). Otherwise the
  // session queues for the scheduler thread: with several sessions active, batching their
  // frames is worth more than the saved hand-off (stepping every lone arrival inline at 64
  // sessions shrank the mean batch from 24 to 3, and to 10 when only "one frame last turn" was
  // asked).
  void Enqueue(std::shared_ptr<Session> session, bool may_step_here = false);

  const streaming::Program& program() const { return *program_; }
  std::string backend_name() const;
  // Empty while on the primary backend; why it fell back to the CPU otherwise.
  std::string degraded_reason() const;
  const SchedulerOptions& options() const { return options_; }

  // Totals for tests and logs.
  int64_t steps() const;
  int64_t frames() const;

 private:
  void Loop();
  // With the stepping token: runs one turn for turn_ (control entries directly, frames as one
  // Step), puts the sessions with more work at the back of ready_ (round robin across
  // sessions), and gives the token back.
  void RunTurnAndRelease() ABSL_LOCKS_EXCLUDED(mu_);
  // Returns the frames stepped (0 when none, or when the step failed).
  int64_t RunTurn();
  void ProcessControl(Session& session, SessionEntry& entry);
  void AddLiveSlots(int64_t delta) ABSL_LOCKS_EXCLUDED(mu_);
  // Frees the session's state slot on the backend (and its shadow), and counts it as gone.
  void FreeSessionSlot(Session& session) ABSL_LOCKS_EXCLUDED(mu_);
  // Steps items_ on backend_; on a primary-backend failure, falls back to the CPU and retries.
  absl::Status StepWithFallback();
  // Moves every session's state to a new CPU backend (snapshot + replay) and makes it primary.
  absl::Status FallBack(const absl::Status& cause);
  // Records the frames just stepped in each session's host-side shadow.
  void UpdateShadows();

  // What the host keeps per session to rebuild its state exactly: the state at the last
  // snapshot (empty = the initial state) and every frame stepped since.
  struct Shadow {
    Session* session = nullptr;  // Valid while the slot is allocated (the session holds it).
    std::vector<uint8_t> snapshot;
    std::vector<std::vector<float>> frames;
  };

  const SchedulerOptions options_;
  const std::shared_ptr<const streaming::Program> program_;
  // Used only by the holder of the stepping token (replaced on fallback), as are shadowing_,
  // shadows_, step_seconds_ and the scratch at the end.
  std::unique_ptr<Backend> backend_;
  ModelMetrics* const metrics_;
  bool shadowing_ = false;
  std::map<SlotId, Shadow> shadows_;

  Histogram* step_seconds_ = nullptr;

  mutable absl::Mutex mu_;
  std::string backend_name_ ABSL_GUARDED_BY(mu_);
  std::string degraded_reason_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Session>> ready_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stepping_ ABSL_GUARDED_BY(mu_) = false;  // The stepping token is taken.
  // The session whose single frame the last turn stepped, else null. Compared, never
  // dereferenced: a reused address costs at most one turn on a caller's thread.
  const Session* lone_session_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t live_slots_ ABSL_GUARDED_BY(mu_) = 0;  // Sessions holding a state slot here.
  int64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t frames_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;

  // Scratch of the stepping token's holder, sized for max_batch.
  std::vector<std::shared_ptr<Session>> turn_;
  std::vector<std::shared_ptr<Session>> again_;
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
