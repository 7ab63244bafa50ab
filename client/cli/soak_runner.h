// The soak test behind `sluice-client soak`: N concurrent sessions over several models, each
// streaming F seeded random frames in random chunks, every output checked against a local CPU
// reference of the same model (soak_reference.h) by seq (soak_verifier.h). With chaos, sessions
// also drop their stream mid-way (a client cancel, or a TCP reset through a local relay) and then
// resume it or restart from scratch, stall their reader, and send bursts. With expect_drain the
// server is drained (SIGTERM) during the run instead, and what each drained stream answered is
// checked. A few worker threads drive all sessions; the reference runs on the worker that owns
// the session.
#ifndef SLUICE_CLIENT_CLI_SOAK_RUNNER_H_
#define SLUICE_CLIENT_CLI_SOAK_RUNNER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/lib/streaming_client.h"

namespace sluice::client {

// Frames a session may have sent whose outputs have not arrived yet (bursts included). The
// server must keep at least this many outputs for a resume (--resume_buffer_frames).
inline constexpr int64_t kSoakMaxFramesInFlight = 512;

// Counts over all sessions. Outputs are counted per output frame (one per frame past the
// warm-up); frames per input frame.
struct SoakCounts {
  int64_t frames_sent = 0;         // Distinct frames: each seq of each stream attempt once.
  int64_t frames_resent = 0;       // Sent again after a resume (from Opened.next_seq on).
  int64_t frames_abandoned = 0;    // Sent in attempts given up for a restart.
  int64_t outputs_verified = 0;    // Matched the reference.
  int64_t outputs_mismatched = 0;  // Differed from the reference.
  int64_t outputs_lost = 0;        // Expected but missing when the stream ended OK.
  int64_t outputs_duplicated = 0;  // A seq that had already arrived.
  int64_t outputs_reordered = 0;   // Arrived after an output of a later seq.
  int64_t outputs_unexpected = 0;  // For a frame never sent, or a warm-up frame.
  int64_t sessions_opened = 0;     // New server sessions (first opens and restarts).
  int64_t sessions_resumed = 0;
  int64_t sessions_restarted = 0;
  int64_t sessions_completed = 0;  // Sent every frame, closed, and the stream ended OK.
  int64_t sessions_failed = 0;
  int64_t disconnects = 0;        // Streams the soak cancelled.
  int64_t connection_resets = 0;  // Connections the soak reset (TCP RST).
  int64_t stalls = 0;             // Reader pauses.
  int64_t bursts = 0;
  int64_t resume_retries = 0;  // Resumes answered UNAVAILABLE (old stream closing), retried.
  int64_t resume_ms_max = 0;   // The longest time from a drop to the resumed stream.
  // With expect_drain (see SoakOptions; DrainedStream in soak_verifier.h for the rule):
  int64_t sessions_drained = 0;   // Streams the server ended by draining them.
  int64_t sessions_refused = 0;   // Opens refused because the server was draining.
  int64_t opens_cancelled = 0;    // Of those, Opens gRPC cancelled in the server's final shutdown.
  int64_t frames_answered = 0;    // Frames of drained streams answered before the drain ended them.
  int64_t frames_unanswered = 0;  // Frames of drained streams sent after those.
  int64_t frames_refused = 0;     // Of those, the frames the server refused with an Error.
  int64_t drain_violations = 0;   // Drained streams that broke the rule, and opens that succeeded
                                  // after the session had seen the drain.
  // Unexpected failures by status code name (PROTOCOL: a response that breaks the API's rules).
  std::map<std::string, int64_t> errors;

  void Add(const SoakCounts& other);
  int64_t error_count() const;
};

struct SoakOptions {
  std::string server;               // HOST:PORT, for the chaos relay's upstream.
  std::string repository;           // The model repository the local reference loads from.
  std::vector<std::string> models;  // Sessions are spread over them round robin.
  int sessions = 1;
  int64_t frames = 1000;  // Per session.
  bool chaos = false;
  // The server is drained (SIGTERM) during the run. A stream it ends with UNAVAILABLE "the server
  // is shutting down" is checked with CheckDrainedStream instead of failing; the session then
  // opens once more, which must be refused (UNAVAILABLE, or CANCELLED by gRPC while the server
  // shuts down), and ends. An Open refused with the shutdown message also ends its session. Not
  // with chaos.
  bool expect_drain = false;
  uint64_t seed = 1;
  int workers = 4;
  // How clients of sessions with a connection of their own (chaos) are made.
  ClientOptions client_options;
  absl::Duration open_timeout = absl::Seconds(10);
  // The run is stopped after this; unfinished sessions count as failed (DEADLINE_EXCEEDED).
  absl::Duration timeout = absl::Minutes(30);
  // When set, called every `progress_interval` from the thread running RunSoak.
  std::function<void(const SoakCounts&, absl::Duration elapsed)> progress;
  absl::Duration progress_interval = absl::Seconds(5);
};

struct SoakResult {
  SoakCounts counts;
  absl::Duration elapsed;
  double frames_per_s = 0;           // Distinct frames sent per second.
  double outputs_per_s = 0;          // Verified outputs per second.
  std::vector<std::string> samples;  // The first few failures, one line each.

  // No mismatch, loss, duplicate, reorder, unexpected output or error, and every session done:
  // completed, or (with expect_drain) refused after the drain. With expect_drain also no drain
  // violation, and at least one stream drained.
  bool ok(const SoakOptions& options) const;
};

// Runs the soak with `client` (the shared connections). Errors: InvalidArgument for bad options
// (expect_drain with chaos among them), a model the reference cannot load, or a server address
// the chaos relay cannot resolve; every failure during the run is counted in the result instead.
absl::StatusOr<SoakResult> RunSoak(StreamingClient& client, const SoakOptions& options);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_SOAK_RUNNER_H_
