#include "client/lib/stream_call.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/lib/status_util.h"

namespace sluice::client::internal {

StreamCall::StreamCall(SessionOptions options) : options_(std::move(options)) {
  if (options_.stream_timeout != absl::InfiniteDuration()) {
    context_.set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoNanoseconds(options_.stream_timeout));
  }
  for (const auto& [key, value] : options_.metadata) context_.AddMetadata(key, value);
}

void StreamCall::Start(v1::Streaming::Stub* stub) {
  self_ = shared_from_this();
  stub->async()->Stream(&context_, this);
  AddHold();  // The writer hold.
  StartRead(&read_buf_);
  StartCall();
}

StreamCall::Actions StreamCall::NextActions() {
  Actions actions;
  if (write_in_flight_) return actions;
  if (!stop_writing_) {
    if (!writes_.empty()) {
      write_in_flight_ = true;
      actions.write = &writes_.front();
      return actions;
    }
    if (close_requested_ && !writes_done_started_) {
      writes_done_started_ = true;
      actions.writes_done = true;
    }
  }
  if ((stop_writing_ || writes_done_started_) && !writer_hold_removed_) {
    writer_hold_removed_ = true;
    actions.remove_writer_hold = true;
  }
  return actions;
}

void StreamCall::Run(const Actions& actions) {
  if (actions.write != nullptr) StartWrite(actions.write);
  if (actions.writes_done) StartWritesDone();
  if (actions.remove_writer_hold) RemoveHold();
}

absl::Status StreamCall::Write(v1::StreamRequest request) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    if (done_ && !final_status_.ok()) return final_status_;
    if (done_ || stop_writing_) {
      return absl::FailedPreconditionError(
          "the session's stream has ended or was cancelled (Finish() tells how)");
    }
    if (close_requested_) return absl::FailedPreconditionError("the session was closed");
    writes_.push_back(std::move(request));
    actions = NextActions();
  }
  Run(actions);
  return absl::OkStatus();
}

absl::Status StreamCall::CloseSend() {
  v1::StreamRequest close;
  close.mutable_close();
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    if (done_ && !final_status_.ok()) return final_status_;
    if (done_ || stop_writing_) {
      return absl::FailedPreconditionError("the session's stream has ended or was cancelled");
    }
    if (close_requested_) return absl::FailedPreconditionError("the session was already closed");
    writes_.push_back(std::move(close));
    close_requested_ = true;
    actions = NextActions();
  }
  Run(actions);
  return absl::OkStatus();
}

void StreamCall::Cancel() {
  context_.TryCancel();
  Actions actions;
  bool resume_read = false;
  {
    absl::MutexLock lock(&mu_);
    stop_writing_ = true;
    cancelled_ = true;
    actions = NextActions();
    // A paused read's hold would keep OnDone (and so Finish() and ~Session) waiting for a Next()
    // that may never come: read on until the cancelled call's reads fail.
    resume_read = std::exchange(read_paused_, false);
  }
  Run(actions);
  if (resume_read) {
    StartRead(&read_buf_);
    RemoveHold();
  }
}

void StreamCall::OnWriteDone(bool ok) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    writes_.pop_front();
    write_in_flight_ = false;
    if (!ok) stop_writing_ = true;  // The stream is broken or ended; OnDone tells why.
    if (stop_writing_) writes_.clear();
    actions = NextActions();
  }
  Run(actions);
}

void StreamCall::OnWritesDoneDone(bool /*ok*/) {}

void StreamCall::HandleOpenResponse(v1::StreamResponse& response) {
  switch (response.kind_case()) {
    case v1::StreamResponse::kOpened:
      opened_ = std::move(*response.mutable_opened());
      open_state_ = OpenState::kOpened;
      break;
    case v1::StreamResponse::kError:
      open_status_ = FromWireStatus(response.error().status());
      if (open_status_.ok()) open_status_ = absl::UnknownError("Open failed with an OK status");
      open_state_ = OpenState::kFailed;
      break;
    default:
      open_status_ = absl::InternalError(
          absl::StrCat("the server answered Open with response kind ", response.kind_case()));
      open_state_ = OpenState::kFailed;
      break;
  }
}

void StreamCall::OnReadDone(bool ok) {
  if (!ok) {
    // The server has ended the stream (or it broke): OnDone follows once writes are stopped.
    Actions actions;
    {
      absl::MutexLock lock(&mu_);
      stop_writing_ = true;
      actions = NextActions();
    }
    Run(actions);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (open_state_ == OpenState::kWaiting) {
      HandleOpenResponse(read_buf_);
      read_buf_.Clear();
    } else if (!options_.on_response) {
      responses_.push_back(std::move(read_buf_));
      read_buf_.Clear();
      if (static_cast<int>(responses_.size()) >= options_.max_queued_responses && !cancelled_) {
        // Resumed by Next(); the hold keeps the call alive without an outstanding read. It is
        // taken under mu_ (AddHold runs no reaction) so that Next() cannot remove it first.
        read_paused_ = true;
        AddHold();
        return;
      }
    }
  }
  if (options_.on_response && read_buf_.kind_case() != v1::StreamResponse::KIND_NOT_SET) {
    options_.on_response(read_buf_);
  }
  StartRead(&read_buf_);
}

void StreamCall::OnDone(const grpc::Status& status) {
  absl::Status final_status = FromGrpcStatus(status);
  {
    // Before on_done, which may ask for it.
    std::optional<uint64_t> served_through = ServedThroughFromTrailers(context_);
    absl::MutexLock lock(&mu_);
    served_through_ = served_through;
  }
  if (options_.on_done) options_.on_done(final_status);
  std::shared_ptr<StreamCall> self;
  {
    absl::MutexLock lock(&mu_);
    final_status_ = std::move(final_status);
    done_ = true;
    if (open_state_ == OpenState::kWaiting) {
      open_status_ = final_status_.ok()
                         ? absl::InternalError("the server ended the stream before Opened")
                         : final_status_;
      open_state_ = OpenState::kFailed;
    }
    self = std::move(self_);
  }
  // `self` may be the last reference: nothing may touch members after this scope ends.
}

std::optional<uint64_t> StreamCall::served_through() const {
  absl::MutexLock lock(&mu_);
  return served_through_;
}

absl::StatusOr<v1::Opened> StreamCall::AwaitOpened(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto answered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return open_state_ != OpenState::kWaiting;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&answered), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("no answer to Open within ", absl::FormatDuration(timeout)));
  }
  if (open_state_ == OpenState::kFailed) return open_status_;
  return opened_;
}

absl::StatusOr<std::optional<v1::StreamResponse>> StreamCall::Next(absl::Duration timeout) {
  if (options_.on_response) {
    return absl::FailedPreconditionError("Next() is not available with an on_response callback");
  }
  std::optional<v1::StreamResponse> response;
  bool resume = false;
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !responses_.empty() || done_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("no response within ", absl::FormatDuration(timeout)));
    }
    if (responses_.empty()) {
      if (final_status_.ok()) return std::optional<v1::StreamResponse>();
      return final_status_;
    }
    response = std::move(responses_.front());
    responses_.pop_front();
    if (read_paused_ && static_cast<int>(responses_.size()) <= options_.max_queued_responses / 2) {
      read_paused_ = false;
      resume = true;
    }
  }
  if (resume) {
    StartRead(&read_buf_);
    RemoveHold();
  }
  return response;
}

absl::Status StreamCall::Finish() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&done_));
  return final_status_;
}

bool StreamCall::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

}  // namespace sluice::client::internal
