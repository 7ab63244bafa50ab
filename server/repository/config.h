// Model configuration: config.pbtxt (text-format sluice.v1.ModelConfig) with defaults.
#ifndef SLUICE_SERVER_REPOSITORY_CONFIG_H_
#define SLUICE_SERVER_REPOSITORY_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "sluice/v1/model_config.pb.h"

namespace sluice::server {

inline constexpr int kDefaultMaxBatch = 256;
inline constexpr int64_t kDefaultSessionIdleTimeoutMs = 300'000;
inline constexpr int kDefaultSessionQueueFrames = 64;

// Parses config.pbtxt text; InvalidArgument with the line and column of a syntax error.
absl::StatusOr<v1::ModelConfig> ParseModelConfig(const std::string& text, const std::string& what);
// The config of the model folder `model_dir`: its config.pbtxt if present, else all defaults;
// name defaults to the folder name. Defaults are applied and the result validated.
absl::StatusOr<v1::ModelConfig> LoadModelConfig(const std::string& model_dir);
// Fills unset fields with their defaults.
void ApplyDefaults(v1::ModelConfig* config);
// InvalidArgument naming the field for out-of-range values.
absl::Status ValidateModelConfig(const v1::ModelConfig& config);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_REPOSITORY_CONFIG_H_
