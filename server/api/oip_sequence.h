// OipSequence: one Open Inference Protocol sequence (Triton's sequence batcher: requests with
// one sequence_id) driving one sluice Session. Where the native API gives a session its own
// bidirectional stream, here the "stream" is the sequence's requests, which may arrive on any
// ModelStreamInfer stream, unary ModelInfer call or HTTP request, and each request gets its own
// answer. The sequence is the Session's StreamSink:
//   StartRead  = the session has room: feed it the next queued request (its frames, then a Close
//                if the request ends the sequence), or feed the next request as soon as it comes.
//   StartWrite = outputs: each goes to the request whose frame completed it (output of frame s
//                belongs to the request that carried frame s); a request is answered once all of
//                its frames past the model's warm-up have their outputs (a request made only of
//                warm-up frames is answered at once, with T = 0), and answers leave in order.
//   Finish     = the session ended (sequence_end, idle timeout, drain, backend failure): requests
//                still waiting get the status, and the sequence leaves the engine's table.
#ifndef SLUICE_SERVER_API_OIP_SEQUENCE_H_
#define SLUICE_SERVER_API_OIP_SEQUENCE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "inference/grpc_service.pb.h"
#include "server/api/oip_codec.h"
#include "server/api/stream_service.h"
#include "server/session/session.h"

namespace sluice::server {

// Where one request's answer goes. Called exactly once, from any thread (a gRPC callback, the
// scheduler, an HTTP thread), never while a sluice lock is held.
using OipReply = std::function<void(absl::StatusOr<inference::ModelInferResponse> result)>;
// Told, at most once, when a sequence ends with an error that no waiting request could carry
// (an idle timeout or a drain between requests). Same calling rules as OipReply.
using OipNotice = std::function<void(const absl::Status& status)>;

// One checked request of a sequence.
struct OipRequest {
  std::string id;                          // Echoed in the answer.
  std::vector<std::vector<float>> frames;  // Time order; each program.input.frame_size floats.
  std::vector<int> outputs;                // Indices into program.outputs to answer with, in order.
  bool end = false;                        // The sequence ends after this request.
  OipReply reply;                          // Empty for an end-only marker (see OipSequence::End).
  OipNotice notice;                        // Optional; the latest request's notice is kept.
};

// Thread-safe. Keeps itself alive until its session has finished.
class OipSequence final : public StreamSink, public std::enable_shared_from_this<OipSequence> {
 public:
  // Opens a session on `model` (ready) for the sequence `params` (has_id false: a one-request
  // sequence). `session_id` is a place SessionRegistry::Admit gave; the sequence registers the
  // session with the registry (so idle timeouts and drains reach it) and gives the place back
  // when it ends. `on_end` is called once when the session has finished, from the session's pump
  // with no lock held (the engine drops the sequence from its table there).
  static std::shared_ptr<OipSequence> Open(const ServiceContext& context, ServedModel* model,
                                           std::string session_id, OipSequenceParams params,
                                           std::function<void(OipSequence*)> on_end);
  ~OipSequence() override;

  // Queues `request` behind the sequence's earlier requests. Returns true when the sequence can
  // take more at once. Returns false when its queued frames exceed the model's
  // session_queue_frames: with a `resume`, the request is queued and `resume` is called once
  // there is room again (or the sequence ended), so that a stream can stop reading meanwhile;
  // without one (unary callers), the request is queued unless the backlog is far over the bound,
  // in which case it is answered RESOURCE_EXHAUSTED. A sequence that has ended (or whose end is
  // queued) answers INVALID_ARGUMENT, as for an unknown sequence_id.
  bool Submit(OipRequest request, std::function<void()> resume);
  // Ends the sequence after the requests already queued (a sequence_start reused its id).
  void End();
  // Server teardown: detaches from the session without waiting for it (nothing runs any more).
  void Abandon();

  const OipSequenceParams& params() const { return params_; }
  ServedModel* model() const { return model_; }

  // StreamSink (called by the session's pump only).
  void StartRead() override;
  void StartWrite(const v1::StreamResponse* response) override;
  void Finish(const absl::Status& status) override;

 private:
  // A request whose frames went to the session: the outputs it is waiting for.
  struct Pending {
    std::string id;
    OipReply reply;
    std::vector<int> outputs;
    int64_t first_seq = 0;  // Session seq of its first frame.
    int64_t frames = 0;
    int64_t expected = 0;  // Outputs its frames complete (frames past the warm-up).
    int64_t got = 0;
    std::vector<std::vector<float>> data;  // Per entry of `outputs`: [got][frame_size].
  };
  // An answer to send, built outside the lock.
  struct Answer {
    Pending pending;
    absl::Status status;
  };

  OipSequence(const ServiceContext& context, ServedModel* model, std::string session_id,
              OipSequenceParams params, std::function<void(OipSequence*)> on_end);

  // Hands `request` to the session (one Feed at a time: the session's read protocol orders them).
  void Feed(OipRequest request);
  // Moves the answered requests at the head of pending_ to answers_.
  void CollectAnsweredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends answers_, in order, from one thread at a time.
  void DeliverAnswers() ABSL_LOCKS_EXCLUDED(mu_);
  // Gives the session's registry place back (once).
  void ReleasePlace();
  // `status` with the sequence named.
  absl::Status Named(const absl::Status& status) const;

  const ServiceContext context_;
  ServedModel* const model_;
  const std::string session_id_;
  const OipSequenceParams params_;
  const std::function<void(OipSequence*)> on_end_;
  const int64_t backlog_frames_limit_;
  std::shared_ptr<Session> session_;  // Set by Open, then constant.

  absl::Mutex mu_;
  std::shared_ptr<OipSequence> self_ ABSL_GUARDED_BY(mu_);  // Until Finish or Abandon.
  std::deque<OipRequest> backlog_ ABSL_GUARDED_BY(mu_);     // Not yet fed to the session.
  int64_t backlog_frames_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_wanted_ ABSL_GUARDED_BY(mu_) = false;  // The session awaits the next request.
  bool end_queued_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> resumes_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  int64_t fed_frames_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Answer> answers_ ABSL_GUARDED_BY(mu_);
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  OipNotice notice_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_OIP_SEQUENCE_H_
