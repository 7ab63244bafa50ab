// The soak's check of one session's outputs: the reference output of every frame that completes
// one is registered as the frame is sent (in seq order), and each received output frame is
// matched against it by seq. Only outputs not yet received are kept, so memory follows the frames
// in flight, not the length of the stream.
#ifndef SLUICE_CLIENT_CLI_SOAK_VERIFIER_H_
#define SLUICE_CLIENT_CLI_SOAK_VERIFIER_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace sluice::client {

// fp32 agreement of a served output element with the reference: |got - want| <= 1e-4 +
// 1e-4 * |want| (false for NaN).
bool OutputClose(float got, float want);

struct Verdict {
  enum Kind {
    kVerified,    // Expected, first arrival, every element close.
    kMismatched,  // Expected, first arrival, some element not close.
    kDuplicated,  // Its seq already arrived.
    kUnexpected,  // No frame completing it was sent (or it is a warm-up frame's).
  };
  Kind kind = kVerified;
  // Arrived after an output of a later seq (counted whatever the kind of a first arrival).
  bool reordered = false;
  // kMismatched: the first element that differs.
  int64_t element = -1;
  float got = 0;
  float want = 0;
};

// Thread-compatible.
class OutputVerifier {
 public:
  // `first_seq`: the seq of the first frame that completes an output (the model's warm-up).
  explicit OutputVerifier(uint64_t first_seq = 0) : first_seq_(first_seq), front_seq_(first_seq) {}

  // The reference output (every model output's frame, concatenated) of frame `seq`, which must be
  // the seq after the previous Expect (first_seq for the first).
  void Expect(uint64_t seq, std::vector<float> want);
  // One received output frame (laid out as Expect's), checked and forgotten once it arrived.
  Verdict Receive(uint64_t seq, absl::Span<const float> got);

  // The seq of the oldest expected output that has not arrived; `otherwise` when none is pending.
  uint64_t OldestPending(uint64_t otherwise) const;
  // Expected outputs that have not arrived.
  int64_t pending() const { return pending_; }
  // Expected outputs with a seq below `seq` that have not arrived.
  int64_t PendingBefore(uint64_t seq) const;
  // The highest seq received so far.
  std::optional<uint64_t> last_received() const { return last_received_; }

 private:
  struct Entry {
    std::vector<float> want;
    bool received = false;
  };

  uint64_t first_seq_;
  uint64_t front_seq_;         // The seq of entries_.front().
  std::deque<Entry> entries_;  // Seqs front_seq_ on; the front one has not arrived.
  int64_t pending_ = 0;
  std::optional<uint64_t> last_received_;
};

// What one stream the server ended by draining (UNAVAILABLE "the server is shutting down") proves.
// The server answers every frame it accepted before the drain closed the session, ends the stream
// with the seq its next frame would have had (the sluice-next-seq trailer, Session::
// served_through()), and may refuse the frames it reads after the close with one Error response
// (UNAVAILABLE, seq = the seq the first refused frame would have had); frames it never read get
// nothing. So the outputs received must be a gap-free prefix of the frames sent, and when the
// server named where it ended (the trailer, else the refusal seq; both must agree), the prefix
// must end exactly there: every output before it arrived, none at or after it.
struct DrainedStream {
  // Frames answered: those before the refusal seq when the server named one, else those through
  // the last output received (warm-up frames count once a later output proves they were run).
  int64_t frames_answered = 0;
  int64_t frames_unanswered = 0;  // The frames sent after them.
  int64_t frames_refused = 0;     // Frames sent from the refusal seq on.
  int64_t outputs_lost = 0;       // Outputs the prefix (or the refusal seq) says must have arrived.
  std::string violation;          // Why the stream broke the rule; empty when it kept it.
};

// Checks a drained stream of `frames_sent` frames whose outputs went through `verifier`;
// `refused_seq` is the seq of the server's Error response refusing frames, if one came, and
// `served_through` the stream's trailer, if it had one.
DrainedStream CheckDrainedStream(const OutputVerifier& verifier, int64_t frames_sent,
                                 std::optional<uint64_t> refused_seq,
                                 std::optional<uint64_t> served_through = std::nullopt);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_SOAK_VERIFIER_H_
