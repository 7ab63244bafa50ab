#include "server/session/session.h"

#include <cstring>
#include <utility>

#include "server/scheduler/scheduler.h"

namespace sluice::server {

Session::Session(std::string id, std::string model, std::string tag, Scheduler* scheduler,
                 StreamSink* sink, SessionLimits limits)
    : id_(std::move(id)),
      model_(std::move(model)),
      tag_(std::move(tag)),
      scheduler_(scheduler),
      limits_(limits),
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

void Session::ScheduleIfClaimed(bool claimed) {
  if (claimed) scheduler_->Enqueue(shared_from_this());
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

bool Session::EnqueueFrames(std::vector<std::vector<float>> frames, std::vector<std::string> tags) {
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
  ScheduleIfClaimed(claimed);
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
    outbox_.push_back(std::move(response));
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
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    read_closed_ = true;
  }
  EnqueueClose(absl::OkStatus());
}

void Session::OnWriteDone(bool ok) {
  bool claimed;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (in_write_.has_outputs()) outbox_frames_ -= in_write_.outputs().count();
    in_write_.Clear();
    if (!ok) {
      // The client is gone: nothing more can be delivered.
      write_failed_ = true;
      outbox_.clear();
      outbox_frames_ = 0;
    }
    claimed = ClaimScheduleLocked();
  }
  if (!ok) EnqueueClose(absl::CancelledError("the client went away"), /*drop_pending=*/true);
  ScheduleIfClaimed(claimed);
  Pump();
}

void Session::OnStreamDone() {
  {
    absl::MutexLock lock(&mu_);
    sink_ = nullptr;
  }
  // Frees the slot if the stream ended before its close was processed.
  EnqueueClose(absl::CancelledError("stream ended"), /*drop_pending=*/true);
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
    outbox_.push_back(std::move(response));
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
      outbox_.emplace_back();
      merged = outbox_.back().mutable_outputs();
      merged->set_first_seq(seq);
      for (size_t j = 0; j < frame_shapes.size(); ++j) {
        v1::Tensor* tensor = merged->add_tensors();
        tensor->set_dtype(v1::FLOAT32);
        tensor->add_shape(0);
        for (int64_t d : frame_shapes[j]) tensor->add_shape(d);
      }
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
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
    queue_.clear();
    queued_frames_ = 0;
  }
  Pump();
}

bool Session::EndTurn() {
  absl::MutexLock lock(&mu_);
  if (RunnableLocked()) return true;
  scheduled_ = false;
  return false;
}

void Session::Pump() {
  {
    absl::MutexLock lock(&mu_);
    if (pumping_) {
      pump_again_ = true;
      return;
    }
    pumping_ = true;
  }
  while (true) {
    enum class Action { kNone, kRead, kWrite, kFinish } action = Action::kNone;
    StreamSink* sink = nullptr;
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      pump_again_ = false;
      sink = sink_;
      if (finished_ || sink == nullptr) {
        pumping_ = false;
        return;
      }
      if (!writing_ && !outbox_.empty()) {
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
        action = Action::kFinish;
      } else {
        pumping_ = false;
        return;
      }
    }
    switch (action) {
      case Action::kRead:
        sink->StartRead();
        break;
      case Action::kWrite:
        sink->StartWrite(&in_write_);
        break;
      case Action::kFinish:
        sink->Finish(status);
        {
          absl::MutexLock lock(&mu_);
          pumping_ = false;
        }
        return;
      case Action::kNone:
        break;
    }
  }
}

}  // namespace sluice::server
