// Streams whole offline sequences through a backend frame by frame: the check users run to
// compare a streamed model with its offline original (sluice-run), and what tests use.
#ifndef SLUICE_RUNTIME_STREAMING_SEQUENCE_RUNNER_H_
#define SLUICE_RUNTIME_STREAMING_SEQUENCE_RUNNER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/backend.h"
#include "runtime/common/npy.h"

namespace sluice::streaming {

struct SequenceRunOptions {
  // Sessions per input row, all interleaved frame by frame in shared batches.
  int copies = 1;
  // Batch size per Step (<= the backend's max_batch).
  int batch = 256;
};

// `x` is in the model's offline input layout; each batch row is one session (times
// `copies`). Returns each model output in its offline layout (time = frames - warm-up), rows
// stacked on the batch axis. InvalidArgument when x's rank or dims do not match the model;
// Internal when copies of a row disagree (they must be bitwise equal). Uses and frees its own
// slots on `backend`.
absl::StatusOr<std::vector<NpyArray>> RunSequences(Backend& backend, const NpyArray& x,
                                                   const SequenceRunOptions& options);

}  // namespace sluice::streaming

#endif  // SLUICE_RUNTIME_STREAMING_SEQUENCE_RUNNER_H_
