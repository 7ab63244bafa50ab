// Internal to the soak (soak_runner.h): one soak session, the state machine that opens (or
// resumes) a stream on the server, sends its seeded random frames in random chunks, steps the
// local reference as it sends, checks every output, and plays its chaos plan (stream drops
// followed by a resume or a restart, reader stalls, bursts), or, with expect_drain, checks what a
// drained stream answered. A worker thread drives it through Poll(), which never waits on the
// server except for an Open's answer.
#ifndef SLUICE_CLIENT_CLI_SOAK_SESSION_H_
#define SLUICE_CLIENT_CLI_SOAK_SESSION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/cli/chaos_proxy.h"
#include "client/cli/soak_reference.h"
#include "client/cli/soak_runner.h"
#include "client/cli/soak_verifier.h"
#include "client/lib/session.h"
#include "client/lib/streaming_client.h"

namespace sluice::client {

// The counts of one worker's sessions and the first few failure lines. Thread-safe: the worker
// adds, the progress reporter reads.
class SoakTally {
 public:
  void Add(int64_t SoakCounts::*field, int64_t n = 1) ABSL_LOCKS_EXCLUDED(mu_);
  void Max(int64_t SoakCounts::*field, int64_t value) ABSL_LOCKS_EXCLUDED(mu_);
  // An unexpected failure, by status code name.
  void Error(const std::string& code, std::string line) ABSL_LOCKS_EXCLUDED(mu_);
  // A line worth showing (e.g. a mismatch); only the first few are kept.
  void Sample(std::string line) ABSL_LOCKS_EXCLUDED(mu_);
  SoakCounts counts() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::string> samples() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  SoakCounts counts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> samples_ ABSL_GUARDED_BY(mu_);
};

// What every session of a run shares; outlives them.
struct SoakContext {
  const SoakOptions* options = nullptr;
  StreamingClient* client = nullptr;  // The shared connections.
  ChaosProxy* proxy = nullptr;        // With chaos only.
};

// Thread-compatible: one worker thread calls everything.
class SoakSession {
 public:
  // `route`: the chaos proxy port this session connects through on a connection of its own, or
  // -1 to use the shared client. `reference` and `tally` belong to the worker and outlive it.
  SoakSession(const SoakContext& context, int index, std::string model, ReferenceModel* reference,
              SoakTally* tally, int route);
  ~SoakSession();

  // Does whatever is due now; true when it made progress (sent, received or changed state).
  bool Poll();
  // Completed or failed.
  bool finished() const { return state_ == State::kDone || state_ == State::kFailed; }
  // Ends an unfinished session as failed with `status`.
  void Abort(const absl::Status& status);

 private:
  enum class State { kOpen, kStreaming, kClosing, kDisconnecting, kResuming, kDone, kFailed };

  struct ChaosEvent {
    enum Kind { kStall, kBurst, kDisconnect };
    Kind kind = kStall;
    int64_t seq = 0;  // Played when the frames before this seq have been sent.
    absl::Duration stall;
    int64_t burst = 0;
    bool resume = false;  // kDisconnect: resume the session (else restart from scratch) ...
    bool reset = false;   // ... after a TCP reset of its connection (else a client cancel).
  };
  static std::vector<ChaosEvent> MakePlan(uint64_t seed, int64_t frames, bool own_connection);

  StreamingClient* client() const { return own_client_ ? own_client_.get() : context_.client; }
  // Makes the session's own client (through its proxy route) when it needs one and has none.
  bool EnsureClient();
  std::unique_ptr<Session> NewStream();
  void OpenNew();
  void TryResume();
  // Reads what has arrived, waiting up to `wait` for the first response or the stream's end;
  // false when nothing came.
  bool Read(absl::Duration wait);
  // Reads a dropped stream to its end (briefly waiting for it), then resumes at once or
  // restarts.
  bool Drain();
  void StreamEnded(const absl::Status& status);
  // The server ended the stream by draining it: checks what it answered (CheckDrainedStream),
  // then opens once more, which the draining server must refuse.
  void ServerDrained();
  // An Open refused because the server is draining: the session ends.
  void Refused();
  // False when the session failed.
  bool HandleResponse(const v1::StreamResponse& response);
  bool CheckOutputs(const v1::Outputs& outputs);
  // Sends due resends and new frames within the in-flight limit, plays due chaos events, and
  // closes after the last frame.
  bool Send();
  // Fills frames_ with frames [first, first + count) of the current attempt.
  void MakeFrames(int64_t first, int64_t count);
  // Sends frames_ (count frames); false when the stream refused them (it is ending).
  bool SendFrames(int64_t count);
  // Plays `event`; false when it dropped the stream.
  bool Play(const ChaosEvent& event);
  void FinishDisconnect();
  void Restart();
  void Complete();
  // Ends the session as failed: with `status`, or with a response that breaks the API's rules.
  void Fail(const absl::Status& status, const std::string& what);
  void FailProtocol(const std::string& what);
  void End(const std::string& code, const std::string& what);
  std::string Name() const;

  const SoakContext context_;
  const int index_;
  const std::string model_;
  ReferenceModel* const reference_;
  SoakTally* const tally_;
  const int route_;
  const uint64_t seed_;
  std::mt19937_64 rng_;  // Chunk sizes and wire layouts.

  State state_ = State::kOpen;
  SlotId slot_ = -1;
  int attempt_ = 0;  // Restarts so far; each attempt streams different frames.
  std::vector<ChaosEvent> plan_;
  size_t next_event_ = 0;
  v1::Opened opened_;  // Of the attempt's first stream.
  OutputVerifier verifier_;
  int64_t sent_ = 0;         // Frames of this attempt sent (and stepped in the reference).
  int64_t resend_next_ = 0;  // After a resume: the next frame to send again, up to sent_.
  int64_t chunk_ = 0;        // The next chunk's size, drawn once.
  int64_t burst_left_ = 0;
  absl::Time stall_until_ = absl::InfinitePast();
  // Disconnecting: how the drop ends and what follows.
  bool resume_next_ = false;
  bool reset_ = false;      // The drop is a connection reset (else a cancel).
  bool cancelled_ = false;  // The stream was cancelled: the drop, or after an unnoticed reset.
  absl::Time dropped_at_;
  absl::Time disconnect_deadline_;
  // Resuming: the next attempt and the retry backoff.
  absl::Time retry_at_;
  absl::Time resume_deadline_;
  absl::Duration backoff_;
  // Expect-drain: the seq of the first frame the server refused with an Error response, and
  // whether this session's stream was drained (so its next Open must be refused).
  std::optional<uint64_t> refused_seq_;
  bool saw_drain_ = false;

  std::vector<float> frames_;                // Scratch: frames to send.
  std::vector<float> output_;                // Scratch: one reference or received output frame.
  std::vector<std::vector<float>> decoded_;  // Scratch: one Outputs response per model output.

  // Declared last, the stream goes before the client it runs on.
  std::unique_ptr<StreamingClient> own_client_;
  std::unique_ptr<Session> stream_;
};

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_SOAK_SESSION_H_
