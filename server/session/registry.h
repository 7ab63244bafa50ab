// The set of live sessions: admission limits, idle timeouts, and draining at shutdown.
#ifndef SLUICE_SERVER_SESSION_REGISTRY_H_
#define SLUICE_SERVER_SESSION_REGISTRY_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/session/session.h"

namespace sluice::server {

// Thread-safe.
class SessionRegistry {
 public:
  // `max_sessions` caps sessions across all models (0 = no cap). Detached resumable sessions
  // are reaped after `resume_grace`.
  explicit SessionRegistry(int max_sessions, absl::Duration resume_grace = absl::ZeroDuration())
      : max_sessions_(max_sessions), resume_grace_(resume_grace) {}

  // Reserves a place for a new session on a model whose live-session count is `model_active`
  // and whose own cap is `model_limit` (0 = none). Returns the new session id, or
  // RESOURCE_EXHAUSTED naming the limit hit.
  absl::StatusOr<std::string> Admit(const std::string& model, int model_limit,
                                    std::atomic<int64_t>* model_active);
  // Gives back a place Admit reserved (whether or not the session was added).
  void Release(std::atomic<int64_t>* model_active);

  // The registry keeps the session alive until Remove (a detached session has no stream).
  void Add(std::shared_ptr<Session> session, absl::Duration idle_timeout);
  void Remove(const std::string& id);
  // A fresh unguessable token (128 random bits, hex) for a resumable session.
  std::string NewResumeToken();
  // The live session with this resume token, or null.
  std::shared_ptr<Session> FindByResumeToken(const std::string& token) const;

  int64_t active() const { return active_.load(); }
  void ForEach(const std::function<void(Session&)>& fn) const;
  // Ends sessions idle for longer than their timeout, and detached sessions not resumed within
  // the resume grace, with DEADLINE_EXCEEDED.
  void ReapIdle(absl::Time now);

 private:
  struct Entry {
    std::shared_ptr<Session> session;
    absl::Duration idle_timeout;
    bool reaped = false;
  };
  const int max_sessions_;
  const absl::Duration resume_grace_;
  std::atomic<int64_t> active_{0};
  std::atomic<uint64_t> next_id_{1};
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> resume_tokens_ ABSL_GUARDED_BY(mu_);  // token -> id
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SESSION_REGISTRY_H_
