#include "client/lib/session.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/lib/frame_layout.h"
#include "client/lib/stream_call.h"

namespace sluice::client {

Session::Session(v1::Streaming::Stub* stub, SessionOptions options)
    : call_(std::make_shared<internal::StreamCall>(std::move(options))) {
  call_->Start(stub);
}

Session::~Session() {
  if (!call_->done()) call_->Cancel();
  call_->Finish().IgnoreError();
}

absl::StatusOr<v1::Opened> Session::Open(absl::string_view model, absl::string_view tag,
                                         absl::Duration timeout) {
  v1::Open open;
  open.set_model(std::string(model));
  open.set_session_tag(std::string(tag));
  return SendOpen(std::move(open), timeout);
}

absl::StatusOr<v1::Opened> Session::Resume(absl::string_view resume_token,
                                           std::optional<uint64_t> last_output_seq,
                                           absl::string_view model, absl::Duration timeout) {
  if (resume_token.empty()) return absl::InvalidArgumentError("empty resume token");
  v1::Open open;
  open.set_model(std::string(model));
  open.set_resume_token(std::string(resume_token));
  if (last_output_seq.has_value()) open.set_last_output_seq(*last_output_seq);
  return SendOpen(std::move(open), timeout);
}

absl::StatusOr<v1::Opened> Session::SendOpen(v1::Open open, absl::Duration timeout) {
  if (open_called_.exchange(true)) {
    return absl::FailedPreconditionError("Open() or Resume() was already called on this session");
  }
  v1::StreamRequest request;
  *request.mutable_open() = std::move(open);
  // When the write fails the stream is ending: wait for its status, which is what Open() reports.
  call_->Write(std::move(request)).IgnoreError();
  absl::StatusOr<v1::Opened> opened = call_->AwaitOpened(timeout);
  if (!opened.ok()) return opened.status();
  opened_ = *opened;
  opened_ok_.store(true, std::memory_order_release);
  return opened;
}

absl::Status Session::SendTyped(v1::DataType dtype, const void* frames, int count,
                                absl::Span<const std::string> tags, v1::Frames::Layout layout) {
  if (!opened_ok_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError("SendFrames() before a successful Open()");
  }
  if (!tags.empty() && static_cast<int>(tags.size()) != count) {
    return absl::InvalidArgumentError(
        absl::StrCat(tags.size(), " tags for ", count, " frames; give none or one per frame"));
  }
  absl::StatusOr<v1::Tensor> tensor = PackFrames(opened_.input(), dtype, frames, count, layout);
  if (!tensor.ok()) return tensor.status();
  v1::StreamRequest request;
  v1::Frames* out = request.mutable_frames();
  *out->mutable_tensor() = *std::move(tensor);
  out->set_layout(layout);
  for (const std::string& tag : tags) out->add_tags(tag);
  return call_->Write(std::move(request));
}

absl::Status Session::SendFrames(const float* frames, int count, absl::Span<const std::string> tags,
                                 v1::Frames::Layout layout) {
  return SendTyped(v1::FLOAT32, frames, count, tags, layout);
}

absl::Status Session::SendFrames(const int16_t* frames, int count,
                                 absl::Span<const std::string> tags, v1::Frames::Layout layout) {
  return SendTyped(v1::INT16, frames, count, tags, layout);
}

absl::Status Session::SendRaw(v1::Frames frames) {
  if (!open_called_.load()) return absl::FailedPreconditionError("SendRaw() before Open()");
  v1::StreamRequest request;
  *request.mutable_frames() = std::move(frames);
  return call_->Write(std::move(request));
}

absl::Status Session::Reset() {
  if (!open_called_.load()) return absl::FailedPreconditionError("Reset() before Open()");
  v1::StreamRequest request;
  request.mutable_reset();
  return call_->Write(std::move(request));
}

absl::Status Session::Close() { return call_->CloseSend(); }

void Session::Cancel() { call_->Cancel(); }

absl::StatusOr<std::optional<v1::StreamResponse>> Session::Next(absl::Duration timeout) {
  if (!open_called_.load()) return absl::FailedPreconditionError("Next() before Open()");
  return call_->Next(timeout);
}

absl::Status Session::Finish() { return call_->Finish(); }

bool Session::done() const { return call_->done(); }

std::optional<uint64_t> Session::served_through() const { return call_->served_through(); }

std::optional<uint64_t> ServedThroughFromTrailers(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto found = trailers.find(kServedThroughTrailer);
  uint64_t next_seq = 0;
  if (found == trailers.end() ||
      !absl::SimpleAtoi(absl::string_view(found->second.data(), found->second.size()), &next_seq)) {
    return std::nullopt;
  }
  return next_seq;
}

}  // namespace sluice::client
