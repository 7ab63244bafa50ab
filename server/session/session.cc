#include "server/session/session.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/scheduler/scheduler.h"

namespace sluice::server {

namespace {

// Drops the frames with seq <= `after` from an Outputs response; false when none is left.
bool DropOutputsThrough(v1::Outputs* outputs, uint64_t after) {
  const uint64_t count = outputs->count();
  if (outputs->first_seq() > after) return true;
  if (outputs->first_seq() + count <= after + 1) return false;
  const uint64_t drop = after + 1 - outputs->first_seq();
  for (v1::Tensor& tensor : *outputs->mutable_tensors()) {
    const size_t frame_bytes = tensor.data().size() / count;
    tensor.mutable_data()->erase(0, drop * frame_bytes);
    tensor.set_shape(0, static_cast<int64_t>(count - drop));
  }
  if (outputs->tags_size() > 0) {
    outputs->mutable_tags()->DeleteSubrange(0, static_cast<int>(drop));
  }
  outputs->set_first_seq(after + 1);
  outputs->set_count(static_cast<uint32_t>(count - drop));
  return true;
}

}  // namespace

Session::Session(std::string id, std::string model, std::string tag, Scheduler* scheduler,
                 StreamSink* sink, SessionLimits limits, std::string resume_token)
    : id_(std::move(id)),
      model_(std::move(model)),
      tag_(std::move(tag)),
      scheduler_(scheduler),
      limits_(limits),
      resume_token_(std::move(resume_token)),
      sink_(sink),
      last_activity_(absl::Now()) {}

Session::~Session() = default;

bool Session::RunnableLocked() const {
  return !queue_.empty() && outbox_frames_ < limits_.outbox_frames && !final_status_;
}

bool Session::ClaimScheduleLocked() {
  if (scheduled_ || !RunnableLocked()) return false;
  scheduled_ = true;
  return true;
}

void Session::ScheduleIfClaimed(bool claimed, bool may_step_here) {
  if (claimed) scheduler_->Enqueue(shared_from_this(), may_step_here);
}

void Session::Start(v1::StreamResponse opened) {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    SessionEntry open;
    open.kind = SessionEntry::Kind::kOpen;
    open.response = std::move(opened);
    open.arrival = absl::Now();
    queue_.push_back(std::move(open));
    claimed = ClaimScheduleLocked();
  }
  ScheduleIfClaimed(claimed);
  Pump();
}

bool Session::EnqueueFrames(std::vector<std::vector<float>> frames, std::vector<std::string> tags,
                            bool may_step_here) {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    last_activity_ = now;
    if (close_queued_) return false;
    for (size_t i = 0; i < frames.size(); ++i) {
      SessionEntry entry;
      entry.kind = SessionEntry::Kind::kFrame;
      entry.seq = next_seq_++;
      entry.frame = std::move(frames[i]);
      if (i < tags.size()) {
        entry.tag = std::move(tags[i]);
        entry.has_tag = true;
      }
      entry.arrival = now;
      queue_.push_back(std::move(entry));
    }
    queued_frames_ += static_cast<int64_t>(frames.size());
    claimed = ClaimScheduleLocked();
  }
  ScheduleIfClaimed(claimed, may_step_here);
  return true;
}

void Session::EnqueueReset() {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    last_activity_ = absl::Now();
    if (close_queued_) return;
    SessionEntry entry;
    entry.kind = SessionEntry::Kind::kReset;
    entry.seq = next_seq_;  // The seq the next frame will get.
    entry.arrival = last_activity_;
    queue_.push_back(std::move(entry));
    claimed = ClaimScheduleLocked();
  }
  ScheduleIfClaimed(claimed);
}

void Session::EnqueueClose(const absl::Status& status, bool drop_pending) {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    if (close_queued_) return;
    close_queued_ = true;
    if (drop_pending) {
      // Keep the Open (the slot must exist before it can be freed); drop frames and resets.
      std::deque<SessionEntry> kept;
      for (SessionEntry& entry : queue_) {
        if (entry.kind == SessionEntry::Kind::kOpen) kept.push_back(std::move(entry));
      }
      entries_dropped_ = entries_dropped_ || kept.size() < queue_.size();
      queue_ = std::move(kept);
      queued_frames_ = 0;
    }
    SessionEntry entry;
    entry.kind = SessionEntry::Kind::kClose;
    entry.close_status = status;
    entry.arrival = absl::Now();
    queue_.push_back(std::move(entry));
    claimed = ClaimScheduleLocked();
  }
  ScheduleIfClaimed(claimed);
  Pump();
}

void Session::RespondError(const absl::Status& status) {
  v1::StreamResponse response;
  auto* error = response.mutable_error();
  error->mutable_status()->set_code(static_cast<int32_t>(status.code()));
  error->mutable_status()->set_message(std::string(status.message()));
  {
    absl::MutexLock lock(&mu_);
    error->set_seq(next_seq_);
    // Nothing may overtake Opened, which waits for the slot allocation.
    if (opened_sent_) {
      outbox_.push_back(std::move(response));
    } else {
      held_until_opened_.push_back(std::move(response));
    }
  }
  Pump();
}

void Session::OnReadDone() {
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
  }
  Pump();
}

void Session::OnReadClosed() {
  bool dropped;
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    read_closed_ = true;
    dropped = !resume_token_.empty() && !close_queued_;
  }
  if (dropped) {
    Disconnect(absl::CancelledError("the stream ended without Close"));
  } else {
    // Without Close the client cannot know all went well: gRPC also ends the reads this way when
    // a request cannot be parsed. Every frame received is still answered.
    EnqueueClose(absl::InvalidArgumentError(
        "the request stream ended without Close (or with a request that could not be parsed); "
        "every frame received was answered"));
  }
}

void Session::Disconnect(const absl::Status& status) {
  if (resume_token_.empty()) {
    EnqueueClose(status, /*drop_pending=*/true);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    // A session already closing ends as it would have; a detached one has no link to drop.
    if (close_queued_ || final_status_.has_value() || sink_ == nullptr) return;
    disconnecting_ = true;
    read_closed_ = true;
  }
  Pump();
}

absl::Status Session::Attach(StreamSink* sink, std::optional<uint64_t> last_output_seq,
                             v1::StreamResponse opened) {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    if (resume_token_.empty() || close_queued_ || final_status_.has_value()) {
      return absl::NotFoundError(absl::StrCat("session ", id_, " has ended"));
    }
    if (!detached_since_.has_value()) {
      return absl::UnavailableError(absl::StrCat(
          "session ", id_, " is still attached to a stream that is closing; retry the resume"));
    }
    if (evicted_through_.has_value() &&
        (!last_output_seq.has_value() || *evicted_through_ > *last_output_seq)) {
      return absl::OutOfRangeError(absl::StrCat(
          "outputs after seq ",
          last_output_seq.has_value() ? absl::StrCat(*last_output_seq) : std::string("(none)"),
          " are no longer buffered: outputs through seq ", *evicted_through_,
          " were evicted from the resume buffer"));
    }
    // Replay order: Opened, the retained written outputs, then the never-written ones.
    std::deque<v1::StreamResponse> replay;
    replay.push_back(std::move(opened));
    replay.back().mutable_opened()->set_next_seq(next_seq_);
    for (std::deque<v1::StreamResponse>* source : {&sent_, &outbox_}) {
      for (v1::StreamResponse& response : *source) {
        if (response.has_outputs() && last_output_seq.has_value() &&
            !DropOutputsThrough(response.mutable_outputs(), *last_output_seq)) {
          continue;
        }
        replay.push_back(std::move(response));
      }
    }
    sent_.clear();
    sent_frames_ = 0;
    outbox_ = std::move(replay);
    outbox_frames_ = 0;
    for (const v1::StreamResponse& response : outbox_) {
      if (response.has_outputs()) outbox_frames_ += response.outputs().count();
    }
    sink_ = sink;
    detached_since_.reset();
    reading_ = false;
    read_closed_ = false;
    writing_ = false;
    last_activity_ = absl::Now();
    claimed = ClaimScheduleLocked();
  }
  ScheduleIfClaimed(claimed);
  Pump();
  return absl::OkStatus();
}

std::optional<absl::Time> Session::detached_since() const {
  absl::MutexLock lock(&mu_);
  return detached_since_;
}

void Session::RetainLocked(v1::StreamResponse response) {
  sent_frames_ += response.outputs().count();
  sent_.push_back(std::move(response));
  while (!sent_.empty() &&
         sent_frames_ - sent_.front().outputs().count() >= limits_.resume_buffer_frames) {
    const v1::Outputs& oldest = sent_.front().outputs();
    evicted_through_ = oldest.first_seq() + oldest.count() - 1;
    sent_frames_ -= oldest.count();
    sent_.pop_front();
  }
}

void Session::ReleaseIfEnded() {
  {
    absl::MutexLock lock(&mu_);
    if (!final_status_.has_value()) return;
  }
  if (on_release_ && !released_.exchange(true)) on_release_();
}

void Session::OnWriteDone(bool ok) {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (in_write_.has_outputs()) {
      outbox_frames_ -= in_write_.outputs().count();
      if (!resume_token_.empty()) {
        // A failed write may still have reached the client: keep it for replay too.
        RetainLocked(std::move(in_write_));
      } else if (!spare_outputs_.has_outputs()) {
        spare_outputs_ = std::move(in_write_);
      }
    }
    in_write_.Clear();
    if (!ok && resume_token_.empty()) {
      // The client is gone: nothing more can be delivered.
      write_failed_ = true;
      outbox_.clear();
      outbox_frames_ = 0;
    }
    claimed = ClaimScheduleLocked();
  }
  if (!ok) Disconnect(absl::CancelledError("the client went away"));
  ScheduleIfClaimed(claimed);
  Pump();
}

void Session::OnStreamDone() {
  bool detached;
  {
    absl::MutexLock lock(&mu_);
    sink_ = nullptr;
    detached = disconnecting_ && !close_queued_ && !final_status_.has_value();
    disconnecting_ = false;
    sink_finishing_ = false;
    if (detached) detached_since_ = absl::Now();
  }
  if (detached) return;
  // Frees the slot if the stream ended before its close was processed.
  EnqueueClose(absl::CancelledError("stream ended"), /*drop_pending=*/true);
  ReleaseIfEnded();
}

uint64_t Session::next_seq() const {
  absl::MutexLock lock(&mu_);
  return next_seq_;
}

absl::Time Session::last_activity() const {
  absl::MutexLock lock(&mu_);
  return last_activity_;
}

bool Session::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_ || (final_status_.has_value() && sink_ == nullptr);
}

bool Session::PopEntry(SessionEntry* entry) {
  bool resume_reading;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return false;
    *entry = std::move(queue_.front());
    queue_.pop_front();
    if (entry->kind == SessionEntry::Kind::kFrame) --queued_frames_;
    // Reading resumes once the queue has room again.
    resume_reading = !reading_ && !read_closed_ && queued_frames_ < limits_.queue_frames;
  }
  if (resume_reading) Pump();
  return true;
}

SlotId Session::slot() const {
  absl::MutexLock lock(&mu_);
  return slot_;
}

void Session::set_slot(SlotId slot) {
  absl::MutexLock lock(&mu_);
  slot_ = slot;
}

void Session::Respond(v1::StreamResponse response) {
  {
    absl::MutexLock lock(&mu_);
    if (write_failed_) return;
    const bool opened = response.has_opened();
    outbox_.push_back(std::move(response));
    if (opened) {
      opened_sent_ = true;
      for (v1::StreamResponse& held : held_until_opened_) outbox_.push_back(std::move(held));
      held_until_opened_.clear();
    }
  }
  Pump();
}

void Session::AppendOutput(uint64_t seq, const std::string* tag, const float* const* outputs,
                           const int64_t* sizes,
                           const std::vector<std::vector<int64_t>>& frame_shapes) {
  bool new_response = false;
  {
    absl::MutexLock lock(&mu_);
    if (write_failed_) return;
    v1::Outputs* merged = nullptr;
    if (!outbox_.empty() && outbox_.back().has_outputs()) {
      v1::Outputs* last = outbox_.back().mutable_outputs();
      if (last->first_seq() + last->count() == seq &&
          static_cast<int>(last->count()) < limits_.max_frames_per_response &&
          (tag != nullptr) == (last->tags_size() > 0)) {
        merged = last;
      }
    }
    if (merged == nullptr) {
      if (spare_outputs_.has_outputs()) {
        // Same model, same tensors: only the frame count, the bytes and the tags change.
        outbox_.push_back(std::move(spare_outputs_));
        merged = outbox_.back().mutable_outputs();
        merged->set_count(0);
        merged->clear_tags();
        for (v1::Tensor& tensor : *merged->mutable_tensors()) tensor.mutable_data()->clear();
      } else {
        outbox_.emplace_back();
        merged = outbox_.back().mutable_outputs();
        for (size_t j = 0; j < frame_shapes.size(); ++j) {
          v1::Tensor* tensor = merged->add_tensors();
          tensor->set_dtype(v1::FLOAT32);
          tensor->add_shape(0);
          for (int64_t d : frame_shapes[j]) tensor->add_shape(d);
        }
      }
      merged->set_first_seq(seq);
      new_response = true;
    }
    merged->set_count(merged->count() + 1);
    for (size_t j = 0; j < frame_shapes.size(); ++j) {
      v1::Tensor* tensor = merged->mutable_tensors(static_cast<int>(j));
      tensor->set_shape(0, merged->count());
      tensor->mutable_data()->append(reinterpret_cast<const char*>(outputs[j]),
                                     sizes[j] * sizeof(float));
    }
    if (tag != nullptr) merged->add_tags(*tag);
    ++outbox_frames_;
  }
  if (new_response) Pump();
}

void Session::CloseProcessed(const absl::Status& status) {
  bool no_stream;
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
    queue_.clear();
    queued_frames_ = 0;
    no_stream = sink_ == nullptr;
  }
  // A detached session has no stream to finish: it ends here.
  if (no_stream) ReleaseIfEnded();
  Pump();
}

bool Session::EndTurn() {
  absl::MutexLock lock(&mu_);
  if (RunnableLocked()) return true;
  scheduled_ = false;
  return false;
}

void Session::Pump() {
  // The lock is held at the top of the loop and released around each stream operation. A Pump
  // that finds another one running returns at once: that one re-reads the state after every
  // operation and stops only when nothing is due, under the lock, so it misses no change.
  mu_.Lock();
  if (pumping_) {
    mu_.Unlock();
    return;
  }
  pumping_ = true;
  while (true) {
    enum class Action { kRead, kWrite, kFinish, kDetach } action;
    StreamSink* const sink = sink_;
    absl::Status status;
    std::optional<uint64_t> served_through;
    if (finished_ || sink == nullptr || sink_finishing_) {
      break;
    } else if (disconnecting_) {
      // The link dropped: finish this stream once its write is back; the session stays.
      if (writing_) break;
      sink_finishing_ = true;
      action = Action::kDetach;
    } else if (!writing_ && !outbox_.empty()) {
      writing_ = true;
      in_write_ = std::move(outbox_.front());
      outbox_.pop_front();
      action = Action::kWrite;
    } else if (!reading_ && !read_closed_ && !close_queued_ &&
               queued_frames_ < limits_.queue_frames) {
      reading_ = true;
      action = Action::kRead;
    } else if (final_status_.has_value() && !writing_ && outbox_.empty()) {
      finished_ = true;
      status = *final_status_;
      if (!entries_dropped_ && !write_failed_) served_through = next_seq_;
      action = Action::kFinish;
    } else {
      break;
    }
    mu_.Unlock();
    switch (action) {
      case Action::kRead:
        sink->StartRead();
        break;
      case Action::kWrite:
        sink->StartWrite(&in_write_);
        break;
      case Action::kDetach:
        sink->Finish(absl::CancelledError("the link dropped; the session waits for a resume"));
        break;
      case Action::kFinish:
        // Give the session's place back before the client can see the stream end.
        ReleaseIfEnded();
        if (served_through.has_value()) sink->SetServedThrough(*served_through);
        sink->Finish(status);
        break;
    }
    mu_.Lock();
    if (action == Action::kDetach || action == Action::kFinish) break;
  }
  pumping_ = false;
  mu_.Unlock();
}

}  // namespace sluice::server
