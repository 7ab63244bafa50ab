#include "server/scheduler/scheduler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/admin/metrics.h"
#include "spdlog/spdlog.h"

namespace sluice::server {

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<Backend> backend,
                     ModelMetrics* metrics)
    : options_(std::move(options)), backend_(std::move(backend)), metrics_(metrics) {
  const streaming::Program& program = backend_->program();
  const size_t num_outputs = program.outputs.size();
  entries_.resize(options_.max_batch);
  items_.reserve(options_.max_batch);
  item_sessions_.reserve(options_.max_batch);
  item_entries_.reserve(options_.max_batch);
  outputs_.resize(num_outputs);
  output_ptrs_.resize(num_outputs);
  frame_outputs_.resize(num_outputs);
  for (size_t j = 0; j < num_outputs; ++j) {
    outputs_[j].resize(options_.max_batch * program.outputs[j].frame_size);
    output_frame_shapes_.push_back(program.outputs[j].frame_shape);
    output_sizes_.push_back(program.outputs[j].frame_size);
  }
  ready_flags_.resize(options_.max_batch);
  if (metrics_ != nullptr) step_seconds_ = metrics_->StepSeconds(backend_->name());
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Enqueue(std::shared_ptr<Session> session) {
  absl::MutexLock lock(&mu_);
  ready_.push_back(std::move(session));
}

int64_t Scheduler::steps() const {
  absl::MutexLock lock(&mu_);
  return steps_;
}

int64_t Scheduler::frames() const {
  absl::MutexLock lock(&mu_);
  return frames_;
}

void Scheduler::Loop() {
  std::vector<std::shared_ptr<Session>> turn;
  turn.reserve(options_.max_batch);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !ready_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopping_) return;
      if (options_.max_queue_delay > absl::ZeroDuration() &&
          static_cast<int>(ready_.size()) < options_.max_batch) {
        // The backend is idle: optionally wait a little for more sessions to become ready.
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || static_cast<int>(ready_.size()) >= options_.max_batch;
        };
        mu_.AwaitWithTimeout(absl::Condition(&full), options_.max_queue_delay);
        if (stopping_) return;
      }
      while (!ready_.empty() && static_cast<int>(turn.size()) < options_.max_batch) {
        turn.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
    }
    RunTurn(turn);
    // Sessions with more work go to the back of the line (round robin across sessions).
    std::vector<std::shared_ptr<Session>> again;
    for (std::shared_ptr<Session>& session : turn) {
      if (session->EndTurn()) again.push_back(std::move(session));
    }
    turn.clear();
    if (!again.empty()) {
      absl::MutexLock lock(&mu_);
      for (std::shared_ptr<Session>& session : again) ready_.push_back(std::move(session));
    }
  }
}

void Scheduler::ProcessControl(Session& session, SessionEntry& entry) {
  switch (entry.kind) {
    case SessionEntry::Kind::kOpen: {
      absl::StatusOr<SlotId> slot = backend_->AllocateSlot();
      if (!slot.ok()) {
        spdlog::warn("session {}: no state slot on model {}: {}", session.id(), options_.model,
                     slot.status().ToString());
        session.CloseProcessed(slot.status());
        return;
      }
      session.set_slot(*slot);
      session.Respond(std::move(entry.response));
      return;
    }
    case SessionEntry::Kind::kReset: {
      v1::StreamResponse response;
      if (session.slot() >= 0) {
        const absl::Status status = backend_->ResetSlot(session.slot());
        if (!status.ok()) {
          session.CloseProcessed(status);
          return;
        }
      }
      response.mutable_reset_done()->set_next_seq(entry.seq);
      session.Respond(std::move(response));
      return;
    }
    case SessionEntry::Kind::kClose: {
      if (session.slot() >= 0) {
        backend_->FreeSlot(session.slot()).IgnoreError();
        session.set_slot(-1);
      }
      session.CloseProcessed(entry.close_status);
      return;
    }
    case SessionEntry::Kind::kFrame:
      break;
  }
}

void Scheduler::RunTurn(std::vector<std::shared_ptr<Session>>& sessions) {
  items_.clear();
  item_sessions_.clear();
  item_entries_.clear();
  for (size_t i = 0; i < sessions.size(); ++i) {
    Session& session = *sessions[i];
    SessionEntry& entry = entries_[i];
    if (!session.PopEntry(&entry)) continue;
    if (entry.kind != SessionEntry::Kind::kFrame) {
      ProcessControl(session, entry);
      continue;
    }
    const SlotId slot = session.slot();
    if (slot < 0) continue;  // The open failed; the session is finishing.
    items_.push_back(StepItem{slot, entry.frame.data()});
    item_sessions_.push_back(&session);
    item_entries_.push_back(&entry);
  }
  if (items_.empty()) return;
  const absl::Time start = absl::Now();
  if (metrics_ != nullptr) {
    metrics_->batch_size.Observe(static_cast<double>(items_.size()));
    for (const SessionEntry* entry : item_entries_) {
      metrics_->queue_delay_seconds.Observe(absl::ToDoubleSeconds(start - entry->arrival));
    }
  }
  // This thread is the backend's only caller, so Step runs without any lock held.
  for (size_t j = 0; j < outputs_.size(); ++j) output_ptrs_[j] = outputs_[j].data();
  const absl::Status status =
      backend_->Step(items_, output_ptrs_, absl::MakeSpan(ready_flags_.data(), items_.size()));
  const absl::Time end = absl::Now();
  if (step_seconds_ != nullptr) step_seconds_->Observe(absl::ToDoubleSeconds(end - start));
  if (!status.ok()) {
    spdlog::error("model {}: step of {} frames failed: {}", options_.model, items_.size(),
                  status.ToString());
    for (Session* session : item_sessions_) {
      backend_->FreeSlot(session->slot()).IgnoreError();
      session->set_slot(-1);
      session->CloseProcessed(
          absl::InternalError(absl::StrCat("the backend failed a step: ", status.message())));
    }
    return;
  }
  std::vector<const float*>& frame_outputs = frame_outputs_;
  for (size_t i = 0; i < items_.size(); ++i) {
    if (!ready_flags_[i]) continue;  // Warm-up: this frame completes no output.
    for (size_t j = 0; j < outputs_.size(); ++j) {
      frame_outputs[j] = outputs_[j].data() + i * output_sizes_[j];
    }
    const SessionEntry& entry = *item_entries_[i];
    item_sessions_[i]->AppendOutput(entry.seq, entry.has_tag ? &entry.tag : nullptr,
                                    frame_outputs.data(), output_sizes_.data(),
                                    output_frame_shapes_);
    if (metrics_ != nullptr) {
      metrics_->frames_out.fetch_add(1, std::memory_order_relaxed);
      metrics_->frame_latency_seconds.Observe(absl::ToDoubleSeconds(end - entry.arrival));
    }
  }
  absl::MutexLock lock(&mu_);
  ++steps_;
  frames_ += static_cast<int64_t>(items_.size());
}

}  // namespace sluice::server
