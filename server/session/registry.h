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
  // `max_sessions` caps sessions across all models (0 = no cap).
  explicit SessionRegistry(int max_sessions) : max_sessions_(max_sessions) {}

  // Reserves a place for a new session on a model whose live-session count is `model_active`
  // and whose own cap is `model_limit` (0 = none). Returns the new session id, or
  // RESOURCE_EXHAUSTED naming the limit hit.
  absl::StatusOr<std::string> Admit(const std::string& model, int model_limit,
                                    std::atomic<int64_t>* model_active);
  // Gives back a place Admit reserved (whether or not the session was added).
  void Release(std::atomic<int64_t>* model_active);

  void Add(std::shared_ptr<Session> session, absl::Duration idle_timeout);
  void Remove(const std::string& id);

  int64_t active() const { return active_.load(); }
  void ForEach(const std::function<void(Session&)>& fn) const;
  // Ends sessions idle for longer than their timeout with DEADLINE_EXCEEDED.
  void ReapIdle(absl::Time now);

 private:
  struct Entry {
    std::weak_ptr<Session> session;
    absl::Duration idle_timeout;
    bool reaped = false;
  };
  const int max_sessions_;
  std::atomic<int64_t> active_{0};
  std::atomic<uint64_t> next_id_{1};
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SESSION_REGISTRY_H_
