// sluice-client stream: streams an offline .npy input through a model on the server and writes
// the outputs in the offline layout (Y.npy, Y_1.npy, ... for several outputs, like sluice-run).
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands.h"
#include "client/cli/common_flags.h"
#include "client/cli/stream_runner.h"
#include "runtime/common/npy.h"

ABSL_FLAG(std::string, input, "",
          "stream: float32 .npy input in the model's offline layout; each batch row is streamed "
          "by its own concurrent session.");
ABSL_FLAG(std::string, output, "",
          "stream: where to write the outputs (.npy, offline layout, time = T - warm-up). With "
          "several model outputs, output k>0 goes to <stem>_<k>.npy.");
ABSL_FLAG(int, chunk, 1, "stream: frames per Frames request.");
ABSL_FLAG(std::string, layout, "offline",
          "stream: wire layout of each chunk: offline (the model's offline layout, time = chunk) "
          "or stacked ([chunk, frame_shape...]).");
ABSL_FLAG(absl::Duration, stream_timeout, absl::Minutes(10),
          "stream: deadline of each session's stream.");

namespace sluice::client {
namespace {

std::string OutputPath(const std::string& base, size_t index) {
  if (index == 0) return base;
  std::string stem = base;
  if (stem.size() > 4 && stem.substr(stem.size() - 4) == ".npy") stem.resize(stem.size() - 4);
  return absl::StrCat(stem, "_", index, ".npy");
}

}  // namespace

const Command kStreamCommand = {
    "stream", "Stream an offline .npy input through a model; write the outputs as .npy.",
    "Streams X.npy (the model's offline layout) through a model on the server, one session per\n"
    "batch row, in chunks of --chunk frames, and writes the outputs in the offline layout.\n"
    "  sluice-client stream [--server HOST:PORT] --model NAME --input X.npy --output Y.npy "
    "[--chunk K] [--layout offline|stacked]",
    "client/cli/stream_command.cc", &RunStreamCommand};

int RunStreamCommand() {
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string input = absl::GetFlag(FLAGS_input);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (model.empty() || input.empty() || output.empty()) {
    std::cerr << "sluice-client stream: --model, --input and --output are required (see --help)\n";
    return 1;
  }
  absl::StatusOr<NpyArray> x = ReadNpy(input);
  if (!x.ok()) {
    std::cerr << "sluice-client stream: " << x.status() << "\n";
    return 1;
  }
  auto client = ClientFromFlags();
  if (!client.ok()) {
    std::cerr << "sluice-client stream: " << client.status() << "\n";
    return 1;
  }
  StreamRunOptions options;
  options.model = model;
  const std::string layout = absl::GetFlag(FLAGS_layout);
  if (layout != "offline" && layout != "stacked") {
    std::cerr << "sluice-client stream: --layout must be offline or stacked\n";
    return 1;
  }
  options.layout = layout == "offline" ? v1::Frames::OFFLINE : v1::Frames::STACKED;
  options.chunk = absl::GetFlag(FLAGS_chunk);
  options.open_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  options.stream_timeout = absl::GetFlag(FLAGS_stream_timeout);
  absl::StatusOr<std::vector<NpyArray>> outputs = StreamArray(**client, *x, options);
  if (!outputs.ok()) {
    std::cerr << "sluice-client stream: " << outputs.status() << "\n";
    return 1;
  }
  for (size_t j = 0; j < outputs->size(); ++j) {
    const std::string path = OutputPath(output, j);
    if (absl::Status status = WriteNpy(path, (*outputs)[j]); !status.ok()) {
      std::cerr << "sluice-client stream: " << status << "\n";
      return 1;
    }
    std::cerr << "sluice-client stream: wrote " << path << " ["
              << absl::StrJoin((*outputs)[j].shape, ",") << "]\n";
  }
  return 0;
}

}  // namespace sluice::client
