// A Session: one client stream's place in the server. It owns the stream's bounded input
// queue (frames and control entries, in arrival order), its outbox of responses, and the
// state slot id on its model instance's backend. The transport (a gRPC reactor) and the
// scheduler meet here.
#ifndef SLUICE_SERVER_SESSION_SESSION_H_
#define SLUICE_SERVER_SESSION_SESSION_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/backend.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::server {

class Scheduler;

// The operations of one bidirectional stream. Session calls them only from its pump: never
// while holding a lock, never two at once, never after Finish.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual void StartRead() = 0;
  // `response` stays valid until the session's OnWriteDone.
  virtual void StartWrite(const v1::StreamResponse* response) = 0;
  // Called just before Finish when the session ends with every frame it accepted stepped and
  // every output written: `next_seq` is the seq its next frame would have had. A transport that
  // can, tells the client (the gRPC stream: trailing metadata), so that after a drain the client
  // knows exactly which frames were served and which to send elsewhere.
  virtual void SetServedThrough(uint64_t /*next_seq*/) {}
  virtual void Finish(const absl::Status& status) = 0;
};

// One queued request item. Frames carry their data converted to float32.
struct SessionEntry {
  enum class Kind { kOpen, kFrame, kReset, kClose };
  Kind kind = Kind::kFrame;
  uint64_t seq = 0;
  std::vector<float> frame;
  std::string tag;
  bool has_tag = false;
  absl::Time arrival;
  absl::Status close_status;    // kClose: how the stream ends once everything before is done.
  v1::StreamResponse response;  // kOpen: the Opened response, sent once the slot exists.
};

struct SessionLimits {
  int queue_frames = 64;    // Queued input frames before the server stops reading.
  int outbox_frames = 256;  // Undelivered output frames before the session stops stepping.
  int max_frames_per_response = 256;
  // Resumable sessions only: output frames kept after they were written, so a client that
  // reconnects can have the ones it missed replayed.
  int resume_buffer_frames = 1024;
};

// Thread-safe. The reactor calls the transport-side methods from gRPC callbacks; the holder of
// the scheduler's stepping token (its thread, or a transport thread running a turn in
// EnqueueFrames) calls the scheduler-side methods while the session is scheduled.
//
// A session with a resume token survives its stream: when the link drops (Disconnect) it
// detaches, keeps its state slot, queued frames and undelivered outputs plus the last
// `resume_buffer_frames` delivered ones, and goes on stepping; Attach binds a new stream and
// replays the outputs the client missed. Such a session ends only with Close, a drain, an error,
// or when the registry reaps it after the resume grace period.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // `sink` must outlive the session's use of it: the transport calls OnStreamDone before the
  // sink goes away. `scheduler` outlives every session on it. An empty `resume_token` makes the
  // session end with its stream.
  Session(std::string id, std::string model, std::string tag, Scheduler* scheduler,
          StreamSink* sink, SessionLimits limits, std::string resume_token = "");
  ~Session();

  const std::string& id() const { return id_; }
  const std::string& model() const { return model_; }
  const std::string& tag() const { return tag_; }
  const std::string& resume_token() const { return resume_token_; }
  Scheduler* scheduler() const { return scheduler_; }
  // Called once when the session has ended for good (its slot is freed or about to be, and its
  // last stream is finishing), to give back its place. Set before Start.
  void set_on_release(std::function<void()> on_release) { on_release_ = std::move(on_release); }

  // ---- Transport side ----
  // Starts the session: queues the slot allocation (`opened` is sent once it succeeds) and
  // begins reading.
  void Start(v1::StreamResponse opened);
  // Queues validated frames (one vector per frame) with optional tags (empty or one each).
  // Returns false, queuing nothing, when the session is already closing. With `may_step_here`
  // the caller holds no lock and lets the scheduler run this session's next turn on the calling
  // thread when its backend is idle (Scheduler::Enqueue); the outputs may then be written
  // before this returns.
  bool EnqueueFrames(std::vector<std::vector<float>> frames, std::vector<std::string> tags,
                     bool may_step_here = false);
  void EnqueueReset();
  // Ends the stream with `status` once every entry queued before has been processed and its
  // outputs written. `drop_pending` discards queued frames first (cancellation, errors).
  void EnqueueClose(const absl::Status& status, bool drop_pending = false);
  // Reports a bad request in-stream (the session goes on).
  void RespondError(const absl::Status& status);
  // Transport completions.
  void OnReadDone();
  void OnWriteDone(bool ok);
  // The client half-closed or the read failed: no more requests will come. Without a resume
  // token that closes the session gracefully; with one, reads that end without a Close request
  // mean the link dropped (Disconnect).
  void OnReadClosed();
  // The stream's link failed (client cancel, connection reset, failed write). A resumable session
  // finishes this stream and detaches; any other session closes, dropping queued frames.
  void Disconnect(const absl::Status& status);
  // The stream is gone; the sink must not be used any more.
  void OnStreamDone();
  // Binds a new stream to a detached resumable session. `opened` is sent first (next_seq set
  // here), then every output after `last_output_seq` (all retained ones when unset) that the
  // client has not acknowledged, then new outputs. NOT_FOUND when the session has ended,
  // UNAVAILABLE while its previous stream is still open or finishing (retry), OUT_OF_RANGE when
  // outputs after `last_output_seq` were already evicted from the resume buffer.
  absl::Status Attach(StreamSink* sink, std::optional<uint64_t> last_output_seq,
                      v1::StreamResponse opened);
  // When detached, the time the link dropped.
  std::optional<absl::Time> detached_since() const;
  // The seq the next frame will get.
  uint64_t next_seq() const;
  // Time of the last request, for idle timeouts.
  absl::Time last_activity() const;
  bool finished() const;

  // ---- Scheduler side (only while scheduled) ----
  // Moves the next queued entry into `entry`; false when the queue is empty.
  bool PopEntry(SessionEntry* entry);
  SlotId slot() const;
  void set_slot(SlotId slot);
  // Queues a response other than outputs (Opened, ResetDone, Error).
  void Respond(v1::StreamResponse response);
  // Queues output frames of step seq: outputs[j] points at the output j frame, sizes[j]
  // floats, frame_shapes[j] its shape. Merges with a queued Outputs when consecutive.
  void AppendOutput(uint64_t seq, const std::string* tag, const float* const* outputs,
                    const int64_t* sizes, const std::vector<std::vector<int64_t>>& frame_shapes);
  // The queued close was processed (slot freed); the stream finishes after the outbox drains.
  void CloseProcessed(const absl::Status& status);
  // Called after the scheduler processed one entry: true when the session stays scheduled.
  bool EndTurn();

 private:
  bool RunnableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the session scheduled if it is runnable and not yet; true when the caller must hand
  // it to the scheduler.
  bool ClaimScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleIfClaimed(bool claimed, bool may_step_here = false);
  // Issues whatever stream operations are due (reads, writes, finish), one at a time.
  void Pump() ABSL_LOCKS_EXCLUDED(mu_);
  // Keeps a written Outputs response for replay, evicting the oldest beyond the resume buffer.
  void RetainLocked(v1::StreamResponse response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs on_release_ once the session has ended (final status known) and no stream will write.
  void ReleaseIfEnded() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string id_;
  const std::string model_;
  const std::string tag_;
  Scheduler* const scheduler_;
  const SessionLimits limits_;
  const std::string resume_token_;
  std::function<void()> on_release_;
  std::atomic<bool> released_{false};

  mutable absl::Mutex mu_;
  StreamSink* sink_ ABSL_GUARDED_BY(mu_);
  std::deque<SessionEntry> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_frames_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool close_queued_ ABSL_GUARDED_BY(mu_) = false;
  SlotId slot_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_);

  std::deque<v1::StreamResponse> outbox_ ABSL_GUARDED_BY(mu_);
  int64_t outbox_frames_ ABSL_GUARDED_BY(mu_) = 0;
  v1::StreamResponse in_write_ ABSL_GUARDED_BY(mu_);
  // A written Outputs response kept for the next one: its tensors, shapes and byte buffers stay
  // allocated, which saves about ten allocations per response.
  v1::StreamResponse spare_outputs_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  // A close dropped queued frames or resets (drop_pending): the end is not "served through".
  bool entries_dropped_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  bool opened_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::StreamResponse> held_until_opened_ ABSL_GUARDED_BY(mu_);  // In-stream errors.

  // Resume: the current sink is being finished because its link dropped.
  bool disconnecting_ ABSL_GUARDED_BY(mu_) = false;
  bool sink_finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Time> detached_since_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::StreamResponse> sent_ ABSL_GUARDED_BY(mu_);  // Written outputs, oldest first.
  int64_t sent_frames_ ABSL_GUARDED_BY(mu_) = 0;
  // The highest output seq evicted from sent_, if any.
  std::optional<uint64_t> evicted_through_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SESSION_SESSION_H_
