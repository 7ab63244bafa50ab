// libFuzzer target: config.pbtxt text -> ParseModelConfig -> ApplyDefaults ->
// ValidateModelConfig (server/repository/config.h), linked without gRPC. Invariants: errors
// are InvalidArgument; a config that validates keeps its values in the documented ranges and
// survives a text-format round trip unchanged.
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/repository/config.h"
#include "tests/fuzz/fuzz_support.h"

namespace sluice::fuzz {

// The bundled models' configs and one that sets every field.
std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  for (const char* name : {"cnn_tiny", "kws_cnn", "tick_lstm"}) {
    seeds.push_back(ReadFileOrEmpty(SourcePath(absl::StrCat("models/", name, "/config.pbtxt"))));
  }
  seeds.push_back(
      "# every field\n"
      "name: \"m\"\nbackend: BACKEND_OPENCL\nprecision: PRECISION_FP32\nmax_batch: 64\n"
      "max_queue_delay_us: 500\ninstance_count: 2\ntime_axis: 2\nmax_sessions: 100\n"
      "session_idle_timeout_ms: 1000\nsession_queue_frames: 32\nopencl_binary: \"m.aocx\"\n");
  return seeds;
}

}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  sluice::fuzz::WriteSeedsIfAsked();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sluice::server::ParseModelConfig;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = ParseModelConfig(text, "config.pbtxt");
  if (!config.ok()) {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument,
               config.status().ToString());
    return 0;
  }
  if (config->name().empty()) config->set_name("fuzz");
  sluice::server::ApplyDefaults(&*config);
  FUZZ_CHECK(config->has_max_batch() && config->has_instance_count() &&
                 config->has_session_idle_timeout_ms() && config->has_session_queue_frames(),
             "ApplyDefaults left a field unset");
  const absl::Status valid = sluice::server::ValidateModelConfig(*config);
  if (!valid.ok()) {
    FUZZ_CHECK(valid.code() == absl::StatusCode::kInvalidArgument, valid.ToString());
    return 0;
  }
  FUZZ_CHECK(config->max_batch() >= 1 && config->max_batch() <= 4096, "max_batch");
  FUZZ_CHECK(config->instance_count() >= 1 && config->instance_count() <= 64, "instance_count");
  FUZZ_CHECK(config->session_queue_frames() >= 1, "session_queue_frames");
  FUZZ_CHECK(config->max_queue_delay_us() >= 0, "max_queue_delay_us");
  FUZZ_CHECK(config->session_idle_timeout_ms() >= 0, "session_idle_timeout_ms");
  FUZZ_CHECK(config->max_sessions() >= 0, "max_sessions");
  FUZZ_CHECK(!config->has_time_axis() || config->time_axis() >= 0, "time_axis");

  std::string printed;
  FUZZ_CHECK(google::protobuf::TextFormat::PrintToString(*config, &printed), "PrintToString");
  auto again = ParseModelConfig(printed, "printed");
  FUZZ_CHECK(again.ok(), "re-parse of printed config: ", again.status().ToString(), "\n", printed);
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*config, *again),
             "text-format round trip changed the config:\n", printed);
  return 0;
}
