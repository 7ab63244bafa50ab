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
  if (!session->resume_token().empty()) resume_tokens_[session->resume_token()] = session->id();
  const std::string id = session->id();
  sessions_[id] = Entry{std::move(session), idle_timeout, false};
}

void SessionRegistry::Remove(const std::string& id) {
  std::shared_ptr<Session> removed;  // Destroyed after the lock is released.
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  removed = std::move(it->second.session);
  if (!removed->resume_token().empty()) resume_tokens_.erase(removed->resume_token());
  sessions_.erase(it);
}

std::string SessionRegistry::NewResumeToken() {
  std::random_device entropy;
  std::string token;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&token, absl::Hex(entropy(), absl::kZeroPad8));
  return token;
}

std::shared_ptr<Session> SessionRegistry::FindByResumeToken(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = resume_tokens_.find(token);
  if (it == resume_tokens_.end()) return nullptr;
  auto entry = sessions_.find(it->second);
  return entry == sessions_.end() ? nullptr : entry->second.session;
}

void SessionRegistry::ForEach(const std::function<void(Session&)>& fn) const {
  std::vector<std::shared_ptr<Session>> live;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : sessions_) {
      live.push_back(entry.session);
    }
  }
  for (const auto& session : live) fn(*session);
}

void SessionRegistry::ReapIdle(absl::Time now) {
  std::vector<std::pair<std::shared_ptr<Session>, absl::Status>> expired;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, entry] : sessions_) {
      if (entry.reaped) continue;
      const std::shared_ptr<Session>& session = entry.session;
      if (const std::optional<absl::Time> since = session->detached_since()) {
        if (now - *since < resume_grace_) continue;
        expired.emplace_back(session, absl::DeadlineExceededError(absl::StrCat(
                                          "session not resumed within ",
                                          absl::ToInt64Milliseconds(resume_grace_), " ms")));
      } else {
        if (entry.idle_timeout <= absl::ZeroDuration() ||
            now - session->last_activity() < entry.idle_timeout) {
          continue;
        }
        expired.emplace_back(session, absl::DeadlineExceededError(absl::StrCat(
                                          "session idle for more than ",
                                          absl::ToInt64Milliseconds(entry.idle_timeout), " ms")));
      }
      entry.reaped = true;
    }
  }
  for (auto& [session, status] : expired) session->EnqueueClose(status, /*drop_pending=*/true);
}

}  // namespace sluice::server
