#include "tests/bench/echo_service.h"

#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace sluice::bench {
namespace {

int64_t ElementSize(v1::DataType dtype) {
  return dtype == v1::FLOAT32 ? 4 : dtype == v1::INT16 ? 2 : 0;
}

// One stream. Reads one request at a time; answers queue and are written one at a time; after a
// Close (or the client's half-close) the stream finishes with OK once every answer is written.
// Owns itself: deleted in OnDone().
class EchoReactor : public grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse> {
 public:
  explicit EchoReactor(const EchoStreamingService* service) : service_(service) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // Half-close or cancellation: finish once the answers are out.
      EndReading(grpc::Status::OK);
      return;
    }
    v1::StreamResponse response;
    switch (request_.kind_case()) {
      case v1::StreamRequest::kOpen:
        if (opened_) {
          EndReading(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "Open sent twice"));
          return;
        }
        opened_ = true;
        FillOpened(response.mutable_opened());
        break;
      case v1::StreamRequest::kFrames:
        if (!opened_) {
          EndReading(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "Frames before Open"));
          return;
        }
        Echo(request_.mutable_frames(), &response);
        break;
      case v1::StreamRequest::kReset:
        response.mutable_reset_done()->set_next_seq(next_seq_);
        break;
      case v1::StreamRequest::kClose:
        EndReading(grpc::Status::OK);
        return;
      default:
        EndReading(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty request"));
        return;
    }
    Send(std::move(response));
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    v1::StreamResponse* next = nullptr;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      writes_.pop_front();
      if (!ok) writes_.clear();  // The client went away; finish now.
      if (!writes_.empty()) {
        next = &writes_.front();
      } else {
        writing_ = false;
        finish = TakeFinish();
      }
    }
    if (next != nullptr) StartWrite(next);
    if (finish) Finish(finish_status_);
  }

  void OnDone() override { delete this; }

 private:
  void FillOpened(v1::Opened* opened) {
    const v1::Open& open = request_.open();
    opened->set_session_id(absl::StrCat("echo-", reinterpret_cast<uintptr_t>(this)));
    opened->set_model(open.model());
    opened->set_session_tag(open.session_tag());
    *opened->mutable_input() = service_->spec();
    *opened->add_outputs() = service_->spec();
    opened->set_warmup_frames(0);
    opened->set_state_bytes(0);
    opened->set_backend("echo");
  }

  // Answers one Frames request: an Outputs with the same bytes, or an Error.
  void Echo(v1::Frames* frames, v1::StreamResponse* response) {
    v1::Tensor* tensor = frames->mutable_tensor();
    const int64_t channels = service_->options().channels;
    const int64_t elem = ElementSize(tensor->dtype());
    // STACKED [1,C] or [k,1,C]; OFFLINE [1,k,C]. Both hold the frames in the same byte order.
    int64_t k = 0;
    const auto& shape = tensor->shape();
    if (frames->layout() == v1::Frames::OFFLINE) {
      if (shape.size() == 3 && shape[0] == 1 && shape[1] >= 1 && shape[2] == channels) {
        k = shape[1];
      }
    } else if (shape.size() == 2 && shape[0] == 1 && shape[1] == channels) {
      k = 1;
    } else if (shape.size() == 3 && shape[0] >= 1 && shape[1] == 1 && shape[2] == channels) {
      k = shape[0];
    }
    const bool tags_ok = frames->tags_size() == 0 || frames->tags_size() == k;
    if (elem == 0 || k == 0 || !tags_ok ||
        static_cast<int64_t>(tensor->data().size()) != k * channels * elem) {
      v1::Error* error = response->mutable_error();
      error->mutable_status()->set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      error->mutable_status()->set_message(absl::StrCat(
          "frames must be FLOAT32/INT16, stacked [k,1,", channels, "] or offline [1,k,", channels,
          "], with matching data and none or one tag per frame"));
      error->set_seq(next_seq_);
      return;
    }
    v1::Outputs* outputs = response->mutable_outputs();
    outputs->set_first_seq(next_seq_);
    outputs->set_count(static_cast<uint32_t>(k));
    v1::Tensor* out = outputs->add_tensors();
    out->set_dtype(tensor->dtype());
    out->add_shape(k);
    out->add_shape(1);
    out->add_shape(channels);
    out->set_allocated_data(tensor->release_data());
    outputs->mutable_tags()->Swap(frames->mutable_tags());
    next_seq_ += k;
  }

  void Send(v1::StreamResponse response) ABSL_LOCKS_EXCLUDED(mu_) {
    v1::StreamResponse* first = nullptr;
    {
      absl::MutexLock lock(&mu_);
      writes_.push_back(std::move(response));
      if (writing_) return;
      writing_ = true;
      first = &writes_.front();
    }
    StartWrite(first);
  }

  // No more reads: finish with `status` once the queued answers are written.
  void EndReading(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      finish_status_ = std::move(status);
      finish_requested_ = true;
      if (!writing_) finish = TakeFinish();
    }
    if (finish) Finish(finish_status_);
  }

  bool TakeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_requested_ || finished_) return false;
    finished_ = true;
    return true;
  }

  const EchoStreamingService* const service_;
  v1::StreamRequest request_;   // Touched by the read path only (one read at a time).
  bool opened_ = false;         // Read path only.
  uint64_t next_seq_ = 0;       // Read path only.
  grpc::Status finish_status_;  // Written before finish_requested_ is set, read after.

  absl::Mutex mu_;
  std::deque<v1::StreamResponse> writes_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

EchoStreamingService::EchoStreamingService(EchoOptions options) : options_(std::move(options)) {
  spec_.set_name("x");
  spec_.set_dtype(v1::FLOAT32);
  spec_.add_offline_shape(1);
  spec_.add_offline_shape(-1);
  spec_.add_offline_shape(options_.channels);
  spec_.set_time_axis(1);
  spec_.add_frame_shape(1);
  spec_.add_frame_shape(options_.channels);
}

grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* EchoStreamingService::Stream(
    grpc::CallbackServerContext* /*context*/) {
  return new EchoReactor(this);
}

grpc::ServerUnaryReactor* EchoStreamingService::ListModels(grpc::CallbackServerContext* context,
                                                           const v1::ListModelsRequest* /*request*/,
                                                           v1::ListModelsResponse* response) {
  v1::ModelSummary* summary = response->add_models();
  summary->set_name(options_.model);
  summary->set_ready(true);
  summary->set_state("ready");
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* EchoStreamingService::ModelInfo(grpc::CallbackServerContext* context,
                                                          const v1::ModelInfoRequest* request,
                                                          v1::ModelInfoResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->name() != options_.model) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 absl::StrCat("no model '", request->name(), "'")));
    return reactor;
  }
  response->mutable_summary()->set_name(options_.model);
  response->mutable_summary()->set_ready(true);
  response->mutable_summary()->set_state("ready");
  *response->mutable_input() = spec_;
  *response->add_outputs() = spec_;
  response->set_backend("echo");
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace sluice::bench
