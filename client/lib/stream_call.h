// Internal to the client library: the gRPC callback reactor behind one Session, with the write
// queue, the response queue and the Opened hand-off. Session is the public face.
#ifndef SLUICE_CLIENT_LIB_STREAM_CALL_H_
#define SLUICE_CLIENT_LIB_STREAM_CALL_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/lib/session.h"
#include "sluice/v1/streaming.grpc.pb.h"

namespace sluice::client::internal {

// Lifetime: shared by its Session and, from Start() until OnDone(), by itself (gRPC holds a raw
// pointer to the reactor until then). A "writer hold" keeps gRPC from calling OnDone while the
// client may still start writes; it is removed once the writes are finished or stopped, and a
// second hold is taken while reading is paused, so every Start* call below happens while the
// call is alive. No gRPC operation is started with mu_ held (gRPC may run reactions inline).
//
// Thread-safety: thread-safe; Next() from one thread at a time.
class StreamCall : public grpc::ClientBidiReactor<v1::StreamRequest, v1::StreamResponse>,
                   public std::enable_shared_from_this<StreamCall> {
 public:
  explicit StreamCall(SessionOptions options);

  // Starts the call on `stub` (which must outlive the call). Call once, right after make_shared.
  void Start(v1::Streaming::Stub* stub);

  // Queues `request` for writing. FailedPrecondition after CloseSend() or once writing stopped
  // (cancelled, or the server ended the stream); the final status when the stream has ended.
  absl::Status Write(v1::StreamRequest request) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues a Close request, then half-closes once every queued request is written.
  absl::Status CloseSend() ABSL_LOCKS_EXCLUDED(mu_);
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until the first response: Opened, an Error (its status), or the stream's end.
  absl::StatusOr<v1::Opened> AwaitOpened(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // \see Session::Next().
  absl::StatusOr<std::optional<v1::StreamResponse>> Next(absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until OnDone has run (user on_done included); returns the final status.
  absl::Status Finish() ABSL_LOCKS_EXCLUDED(mu_);
  bool done() const ABSL_LOCKS_EXCLUDED(mu_);
  // \see Session::served_through().
  std::optional<uint64_t> served_through() const ABSL_LOCKS_EXCLUDED(mu_);

  // grpc::ClientBidiReactor reactions.
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  enum class OpenState { kWaiting, kOpened, kFailed };

  // gRPC operations decided under mu_ and started after it is released.
  struct Actions {
    v1::StreamRequest* write = nullptr;  // Points into writes_.front(), stable until popped.
    bool writes_done = false;
    bool remove_writer_hold = false;
  };
  Actions NextActions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run(const Actions& actions) ABSL_LOCKS_EXCLUDED(mu_);
  // Hands the first response (Opened, or an Error) to Open().
  void HandleOpenResponse(v1::StreamResponse& response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SessionOptions options_;
  grpc::ClientContext context_;
  v1::StreamResponse read_buf_;       // Owned by the one outstanding read (or idle while paused).
  std::shared_ptr<StreamCall> self_;  // Set in Start(), dropped at the end of OnDone().

  mutable absl::Mutex mu_;
  // Requests not yet written; the front one is being written when write_in_flight_.
  std::deque<v1::StreamRequest> writes_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_started_ ABSL_GUARDED_BY(mu_) = false;
  // Cancelled, a write failed, or the server ended its side: no more writes.
  bool stop_writing_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_hold_removed_ ABSL_GUARDED_BY(mu_) = false;

  OpenState open_state_ ABSL_GUARDED_BY(mu_) = OpenState::kWaiting;
  v1::Opened opened_ ABSL_GUARDED_BY(mu_);
  absl::Status open_status_ ABSL_GUARDED_BY(mu_);

  std::deque<v1::StreamResponse> responses_ ABSL_GUARDED_BY(mu_);  // Queue mode only.
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;  // Holds a second hold while true.
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;    // Cancel() was called: reading never pauses.

  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  std::optional<uint64_t> served_through_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::client::internal

#endif  // SLUICE_CLIENT_LIB_STREAM_CALL_H_
