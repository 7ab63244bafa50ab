#include "server/api/oip_service.h"

#include <atomic>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/api/auth.h"
#include "server/api/oip_http.h"
#include "server/common/status_util.h"

namespace sluice::server {
namespace {

using StreamReactorBase =
    grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>;

// `reply`, answering only if `replied` was not set yet (sets it).
OipReply Once(std::shared_ptr<std::atomic<bool>> replied, OipReply reply) {
  return [replied = std::move(replied),
          reply = std::move(reply)](absl::StatusOr<inference::ModelInferResponse> result) {
    if (!replied->exchange(true)) reply(std::move(result));
  };
}

// Responses queued on one stream before the server stops reading it (a client that does not
// read its responses is slowed down, not buffered without bound).
constexpr size_t kMaxQueuedResponses = 256;

// One ModelStreamInfer call. Owns itself (self_) from creation until OnDone; answers that come
// later (requests still running when the client cancelled) hold a reference and are dropped.
// Every gRPC operation is started outside mu_, one read and one write at a time.
class StreamInferReactor final : public StreamReactorBase,
                                 public std::enable_shared_from_this<StreamInferReactor> {
 public:
  // `engine` outlives every stream: the service owns it and gRPC is shut down first.
  explicit StreamInferReactor(OipEngine* engine) : engine_(engine) {}

  void Begin() {
    {
      absl::MutexLock lock(&mu_);
      self_ = shared_from_this();
      reading_ = true;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        read_closed_ = true;
      }
      Advance();
      return;
    }
    std::shared_ptr<StreamInferReactor> self = shared_from_this();
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      ++outstanding_;
      ++blocked_;  // Until Infer says the request's sequence has room.
    }
    auto reply = [self, id = request_.id(),
                  model = request_.model_name()](absl::StatusOr<inference::ModelInferResponse> r) {
      inference::ModelStreamInferResponse response;
      if (r.ok()) {
        *response.mutable_infer_response() = *std::move(r);
      } else {
        response.set_error_message(std::string(r.status().message()));
        response.mutable_infer_response()->set_id(id);
        response.mutable_infer_response()->set_model_name(model);
      }
      self->Queue(std::move(response), /*answer=*/true);
    };
    std::weak_ptr<StreamInferReactor> weak = self;
    auto notice = [weak, model = request_.model_name(),
                   sequence = request_.parameters()](const absl::Status& status) {
      std::shared_ptr<StreamInferReactor> reactor = weak.lock();
      if (reactor == nullptr) return;
      inference::ModelStreamInferResponse response;
      response.set_error_message(std::string(status.message()));
      response.mutable_infer_response()->set_model_name(model);
      if (auto it = sequence.find("sequence_id"); it != sequence.end()) {
        (*response.mutable_infer_response()->mutable_parameters())["sequence_id"] = it->second;
      }
      reactor->Queue(std::move(response), /*answer=*/false);
    };
    auto replied = std::make_shared<std::atomic<bool>>(false);
    bool room = true;
    try {
      room = engine_->Infer(request_, Once(replied, std::move(reply)), std::move(notice),
                            [self] { self->Unblock(); });
    } catch (const std::exception& e) {
      // Nothing may escape a gRPC callback: answer the request here unless it was answered.
      if (!replied->exchange(true)) {
        inference::ModelStreamInferResponse response;
        response.set_error_message(absl::StrCat("request failed: ", e.what()));
        response.mutable_infer_response()->set_id(request_.id());
        Queue(std::move(response), /*answer=*/true);
      }
    }
    if (room) Unblock();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writes_.pop_front();
      writing_ = false;
      if (!ok) write_failed_ = true;
    }
    Advance();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    Advance();
  }

  void OnDone() override {
    std::shared_ptr<StreamInferReactor> keep;
    {
      absl::MutexLock lock(&mu_);
      keep = std::move(self_);
    }
    // `keep` may be the last reference: this object ends with the call.
  }

 private:
  // Queues a response; `answer` is true for a request's answer (false for a sequence notice).
  void Queue(inference::ModelStreamInferResponse response, bool answer) {
    {
      absl::MutexLock lock(&mu_);
      if (answer) --outstanding_;
      if (finished_) return;
      writes_.push_back(std::move(response));
    }
    Advance();
  }

  void Unblock() {
    {
      absl::MutexLock lock(&mu_);
      --blocked_;
    }
    Advance();
  }

  // Starts whatever is due: the next write, the next read, or Finish. Loops so that a decision
  // taken under the lock is acted on outside it.
  void Advance() {
    while (true) {
      enum class Action { kNone, kWrite, kRead, kFinish } action = Action::kNone;
      const inference::ModelStreamInferResponse* to_write = nullptr;
      grpc::Status finish_status;
      {
        absl::MutexLock lock(&mu_);
        if (finished_) return;
        const bool gone = cancelled_ || write_failed_;
        if (gone && !writing_) {
          finished_ = true;
          finish_status = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
          action = Action::kFinish;
        } else if (!gone && !writing_ && !writes_.empty()) {
          writing_ = true;
          to_write = &writes_.front();  // A deque keeps it in place until OnWriteDone pops it.
          action = Action::kWrite;
        } else if (!gone && !reading_ && !read_closed_ && blocked_ == 0 &&
                   writes_.size() < kMaxQueuedResponses) {
          reading_ = true;
          action = Action::kRead;
        } else if (read_closed_ && outstanding_ == 0 && !writing_ && writes_.empty()) {
          finished_ = true;
          finish_status = grpc::Status::OK;
          action = Action::kFinish;
        }
      }
      switch (action) {
        case Action::kNone:
          return;
        case Action::kWrite:
          StartWrite(to_write);
          break;
        case Action::kRead:
          StartRead(&request_);
          break;
        case Action::kFinish:
          Finish(finish_status);
          return;
      }
    }
  }

  OipEngine* const engine_;
  inference::ModelInferRequest request_;  // Owned by the read in progress.

  absl::Mutex mu_;
  std::shared_ptr<StreamInferReactor> self_ ABSL_GUARDED_BY(mu_);
  std::deque<inference::ModelStreamInferResponse> writes_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // Requests not yet answered.
  int64_t blocked_ ABSL_GUARDED_BY(mu_) = 0;      // Sequences over their queue bound.
};

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

std::vector<std::string> OipExtensions() {
  return {"sequence", "model_configuration", "statistics", "parameters"};
}

OipService::OipService(ServiceContext context, std::string version)
    : version_(std::move(version)), engine_(std::make_shared<OipEngine>(context)) {}

OipService::~OipService() = default;

absl::Status OipService::AddHttpRoutes(AdminServer* admin) {
  return AddOipHttpRoutes(admin, engine_, version_);
}

grpc::ServerUnaryReactor* OipService::ServerLive(grpc::CallbackServerContext* context,
                                                 const inference::ServerLiveRequest* /*request*/,
                                                 inference::ServerLiveResponse* response) {
  response->set_live(true);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerReady(grpc::CallbackServerContext* context,
                                                  const inference::ServerReadyRequest* /*request*/,
                                                  inference::ServerReadyResponse* response) {
  response->set_ready(engine_->ServerReady());
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelReady(grpc::CallbackServerContext* context,
                                                 const inference::ModelReadyRequest* request,
                                                 inference::ModelReadyResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  absl::StatusOr<ServedModel*> model = engine_->FindModel(request->name(), request->version());
  if (!model.ok()) return Done(context, model.status());
  response->set_ready((*model)->ready());
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest* /*request*/,
    inference::ServerMetadataResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  response->set_name("sluice");
  response->set_version(version_);
  for (const std::string& extension : OipExtensions()) response->add_extensions(extension);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelMetadata(grpc::CallbackServerContext* context,
                                                    const inference::ModelMetadataRequest* request,
                                                    inference::ModelMetadataResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  absl::StatusOr<ServedModel*> model = engine_->FindModel(request->name(), request->version());
  if (!model.ok()) return Done(context, model.status());
  *response = ModelMetadataOf(**model);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelConfig(grpc::CallbackServerContext* context,
                                                  const inference::ModelConfigRequest* request,
                                                  inference::ModelConfigResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  absl::StatusOr<ServedModel*> model = engine_->FindModel(request->name(), request->version());
  if (!model.ok()) return Done(context, model.status());
  *response->mutable_config() = ModelConfigOf(**model);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelStatistics(
    grpc::CallbackServerContext* context, const inference::ModelStatisticsRequest* request,
    inference::ModelStatisticsResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  if (!request->name().empty()) {
    absl::StatusOr<ServedModel*> model = engine_->FindModel(request->name(), request->version());
    if (!model.ok()) return Done(context, model.status());
  }
  absl::StatusOr<inference::ModelStatisticsResponse> stats = engine_->Statistics(request->name());
  if (!stats.ok()) return Done(context, stats.status());
  *response = *std::move(stats);
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::RepositoryIndex(
    grpc::CallbackServerContext* context, const inference::RepositoryIndexRequest* request,
    inference::RepositoryIndexResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  for (ServedModel* model : engine_->context().repository->models()) {
    if (request->ready() && !model->ready()) continue;
    auto* index = response->add_models();
    index->set_name(model->name);
    index->set_version(kOipModelVersion);
    index->set_state(model->ready() ? "READY" : "UNAVAILABLE");
    if (!model->ready()) index->set_reason(std::string(model->load_status.message()));
  }
  return Done(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelInfer(grpc::CallbackServerContext* context,
                                                 const inference::ModelInferRequest* request,
                                                 inference::ModelInferResponse* response) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return Done(context, auth);
  }
  auto* reactor = context->DefaultReactor();
  // The reply runs once; `response` and `reactor` stay valid until Finish.
  auto reply = [reactor, response](absl::StatusOr<inference::ModelInferResponse> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    response->Swap(&*result);
    reactor->Finish(grpc::Status::OK);
  };
  auto replied = std::make_shared<std::atomic<bool>>(false);
  try {
    engine_->Infer(*request, Once(replied, std::move(reply)), nullptr, nullptr);
  } catch (const std::exception& e) {
    // Nothing may escape a gRPC callback: answer the call here unless it was answered.
    if (!replied->exchange(true)) {
      reactor->Finish(
          ToGrpcStatus(absl::InternalError(absl::StrCat("request failed: ", e.what()))));
    }
  }
  return reactor;
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
OipService::ModelStreamInfer(grpc::CallbackServerContext* context) {
  if (absl::Status auth = Authorize(engine_->context().auth, *context); !auth.ok()) {
    return new RefusingBidiReactor<inference::ModelInferRequest,
                                   inference::ModelStreamInferResponse>(ToGrpcStatus(auth));
  }
  auto reactor = std::make_shared<StreamInferReactor>(engine_.get());
  reactor->Begin();
  return reactor.get();  // Kept alive by its own self_ until OnDone.
}

}  // namespace sluice::server
