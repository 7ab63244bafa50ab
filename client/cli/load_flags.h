// Flags of the subcommands that drive many sessions at once (bench, soak). They live in one file
// because a flag can be defined only once; each such command lists this file in its Command.
#ifndef SLUICE_CLIENT_CLI_LOAD_FLAGS_H_
#define SLUICE_CLIENT_CLI_LOAD_FLAGS_H_

#include <cstdint>

#include "absl/flags/declare.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(int, sessions);
ABSL_DECLARE_FLAG(int64_t, frames);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(int, connections);
ABSL_DECLARE_FLAG(absl::Duration, timeout);

#endif  // SLUICE_CLIENT_CLI_LOAD_FLAGS_H_
