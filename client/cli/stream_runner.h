// Streams an offline input array through a model on a sluice server, one concurrent session per
// batch row, and reassembles the outputs in the offline layout (what `sluice-client stream` does,
// and what `sluice-run` does locally).
#ifndef SLUICE_CLIENT_CLI_STREAM_RUNNER_H_
#define SLUICE_CLIENT_CLI_STREAM_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/lib/streaming_client.h"
#include "runtime/common/npy.h"

namespace sluice::client {

struct StreamRunOptions {
  std::string model;
  int chunk = 1;  // Frames per Frames request (the last one of a row may be shorter).
  // Wire layout of the Frames tensors: the model's offline layout with time = chunk, or stacked.
  v1::Frames::Layout layout = v1::Frames::OFFLINE;
  absl::Duration open_timeout = absl::Seconds(10);
  // Deadline of each session's stream.
  absl::Duration stream_timeout = absl::Minutes(10);
};

// `x` is in the model's offline input layout (Opened.input.offline_shape with any time length
// and, on the batch axis, any number of rows); row r is streamed by its own session in chunks of
// options.chunk frames. Returns one array per model output in its offline layout with the time
// dim = T - warmup_frames and the rows stacked on the batch axis. InvalidArgument when x does not
// fit the model; the first failing session's status otherwise (an Error response's status
// names its seq).
absl::StatusOr<std::vector<NpyArray>> StreamArray(StreamingClient& client, const NpyArray& x,
                                                  const StreamRunOptions& options);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_STREAM_RUNNER_H_
