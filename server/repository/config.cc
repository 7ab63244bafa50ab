#include "server/repository/config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "runtime/common/status_macros.h"

namespace sluice::server {
namespace {

class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty())
      first_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

absl::StatusOr<v1::ModelConfig> ParseModelConfig(const std::string& text, const std::string& what) {
  v1::ModelConfig config;
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", errors.first()));
  }
  return config;
}

void ApplyDefaults(v1::ModelConfig* config) {
  if (!config->has_max_batch()) config->set_max_batch(kDefaultMaxBatch);
  if (!config->has_instance_count()) config->set_instance_count(1);
  if (!config->has_session_idle_timeout_ms()) {
    config->set_session_idle_timeout_ms(kDefaultSessionIdleTimeoutMs);
  }
  if (!config->has_session_queue_frames()) {
    config->set_session_queue_frames(kDefaultSessionQueueFrames);
  }
}

absl::Status ValidateModelConfig(const v1::ModelConfig& config) {
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", config.name(), ": config field ", field, " ", why));
  };
  if (config.max_batch() < 1 || config.max_batch() > 4096) {
    return bad("max_batch", absl::StrCat("= ", config.max_batch(), " is outside [1, 4096]"));
  }
  if (config.max_queue_delay_us() < 0 || config.max_queue_delay_us() > 1'000'000) {
    return bad("max_queue_delay_us",
               absl::StrCat("= ", config.max_queue_delay_us(), " is outside [0, 1000000]"));
  }
  if (config.instance_count() < 1 || config.instance_count() > 64) {
    return bad("instance_count",
               absl::StrCat("= ", config.instance_count(), " is outside [1, 64]"));
  }
  if (config.max_sessions() < 0) return bad("max_sessions", "is negative");
  if (config.session_idle_timeout_ms() < 0) return bad("session_idle_timeout_ms", "is negative");
  if (config.session_queue_frames() < 1 || config.session_queue_frames() > 65536) {
    return bad("session_queue_frames",
               absl::StrCat("= ", config.session_queue_frames(), " is outside [1, 65536]"));
  }
  if (config.has_time_axis() && config.time_axis() < 0) return bad("time_axis", "is negative");
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  const std::filesystem::path file = dir / "config.pbtxt";
  v1::ModelConfig config;
  if (std::filesystem::exists(file)) {
    std::ifstream in(file);
    if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read ", file.string()));
    std::stringstream text;
    text << in.rdbuf();
    ASSIGN_OR_RETURN(config, ParseModelConfig(text.str(), file.string()));
  }
  if (config.name().empty()) config.set_name(dir.filename().string());
  ApplyDefaults(&config);
  RETURN_IF_ERROR(ValidateModelConfig(config));
  return config;
}

}  // namespace sluice::server
