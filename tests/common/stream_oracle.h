// The reference-replay oracle of one finished stream, shared by the session fuzzer
// (tests/fuzz/session_fuzzer.cc) and the concurrency harness (tests/tsan/tsan_harness.cc).
//
// The requests the reactor accepted on the stream are replayed, alone, on a reference backend;
// what the stream received must then be: Opened first and once; Outputs of the output spec's
// dtype, shape and byte size, carrying the frames that passed the warm-up in seq order, bit for
// bit equal to the replay, with their tags; a ResetDone per accepted Reset, in order; the
// in-stream Errors the reactor sent; nothing else. How the stream ended (StreamEnd) decides
// whether all of it must have arrived or a prefix.
//
// The end status and anything else specific to how a caller drives the session stay with the
// caller, which turns a non-OK result into its own failure (FUZZ_CHECK, HARNESS_CHECK).
#ifndef SLUICE_TESTS_COMMON_STREAM_ORACLE_H_
#define SLUICE_TESTS_COMMON_STREAM_ORACLE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/backend.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::stream_testing {

// A request the reactor handed to the session, in arrival order: a frame the session queued,
// or a Reset.
struct Accepted {
  bool reset = false;  // A Reset: `frame` and `tag` are empty.
  uint64_t seq = 0;    // The frame's seq; for a Reset, the seq of the frame after it.
  std::vector<float> frame;
  std::optional<std::string> tag;
};

// An in-stream Error the reactor sent: (status code, the stream's next seq when it was sent),
// as the Error response carries them.
using StreamError = std::pair<int, uint64_t>;

// How a stream ended, which decides how much of its responses must have arrived.
enum class StreamEnd {
  // Every accepted request was answered: all the outputs, ResetDones and Errors.
  kComplete,
  // The server closed the session with drop_pending (e.g. a second Open) once the reactor had
  // stopped reading: the outputs and ResetDones may be a prefix; every Error arrived.
  kDropped,
  // Cut short from outside at any moment (client cancel, idle reaping, a failed write): the
  // outputs and ResetDones may be a prefix, the Errors are not compared, and Opened may be
  // missing (then only Errors may come before it).
  kCutShort,
};

// Checks the `responses` a stream received against `accepted` replayed on `reference`, and
// against the `errors` the reactor sent. OK when they match; otherwise an error whose message
// names the response (index and content) and the seq that differ, and how.
//
// `reference` must run the program the stream was served (reference.program(), which must
// have exactly one output) with a free slot; the replay allocates one slot and frees it again,
// so one reference serves every stream in turn.
absl::Status CheckStream(Backend& reference, absl::Span<const Accepted> accepted,
                         absl::Span<const StreamError> errors,
                         absl::Span<const v1::StreamResponse> responses, StreamEnd end);

}  // namespace sluice::stream_testing

#endif  // SLUICE_TESTS_COMMON_STREAM_ORACLE_H_
