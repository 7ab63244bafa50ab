#include "server/session/registry.h"

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice::server {

absl::StatusOr<std::string> SessionRegistry::Admit(const std::string& model, int model_limit,
                                                   std::atomic<int64_t>* model_active) {
  const int64_t total = active_.fetch_add(1) + 1;
  const int64_t on_model = model_active->fetch_add(1) + 1;
  if (max_sessions_ > 0 && total > max_sessions_) {
    Release(model_active);
    return absl::ResourceExhaustedError(
        absl::StrCat("the server holds its maximum of ", max_sessions_, " sessions"));
  }
  if (model_limit > 0 && on_model > model_limit) {
    Release(model_active);
    return absl::ResourceExhaustedError(
        absl::StrCat("model ", model, " holds its maximum of ", model_limit, " sessions"));
  }
  static const uint32_t kProcessSalt = std::random_device{}();
  return absl::StrFormat("%08x-%d", kProcessSalt, next_id_.fetch_add(1));
}

void SessionRegistry::Release(std::atomic<int64_t>* model_active) {
  active_.fetch_sub(1);
  model_active->fetch_sub(1);
}

void SessionRegistry::Add(std::shared_ptr<Session> session, absl::Duration idle_timeout) {
  absl::MutexLock lock(&mu_);
  sessions_[session->id()] = Entry{session, idle_timeout, false};
}

void SessionRegistry::Remove(const std::string& id) {
  absl::MutexLock lock(&mu_);
  sessions_.erase(id);
}

void SessionRegistry::ForEach(const std::function<void(Session&)>& fn) const {
  std::vector<std::shared_ptr<Session>> live;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : sessions_) {
      if (auto session = entry.session.lock()) live.push_back(std::move(session));
    }
  }
  for (const auto& session : live) fn(*session);
}

void SessionRegistry::ReapIdle(absl::Time now) {
  std::vector<std::pair<std::shared_ptr<Session>, absl::Duration>> idle;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, entry] : sessions_) {
      if (entry.reaped || entry.idle_timeout <= absl::ZeroDuration()) continue;
      auto session = entry.session.lock();
      if (session == nullptr || now - session->last_activity() < entry.idle_timeout) continue;
      entry.reaped = true;
      idle.emplace_back(std::move(session), entry.idle_timeout);
    }
  }
  for (auto& [session, timeout] : idle) {
    session->EnqueueClose(
        absl::DeadlineExceededError(
            absl::StrCat("session idle for more than ", absl::ToInt64Milliseconds(timeout), " ms")),
        /*drop_pending=*/true);
  }
}

}  // namespace sluice::server
