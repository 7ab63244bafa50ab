// OipEngine: the transport-neutral core of the Open Inference Protocol front end. It checks an
// inference request, maps it onto a sequence (Triton's sequence batcher rules) and queues it;
// the gRPC service (oip_service.h) and the HTTP endpoint (oip_http.h) are thin layers over it.
//
// Sequence rules, per model:
//   - no sequence_id (0 / ""): the request is a whole sequence, run through a fresh session and
//     answered with the offline output (T - warm-up frames);
//   - sequence_start: opens a fresh session for the id (a live sequence with that id is ended
//     after its queued requests first);
//   - otherwise the id must be live, or INVALID_ARGUMENT ("... is not active; send
//     sequence_start");
//   - sequence_end: the sequence ends after this request's outputs; the id is free at once;
//   - requests of one id run in arrival order; an idle sequence ends after the model's
//     session_idle_timeout_ms (the session registry's reaper).
#ifndef SLUICE_SERVER_API_OIP_ENGINE_H_
#define SLUICE_SERVER_API_OIP_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "inference/grpc_service.pb.h"
#include "server/api/oip_sequence.h"
#include "server/api/stream_service.h"

namespace sluice::server {

// Thread-safe.
class OipEngine {
 public:
  // `context`'s pointers must outlive the engine.
  explicit OipEngine(ServiceContext context);
  // Detaches from sequences still open (call after the schedulers and transports stopped).
  ~OipEngine();

  OipEngine(const OipEngine&) = delete;
  OipEngine& operator=(const OipEngine&) = delete;

  // Handles one request: `reply` is called exactly once, possibly before Infer returns. `notice`
  // (optional) is kept by the request's sequence, see OipNotice. Returns false when the
  // request's sequence now has more frames queued than the model's session_queue_frames; if
  // `resume` is set it is then called once the sequence has room again, so a stream can stop
  // reading until then. Errors (through `reply`): unknown model or version NOT_FOUND, model not
  // ready or server draining UNAVAILABLE, bad parameters / tensors / unknown sequence
  // INVALID_ARGUMENT, no place for a new session RESOURCE_EXHAUSTED.
  bool Infer(const inference::ModelInferRequest& request, OipReply reply, OipNotice notice,
             std::function<void()> resume);

  // The model `name` at `version` ("" or "1"); NotFound otherwise.
  absl::StatusOr<ServedModel*> FindModel(const std::string& name, const std::string& version) const;
  // Serving (not draining) with at least one model ready.
  bool ServerReady() const;
  // Statistics of `name` (every model when empty; NotFound for an unknown one).
  absl::StatusOr<inference::ModelStatisticsResponse> Statistics(const std::string& name) const;
  const ServiceContext& context() const { return context_; }

 private:
  // The live sequences; shared with the sequences' end callbacks so it outlives the engine.
  struct Table {
    absl::Mutex mu;
    // Model name + '\n' + OipSequenceParams::Key() -> the sequence accepting that id's requests.
    std::map<std::string, std::shared_ptr<OipSequence>> by_id ABSL_GUARDED_BY(mu);
    // Every sequence whose session has not finished (including one-request and replaced ones).
    std::map<OipSequence*, std::weak_ptr<OipSequence>> live ABSL_GUARDED_BY(mu);
  };
  struct Stats;
  struct ModelStats;

  // Opens a sequence (admitting a session) for `params` on `model`; `key` is its table key
  // ("" for a one-request sequence, kept out of by_id).
  absl::StatusOr<std::shared_ptr<OipSequence>> OpenSequence(ServedModel* model,
                                                            const OipSequenceParams& params,
                                                            const std::string& key);
  // Wraps `reply` to record the model's statistics and error metrics.
  OipReply Counted(const std::string& model, OipReply reply);

  const ServiceContext context_;
  const std::shared_ptr<Table> table_;
  const std::shared_ptr<Stats> stats_;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_OIP_ENGINE_H_
