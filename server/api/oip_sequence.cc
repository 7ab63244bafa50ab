#include "server/api/oip_sequence.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/admin/metrics.h"
#include "spdlog/spdlog.h"

namespace sluice::server {
namespace {

// A unary caller may queue this many times the model's session_queue_frames on one sequence.
constexpr int64_t kUnaryBacklogFactor = 16;

}  // namespace

std::shared_ptr<OipSequence> OipSequence::Open(const ServiceContext& context, ServedModel* model,
                                               std::string session_id, OipSequenceParams params,
                                               std::function<void(OipSequence*)> on_end) {
  std::shared_ptr<OipSequence> sequence(
      new OipSequence(context, model, std::move(session_id), std::move(params), std::move(on_end)));
  SessionLimits limits;
  limits.queue_frames = model->config.session_queue_frames();
  limits.outbox_frames = std::max(256, 4 * limits.queue_frames);
  const std::string tag =
      sequence->params_.has_id ? absl::StrCat("oip:", sequence->params_.Display()) : "oip";
  auto session = std::make_shared<Session>(sequence->session_id_, model->name, tag,
                                           model->PickInstance(), sequence.get(), limits);
  sequence->session_ = session;
  {
    absl::MutexLock lock(&sequence->mu_);
    sequence->self_ = sequence;
  }
  context.registry->Add(session, absl::Milliseconds(model->config.session_idle_timeout_ms()));
  if (model->metrics != nullptr) {
    model->metrics->sessions_total.fetch_add(1);
    model->metrics->sessions_active.fetch_add(1);
  }
  spdlog::debug("session {} opened on model {} for OIP sequence {}", sequence->session_id_,
                model->name, sequence->params_.has_id ? sequence->params_.Display() : "(none)");
  // The Opened response comes back through StartWrite, where it is dropped: OIP has no such
  // message.
  v1::StreamResponse opened;
  opened.mutable_opened()->set_session_id(sequence->session_id_);
  opened.mutable_opened()->set_model(model->name);
  session->Start(std::move(opened));
  // A drain that began before the session was registered has not seen it.
  if (context.draining != nullptr && context.draining->load()) {
    session->EnqueueClose(absl::UnavailableError("the server is shutting down"));
  }
  return sequence;
}

OipSequence::OipSequence(const ServiceContext& context, ServedModel* model, std::string session_id,
                         OipSequenceParams params, std::function<void(OipSequence*)> on_end)
    : context_(context),
      model_(model),
      session_id_(std::move(session_id)),
      params_(std::move(params)),
      on_end_(std::move(on_end)),
      backlog_frames_limit_(std::max(1, model->config.session_queue_frames())) {}

OipSequence::~OipSequence() = default;

absl::Status OipSequence::Named(const absl::Status& status) const {
  if (!params_.has_id) return status;
  return absl::Status(status.code(),
                      absl::StrCat("sequence ", params_.Display(), ": ", status.message()));
}

bool OipSequence::Submit(OipRequest request, std::function<void()> resume) {
  const auto frames = static_cast<int64_t>(request.frames.size());
  bool feed_now = false;
  bool room = true;
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || end_queued_) {
      refused = absl::InvalidArgumentError(
          absl::StrCat("sequence_id ", params_.Display(),
                       " is not active; send sequence_start to begin a new sequence"));
    } else if (!resume && !backlog_.empty() &&
               backlog_frames_ + frames > kUnaryBacklogFactor * backlog_frames_limit_) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("sequence ", params_.Display(), " already has ", backlog_frames_,
                       " frames queued; wait for earlier requests to be answered"));
    } else {
      if (request.end) end_queued_ = true;
      if (read_wanted_ && backlog_.empty()) {
        read_wanted_ = false;
        feed_now = true;
      } else {
        backlog_frames_ += frames;
        backlog_.push_back(std::move(request));
        if (backlog_frames_ > backlog_frames_limit_) {
          room = false;
          if (resume) resumes_.push_back(std::move(resume));
        }
      }
    }
  }
  if (!refused.ok()) {
    if (request.reply) request.reply(refused);
    return true;
  }
  if (feed_now) Feed(std::move(request));
  return room;
}

void OipSequence::End() {
  OipRequest marker;
  marker.end = true;
  Submit(std::move(marker), nullptr);
}

void OipSequence::Abandon() {
  std::shared_ptr<OipSequence> keep;
  {
    absl::MutexLock lock(&mu_);
    keep = std::move(self_);
  }
  session_->OnStreamDone();
  ReleasePlace();
}

void OipSequence::StartRead() {
  std::optional<OipRequest> next;
  std::vector<std::function<void()>> resumes;
  {
    absl::MutexLock lock(&mu_);
    if (backlog_.empty()) {
      read_wanted_ = true;
    } else {
      next = std::move(backlog_.front());
      backlog_.pop_front();
      backlog_frames_ -= static_cast<int64_t>(next->frames.size());
      if (backlog_frames_ <= backlog_frames_limit_) resumes.swap(resumes_);
    }
  }
  if (next) Feed(std::move(*next));
  for (auto& resume : resumes) resume();
}

void OipSequence::Feed(OipRequest request) {
  const auto count = static_cast<int64_t>(request.frames.size());
  const int64_t warmup = model_->program->warmup_frames;
  if (request.reply) {
    absl::MutexLock lock(&mu_);
    Pending pending;
    pending.id = std::move(request.id);
    pending.reply = std::move(request.reply);
    pending.outputs = std::move(request.outputs);
    pending.first_seq = fed_frames_;
    pending.frames = count;
    // Output s completes at frame s + warm-up: frames [a, a + k) complete those past the warm-up.
    pending.expected = std::max<int64_t>(0, fed_frames_ + count - std::max(fed_frames_, warmup));
    pending.data.resize(pending.outputs.size());
    for (size_t j = 0; j < pending.outputs.size(); ++j) {
      pending.data[j].reserve(pending.expected *
                              model_->program->outputs[pending.outputs[j]].frame_size);
    }
    fed_frames_ += count;
    pending_.push_back(std::move(pending));
    if (request.notice) notice_ = std::move(request.notice);
    CollectAnsweredLocked();
  }
  if (count > 0) {
    // False when the session is already closing (idle timeout, drain): then it finishes with
    // that status, which answers this request too.
    if (session_->EnqueueFrames(std::move(request.frames), {}) && model_->metrics != nullptr) {
      model_->metrics->frames_in.fetch_add(count);
    }
  }
  if (request.end) session_->EnqueueClose(absl::OkStatus());
  session_->OnReadDone();
  DeliverAnswers();
}

void OipSequence::StartWrite(const v1::StreamResponse* response) {
  if (response->has_outputs()) {
    const v1::Outputs& outputs = response->outputs();
    const streaming::Program& program = *model_->program;
    absl::MutexLock lock(&mu_);
    for (int64_t i = 0; i < static_cast<int64_t>(outputs.count()); ++i) {
      const int64_t seq = static_cast<int64_t>(outputs.first_seq()) + i;
      Pending* owner = nullptr;
      for (Pending& pending : pending_) {
        if (seq >= pending.first_seq && seq < pending.first_seq + pending.frames) {
          owner = &pending;
          break;
        }
      }
      if (owner == nullptr || owner->got >= owner->expected) {
        spdlog::error("session {}: output of frame {} matches no waiting OIP request", session_id_,
                      seq);
        continue;
      }
      for (size_t j = 0; j < owner->outputs.size(); ++j) {
        const int index = owner->outputs[j];
        const int64_t size = program.outputs[index].frame_size;
        const auto* data =
            reinterpret_cast<const float*>(outputs.tensors(index).data().data()) + i * size;
        owner->data[j].insert(owner->data[j].end(), data, data + size);
      }
      ++owner->got;
    }
    CollectAnsweredLocked();
  } else if (response->has_error()) {
    spdlog::warn("session {}: in-stream error for an OIP sequence: {}", session_id_,
                 response->error().status().message());
  }
  // Everything needed is copied: the session may reuse the response.
  session_->OnWriteDone(true);
  DeliverAnswers();
}

void OipSequence::Finish(const absl::Status& status) {
  std::shared_ptr<OipSequence> keep;
  std::vector<std::function<void()>> resumes;
  std::vector<OipReply> unfed;
  OipNotice notice;
  const absl::Status named = Named(status);
  {
    absl::MutexLock lock(&mu_);
    keep = std::move(self_);
    finished_ = true;
    const bool absorbed = !pending_.empty() || !backlog_.empty();
    for (Pending& pending : pending_) {
      absl::Status answer = named;
      if (status.ok() && pending.got < pending.expected) {
        answer = Named(absl::InternalError(absl::StrCat("the session ended after ", pending.got,
                                                        " of the ", pending.expected,
                                                        " outputs of request '", pending.id, "'")));
      }
      if (status.ok() && answer.ok()) {
        answers_.push_back(Answer{std::move(pending), absl::OkStatus()});
      } else {
        answers_.push_back(Answer{std::move(pending), answer});
      }
    }
    pending_.clear();
    for (OipRequest& request : backlog_) {
      if (request.reply) unfed.push_back(std::move(request.reply));
    }
    backlog_.clear();
    backlog_frames_ = 0;
    resumes.swap(resumes_);
    if (!status.ok() && !absorbed) notice = std::move(notice_);
    notice_ = nullptr;
  }
  if (!status.ok()) {
    spdlog::debug("OIP sequence {} on model {} ended: {}", params_.Display(), model_->name,
                  status.ToString());
  }
  ReleasePlace();
  if (on_end_) on_end_(this);
  DeliverAnswers();
  const absl::Status unfed_status =
      status.ok() ? Named(absl::UnavailableError("the sequence ended before this request")) : named;
  for (OipReply& reply : unfed) reply(unfed_status);
  for (auto& resume : resumes) resume();
  if (notice) notice(named);
}

void OipSequence::ReleasePlace() {
  {
    absl::MutexLock lock(&mu_);
    if (released_) return;
    released_ = true;
  }
  context_.registry->Remove(session_id_);
  context_.registry->Release(&model_->sessions_active);
  if (model_->metrics != nullptr) model_->metrics->sessions_active.fetch_sub(1);
}

void OipSequence::CollectAnsweredLocked() {
  while (!pending_.empty() && pending_.front().got >= pending_.front().expected) {
    answers_.push_back(Answer{std::move(pending_.front()), absl::OkStatus()});
    pending_.pop_front();
  }
}

void OipSequence::DeliverAnswers() {
  const streaming::Program& program = *model_->program;
  while (true) {
    Answer answer;
    {
      absl::MutexLock lock(&mu_);
      if (delivering_ || answers_.empty()) return;
      delivering_ = true;
      answer = std::move(answers_.front());
      answers_.pop_front();
    }
    Pending& pending = answer.pending;
    if (answer.status.ok()) {
      pending.reply(MakeInferResponse(model_->name, pending.id, program, pending.outputs,
                                      pending.data, pending.got, &params_));
    } else {
      pending.reply(answer.status);
    }
    absl::MutexLock lock(&mu_);
    delivering_ = false;
  }
}

}  // namespace sluice::server
