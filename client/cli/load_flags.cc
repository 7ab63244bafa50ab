#include "client/cli/load_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(int, sessions, 1, "bench, soak: concurrent sessions.");
ABSL_FLAG(int64_t, frames, 1000, "bench, soak: frames per session (bench: the measured ones).");
ABSL_FLAG(bool, json, false, "bench, soak: print one JSON object instead of the report.");
ABSL_FLAG(int, connections, 1, "bench, soak: gRPC connections the sessions are spread over.");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10),
          "bench, soak: cancel the run after this long (unfinished sessions count as errors).");
