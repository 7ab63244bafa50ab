// sluice-run: streams an offline input sequence through a model frame by frame and writes the
// outputs in the model's offline layout, so they can be compared with the offline model.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/npy.h"
#include "runtime/common/status_macros.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/streaming/sequence_runner.h"
#include "runtime/streaming/transform.h"

ABSL_FLAG(std::string, model, "", "ONNX model file (offline model, exported from PyTorch).");
ABSL_FLAG(std::string, input, "",
          "float32 .npy input in the model's offline layout; each "
          "batch row is streamed as its own session.");
ABSL_FLAG(std::string, output, "",
          "Where to write the outputs (.npy, offline layout). With "
          "several model outputs, output k>0 goes to <stem>_<k>.npy.");
ABSL_FLAG(std::string, backend, "cpu", "Backend to run on: cpu.");
ABSL_FLAG(int, sessions, 1,
          "Copies of each input row, all interleaved frame by frame; the "
          "run fails if any copy's outputs differ.");
ABSL_FLAG(int, time_axis, -1, "The input's time axis (default: detected from the model).");
ABSL_FLAG(int, max_batch, 256, "Largest batch of sessions stepped in one call.");
ABSL_FLAG(bool, describe, false, "Print the streaming program (ops, state bytes per session).");

namespace sluice {
namespace {

constexpr int kExitUnsupported = 2;

std::string OutputPath(const std::string& base, size_t index) {
  if (index == 0) return base;
  std::string stem = base;
  if (stem.size() > 4 && stem.substr(stem.size() - 4) == ".npy") stem.resize(stem.size() - 4);
  return absl::StrCat(stem, "_", index, ".npy");
}

absl::Status Run(std::shared_ptr<const streaming::Program> program) {
  ASSIGN_OR_RETURN(NpyArray x, ReadNpy(absl::GetFlag(FLAGS_input)));
  if (absl::GetFlag(FLAGS_backend) != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backend '", absl::GetFlag(FLAGS_backend), "'"));
  }
  BackendOptions options;
  options.max_batch = absl::GetFlag(FLAGS_max_batch);
  ASSIGN_OR_RETURN(std::unique_ptr<cpu::CpuBackend> backend,
                   cpu::CpuBackend::Create(program, options));
  streaming::SequenceRunOptions run;
  run.copies = absl::GetFlag(FLAGS_sessions);
  run.batch = options.max_batch;
  ASSIGN_OR_RETURN(std::vector<NpyArray> outputs, streaming::RunSequences(*backend, x, run));
  for (size_t j = 0; j < outputs.size(); ++j) {
    RETURN_IF_ERROR(WriteNpy(OutputPath(absl::GetFlag(FLAGS_output), j), outputs[j]));
  }
  std::cerr << "sluice-run: " << x.shape[program->input.time_axis] << " frames per session, "
            << run.copies << " session(s) per input row, warm-up " << program->warmup_frames
            << " frames\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Streams an input sequence through an ONNX model frame by frame.\n"
      "  sluice-run --model M.onnx --input X.npy --output Y.npy [--sessions N]\n"
      "  sluice-run --model M.onnx --describe\n"
      "Exit codes: 0 ok, 1 error, 2 the model cannot stream (the reason names the node).");
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    std::cerr << "sluice-run: --model is required (see --help)\n";
    return 1;
  }
  sluice::streaming::TransformOptions options;
  if (absl::GetFlag(FLAGS_time_axis) >= 0) options.time_axis = absl::GetFlag(FLAGS_time_axis);
  auto program = sluice::streaming::LoadProgram(model, options);
  if (!program.ok()) {
    std::cerr << "sluice-run: " << program.status() << "\n";
    const auto code = program.status().code();
    return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kUnimplemented
               ? sluice::kExitUnsupported
               : 1;
  }
  auto shared = std::make_shared<sluice::streaming::Program>(*std::move(program));
  if (absl::GetFlag(FLAGS_describe)) {
    std::cout << shared->Describe();
    if (absl::GetFlag(FLAGS_input).empty()) return 0;
  }
  if (absl::GetFlag(FLAGS_input).empty() || absl::GetFlag(FLAGS_output).empty()) {
    std::cerr << "sluice-run: --input and --output are required (see --help)\n";
    return 1;
  }
  const absl::Status status = sluice::Run(shared);
  if (!status.ok()) {
    std::cerr << "sluice-run: " << status << "\n";
    return 1;
  }
  return 0;
}
