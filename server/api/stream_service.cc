#include "server/api/stream_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/admin/metrics.h"
#include "server/api/auth.h"
#include "server/api/frame_codec.h"
#include "server/common/status_util.h"
#include "spdlog/spdlog.h"

namespace sluice::server {
namespace {

// One Stream call. Lives until OnDone. Before Open it drives the stream itself; after Open
// every stream operation goes through its Session's pump.
class StreamReactor final : public grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>,
                            public StreamSink {
 public:
  StreamReactor(const ServiceContext& context, grpc::CallbackServerContext* call)
      : context_(context), call_(call) {
    grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>::StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    std::shared_ptr<Session> session = CurrentSession();
    if (!ok) {
      if (session != nullptr) {
        session->OnReadClosed();
      } else {
        Finish(absl::CancelledError("the stream closed before Open"));
      }
      return;
    }
    if (session == nullptr) {
      HandleOpen();
      return;
    }
    // Nothing may escape a gRPC callback: an exception here would wedge the stream.
    try {
      HandleRequest(*session);
    } catch (const std::exception& e) {
      const absl::Status status = absl::InternalError(absl::StrCat("request failed: ", e.what()));
      CountError(status);
      session->RespondError(status);
    }
    session->OnReadDone();
  }

  void HandleRequest(Session& session) {
    switch (request_.kind_case()) {
      case v1::StreamRequest::kFrames: {
        std::vector<std::vector<float>> frames;
        const absl::Status status =
            DecodeFrames(request_.frames(), served_->program->input, &frames);
        if (!status.ok()) {
          CountError(status);
          session.RespondError(status);
          return;
        }
        const auto count = static_cast<int64_t>(frames.size());
        std::vector<std::string> tags(request_.frames().tags().begin(),
                                      request_.frames().tags().end());
        // This gRPC callback holds no lock: when the backend is idle the frame may be stepped
        // and its output written right here, without waking the scheduler thread.
        if (!session.EnqueueFrames(std::move(frames), std::move(tags), /*may_step_here=*/true)) {
          const absl::Status closing =
              absl::UnavailableError("the session is closing; these frames were not accepted");
          CountError(closing);
          session.RespondError(closing);
          return;
        }
        if (served_->metrics != nullptr) served_->metrics->frames_in.fetch_add(count);
        return;
      }
      case v1::StreamRequest::kReset:
        session.EnqueueReset();
        return;
      case v1::StreamRequest::kClose:
        session.EnqueueClose(absl::OkStatus());
        return;
      case v1::StreamRequest::kOpen: {
        const absl::Status status =
            absl::FailedPreconditionError("Open sent twice: one session per stream");
        CountError(status);
        session.EnqueueClose(status, /*drop_pending=*/true);
        return;
      }
      default: {
        const absl::Status status = absl::InvalidArgumentError("empty StreamRequest");
        CountError(status);
        session.RespondError(status);
        return;
      }
    }
  }

  void OnWriteDone(bool ok) override {
    if (std::shared_ptr<Session> session = CurrentSession()) session->OnWriteDone(ok);
  }

  void OnCancel() override {
    if (std::shared_ptr<Session> session = CurrentSession()) {
      session->Disconnect(absl::CancelledError("the client cancelled"));
    }
  }

  void OnDone() override {
    if (std::shared_ptr<Session> session = CurrentSession()) session->OnStreamDone();
    delete this;
  }

  // StreamSink: called only by the session's pump.
  void StartRead() override {
    grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>::StartRead(&request_);
  }
  void StartWrite(const v1::StreamResponse* response) override {
    grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>::StartWrite(response);
  }
  void SetServedThrough(uint64_t next_seq) override {
    call_->AddTrailingMetadata(std::string(kServedThroughTrailer), absl::StrCat(next_seq));
  }
  void Finish(const absl::Status& status) override {
    if (!status.ok()) CountError(status);
    grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>::Finish(ToGrpcStatus(status));
  }

 private:
  std::shared_ptr<Session> CurrentSession() {
    absl::MutexLock lock(&mu_);
    return session_;
  }

  void CountError(const absl::Status& status) {
    if (context_.metrics != nullptr) context_.metrics->CountError(status.code());
  }

  void HandleOpen() {
    if (request_.kind_case() != v1::StreamRequest::kOpen) {
      Finish(absl::FailedPreconditionError("the first request of a stream must be Open"));
      return;
    }
    const v1::Open& open = request_.open();
    if (context_.draining != nullptr && context_.draining->load()) {
      Finish(absl::UnavailableError("the server is shutting down"));
      return;
    }
    if (!open.resume_token().empty()) {
      HandleResume(open);
      return;
    }
    ServedModel* model = context_.repository->Find(open.model());
    if (model == nullptr) {
      Finish(absl::NotFoundError(absl::StrCat("unknown model '", open.model(), "'")));
      return;
    }
    if (!model->ready()) {
      Finish(absl::UnavailableError(
          absl::StrCat("model ", open.model(), " is not ready: ", model->load_status.message())));
      return;
    }
    absl::StatusOr<std::string> id = context_.registry->Admit(
        model->name, model->config.max_sessions(), &model->sessions_active);
    if (!id.ok()) {
      Finish(id.status());
      return;
    }
    served_ = model;
    SessionLimits limits;
    limits.queue_frames = model->config.session_queue_frames();
    limits.outbox_frames = std::max(256, 4 * limits.queue_frames);
    limits.resume_buffer_frames = context_.resume_buffer_frames;
    const bool resumable = context_.resume_grace > absl::ZeroDuration();
    auto session = std::make_shared<Session>(
        *id, model->name, open.session_tag(), model->PickInstance(), this, limits,
        resumable ? context_.registry->NewResumeToken() : std::string());
    // The place is the session's, not this stream's: a resumed session outlives its first stream.
    SessionRegistry* registry = context_.registry;
    session->set_on_release([registry, model, id = *id] {
      registry->Remove(id);
      registry->Release(&model->sessions_active);
      if (model->metrics != nullptr) model->metrics->sessions_active.fetch_sub(1);
    });
    v1::StreamResponse response = OpenedFor(*model, *session);
    {
      absl::MutexLock lock(&mu_);
      session_ = session;
    }
    context_.registry->Add(session, absl::Milliseconds(model->config.session_idle_timeout_ms()));
    if (model->metrics != nullptr) {
      model->metrics->sessions_total.fetch_add(1);
      model->metrics->sessions_active.fetch_add(1);
    }
    spdlog::debug("session {} opened on model {} (tag '{}')", *id, model->name, open.session_tag());
    session->Start(std::move(response));
    // A drain that began after the check above has not seen this session: close it here.
    if (context_.draining != nullptr && context_.draining->load()) {
      session->EnqueueClose(absl::UnavailableError("the server is shutting down"));
    }
  }

  void HandleResume(const v1::Open& open) {
    std::shared_ptr<Session> session = context_.registry->FindByResumeToken(open.resume_token());
    if (session == nullptr) {
      Finish(absl::NotFoundError("unknown or expired resume token"));
      return;
    }
    if (!open.model().empty() && open.model() != session->model()) {
      Finish(
          absl::InvalidArgumentError(absl::StrCat("the resume token belongs to a session on model ",
                                                  session->model(), ", not ", open.model())));
      return;
    }
    ServedModel* model = context_.repository->Find(session->model());
    if (model == nullptr || !model->ready()) {
      Finish(absl::UnavailableError(absl::StrCat("model ", session->model(), " is not ready")));
      return;
    }
    served_ = model;
    v1::StreamResponse response = OpenedFor(*model, *session);
    response.mutable_opened()->set_resumed(true);
    // Set before Attach: the session may use this stream as soon as it is attached.
    {
      absl::MutexLock lock(&mu_);
      session_ = session;
    }
    const std::optional<uint64_t> last =
        open.has_last_output_seq() ? std::optional<uint64_t>(open.last_output_seq()) : std::nullopt;
    if (absl::Status status = session->Attach(this, last, std::move(response)); !status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        session_ = nullptr;
      }
      Finish(status);
      return;
    }
    if (model->metrics != nullptr) model->metrics->sessions_resumed.fetch_add(1);
    spdlog::debug("session {} resumed on model {}", session->id(), model->name);
  }

  static v1::StreamResponse OpenedFor(const ServedModel& model, const Session& session) {
    const streaming::Program& program = *model.program;
    v1::StreamResponse response;
    v1::Opened* opened = response.mutable_opened();
    opened->set_session_id(session.id());
    opened->set_model(model.name);
    opened->set_session_tag(session.tag());
    *opened->mutable_input() = ToTensorSpec(program.input);
    for (const auto& output : program.outputs) *opened->add_outputs() = ToTensorSpec(output);
    opened->set_warmup_frames(program.warmup_frames);
    opened->set_state_bytes(program.state_bytes);
    opened->set_backend(model.backend);
    opened->set_resume_token(session.resume_token());
    return response;
  }

  const ServiceContext context_;
  grpc::CallbackServerContext* const call_;
  v1::StreamRequest request_;
  ServedModel* served_ = nullptr;
  absl::Mutex mu_;
  std::shared_ptr<Session> session_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

v1::ModelSummary Summarize(const ServedModel& model) {
  v1::ModelSummary summary;
  summary.set_name(model.name);
  summary.set_ready(model.ready());
  summary.set_state(model.ready() ? "ready"
                                  : absl::StrCat("failed: ", model.load_status.message()));
  return summary;
}

grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* StreamingService::Stream(
    grpc::CallbackServerContext* context) {
  if (absl::Status auth = Authorize(context_.auth, *context); !auth.ok()) {
    return new RefusingBidiReactor<v1::StreamRequest, v1::StreamResponse>(ToGrpcStatus(auth));
  }
  return new StreamReactor(context_, context);
}

grpc::ServerUnaryReactor* StreamingService::ListModels(grpc::CallbackServerContext* context,
                                                       const v1::ListModelsRequest* /*request*/,
                                                       v1::ListModelsResponse* response) {
  if (absl::Status auth = Authorize(context_.auth, *context); !auth.ok()) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(auth));
    return reactor;
  }
  for (ServedModel* model : context_.repository->models()) {
    *response->add_models() = Summarize(*model);
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* StreamingService::ModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::ModelInfoRequest* request,
                                                      v1::ModelInfoResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (absl::Status auth = Authorize(context_.auth, *context); !auth.ok()) {
    reactor->Finish(ToGrpcStatus(auth));
    return reactor;
  }
  ServedModel* model = context_.repository->Find(request->name());
  if (model == nullptr) {
    reactor->Finish(
        ToGrpcStatus(absl::NotFoundError(absl::StrCat("unknown model '", request->name(), "'"))));
    return reactor;
  }
  *response->mutable_summary() = Summarize(*model);
  if (model->ready()) {
    const streaming::Program& program = *model->program;
    *response->mutable_input() = ToTensorSpec(program.input);
    for (const auto& output : program.outputs) *response->add_outputs() = ToTensorSpec(output);
    response->set_warmup_frames(program.warmup_frames);
    response->set_state_bytes(program.state_bytes);
    response->set_backend(model->backend);
    response->set_max_batch(model->config.max_batch());
    response->set_program(program.Describe());
  }
  response->set_sessions_active(model->sessions_active.load());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace sluice::server
