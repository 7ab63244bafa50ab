#include "server/scheduler/scheduler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/common/status_macros.h"
#include "server/admin/metrics.h"
#include "spdlog/spdlog.h"

namespace sluice::server {

Scheduler::Scheduler(SchedulerOptions options, std::shared_ptr<const streaming::Program> program_in,
                     std::unique_ptr<Backend> backend, ModelMetrics* metrics)
    : options_(std::move(options)),
      program_(std::move(program_in)),
      backend_(std::move(backend)),
      metrics_(metrics) {
  const streaming::Program& program = *program_;
  shadowing_ = static_cast<bool>(options_.make_fallback);
  backend_name_ = backend_->name();
  const size_t num_outputs = program.outputs.size();
  turn_.reserve(options_.max_batch);
  again_.reserve(options_.max_batch);
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
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // A caller of Enqueue may still be running its turn.
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !stepping_; };
  mu_.Await(absl::Condition(&idle));
}

void Scheduler::Enqueue(std::shared_ptr<Session> session, bool may_step_here) {
  {
    absl::MutexLock lock(&mu_);
    // With a max_queue_delay the scheduler thread would wait for other sessions: only a session
    // alone on this instance, which it would dispatch at once, may skip it.
    const bool step_here = may_step_here && options_.step_on_caller_when_idle && started_ &&
                           !stopping_ && !stepping_ && ready_.empty() &&
                           lone_session_ == session.get() &&
                           (options_.max_queue_delay <= absl::ZeroDuration() || live_slots_ <= 1);
    if (!step_here) {
      ready_.push_back(std::move(session));
      return;
    }
    stepping_ = true;
  }
  turn_.push_back(std::move(session));
  RunTurnAndRelease();
}

std::string Scheduler::backend_name() const {
  absl::MutexLock lock(&mu_);
  return backend_name_;
}

std::string Scheduler::degraded_reason() const {
  absl::MutexLock lock(&mu_);
  return degraded_reason_;
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
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || (!ready_.empty() && !stepping_);
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopping_) return;
      // The backend is idle: optionally wait a little for more sessions to become ready, but
      // not once every session holding a slot here is (nobody else could join the batch; a lone
      // session then pays no delay). Nobody takes the token while ready_ is not empty.
      auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        const auto ready = static_cast<int64_t>(ready_.size());
        return stopping_ || ready >= options_.max_batch || ready >= live_slots_;
      };
      if (options_.max_queue_delay > absl::ZeroDuration() && !full()) {
        mu_.AwaitWithTimeout(absl::Condition(&full), options_.max_queue_delay);
        if (stopping_) return;
      }
      while (!ready_.empty() && static_cast<int>(turn_.size()) < options_.max_batch) {
        turn_.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
      stepping_ = true;
    }
    RunTurnAndRelease();
  }
}

void Scheduler::RunTurnAndRelease() {
  const int64_t stepped = RunTurn();
  const Session* lone = turn_.size() == 1 && stepped == 1 ? turn_[0].get() : nullptr;
  for (std::shared_ptr<Session>& session : turn_) {
    if (session->EndTurn()) again_.push_back(std::move(session));
  }
  turn_.clear();
  absl::MutexLock lock(&mu_);
  for (std::shared_ptr<Session>& session : again_) ready_.push_back(std::move(session));
  // Cleared before the token goes: the next holder may be another thread.
  again_.clear();
  stepping_ = false;
  lone_session_ = lone;
  if (stepped > 0) {
    ++steps_;
    frames_ += stepped;
  }
}

void Scheduler::AddLiveSlots(int64_t delta) {
  absl::MutexLock lock(&mu_);
  live_slots_ += delta;
}

void Scheduler::FreeSessionSlot(Session& session) {
  backend_->FreeSlot(session.slot()).IgnoreError();
  shadows_.erase(session.slot());
  session.set_slot(-1);
  AddLiveSlots(-1);
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
      AddLiveSlots(1);
      if (shadowing_) shadows_[*slot] = Shadow{&session, {}, {}};
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
        if (auto it = shadows_.find(session.slot()); it != shadows_.end()) {
          it->second.snapshot.clear();
          it->second.frames.clear();
        }
      }
      response.mutable_reset_done()->set_next_seq(entry.seq);
      session.Respond(std::move(response));
      return;
    }
    case SessionEntry::Kind::kClose: {
      if (session.slot() >= 0) FreeSessionSlot(session);
      session.CloseProcessed(entry.close_status);
      return;
    }
    case SessionEntry::Kind::kFrame:
      break;
  }
}

int64_t Scheduler::RunTurn() {
  items_.clear();
  item_sessions_.clear();
  item_entries_.clear();
  for (size_t i = 0; i < turn_.size(); ++i) {
    Session& session = *turn_[i];
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
  if (items_.empty()) return 0;
  const absl::Time start = absl::Now();
  if (metrics_ != nullptr) {
    metrics_->batch_size.Observe(static_cast<double>(items_.size()));
    for (const SessionEntry* entry : item_entries_) {
      metrics_->queue_delay_seconds.Observe(absl::ToDoubleSeconds(start - entry->arrival));
    }
  }
  const absl::Status status = StepWithFallback();
  const absl::Time end = absl::Now();
  if (step_seconds_ != nullptr) step_seconds_->Observe(absl::ToDoubleSeconds(end - start));
  if (!status.ok()) {
    spdlog::error("model {}: step of {} frames failed: {}", options_.model, items_.size(),
                  status.ToString());
    for (Session* session : item_sessions_) {
      FreeSessionSlot(*session);
      session->CloseProcessed(
          absl::InternalError(absl::StrCat("the backend failed a step: ", status.message())));
    }
    return 0;
  }
  if (shadowing_) UpdateShadows();
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
  return static_cast<int64_t>(items_.size());
}

absl::Status Scheduler::StepWithFallback() {
  // The stepping token makes this the backend's only caller, so Step runs without any lock held.
  for (size_t j = 0; j < outputs_.size(); ++j) output_ptrs_[j] = outputs_[j].data();
  absl::Status status =
      backend_->Step(items_, output_ptrs_, absl::MakeSpan(ready_flags_.data(), items_.size()));
  if (status.ok() || !shadowing_) return status;
  RETURN_IF_ERROR(FallBack(status));
  for (size_t i = 0; i < items_.size(); ++i) items_[i].slot = item_sessions_[i]->slot();
  return backend_->Step(items_, output_ptrs_, absl::MakeSpan(ready_flags_.data(), items_.size()));
}

void Scheduler::UpdateShadows() {
  for (size_t i = 0; i < items_.size(); ++i) {
    auto it = shadows_.find(items_[i].slot);
    if (it == shadows_.end()) continue;
    Shadow& shadow = it->second;
    shadow.frames.push_back(std::move(item_entries_[i]->frame));
    if (static_cast<int>(shadow.frames.size()) < options_.snapshot_interval_frames) continue;
    absl::StatusOr<std::vector<uint8_t>> state = backend_->ExportSlot(items_[i].slot);
    if (!state.ok()) continue;  // Keep the frames; the next step will tell if the device died.
    shadow.snapshot = *std::move(state);
    shadow.frames.clear();
  }
}

absl::Status Scheduler::FallBack(const absl::Status& cause) {
  spdlog::error("model {}: {} backend failed ({}); moving {} session(s) to the CPU", options_.model,
                backend_->name(), cause.ToString(), shadows_.size());
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> cpu, options_.make_fallback());
  // Rebuild every session's state: its last snapshot, then the frames stepped since.
  std::map<SlotId, Shadow> moved;
  size_t longest = 0;
  std::vector<std::pair<SlotId, const Shadow*>> order;
  for (auto& [old_slot, shadow] : shadows_) {
    ASSIGN_OR_RETURN(SlotId slot, cpu->AllocateSlot());
    if (!shadow.snapshot.empty()) RETURN_IF_ERROR(cpu->ImportSlot(slot, shadow.snapshot));
    shadow.session->set_slot(slot);
    longest = std::max(longest, shadow.frames.size());
    moved[slot] = std::move(shadow);
  }
  std::vector<StepItem> replay;
  std::vector<std::vector<float>> scratch(outputs_.size());
  std::vector<float*> scratch_ptrs(outputs_.size());
  for (size_t j = 0; j < outputs_.size(); ++j) {
    scratch[j].resize(options_.max_batch * program_->outputs[j].frame_size);
    scratch_ptrs[j] = scratch[j].data();
  }
  std::vector<uint8_t> ready(options_.max_batch);
  for (size_t t = 0; t < longest; ++t) {
    replay.clear();
    for (const auto& [slot, shadow] : moved) {
      if (t < shadow.frames.size()) replay.push_back(StepItem{slot, shadow.frames[t].data()});
    }
    for (size_t first = 0; first < replay.size(); first += options_.max_batch) {
      const size_t count = std::min<size_t>(options_.max_batch, replay.size() - first);
      RETURN_IF_ERROR(cpu->Step(absl::MakeSpan(replay).subspan(first, count), scratch_ptrs,
                                absl::MakeSpan(ready.data(), count)));
    }
  }
  const size_t migrated = moved.size();
  shadows_.clear();
  shadowing_ = false;  // The CPU is the last resort: nothing to shadow any more.
  backend_ = std::move(cpu);
  if (metrics_ != nullptr) {
    metrics_->fallbacks.fetch_add(1, std::memory_order_relaxed);
    metrics_->sessions_migrated.fetch_add(static_cast<int64_t>(migrated),
                                          std::memory_order_relaxed);
    step_seconds_ = metrics_->StepSeconds(backend_->name());
  }
  {
    absl::MutexLock lock(&mu_);
    backend_name_ = backend_->name();
    degraded_reason_ =
        absl::StrCat("model ", options_.model, " fell back to the CPU after: ", cause.message());
  }
  spdlog::warn("model {}: {} session(s) now on the CPU backend", options_.model, migrated);
  return absl::OkStatus();
}

}  // namespace sluice::server
