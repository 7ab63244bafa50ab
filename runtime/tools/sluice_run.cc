// sluice-run: streams an offline input sequence through a model frame by frame and writes the
// outputs in the model's offline layout, so they can be compared with the offline model. Also
// measures a backend's step latency (--bench) and writes the streaming program as a
// one-step ONNX model with explicit state inputs and outputs (--export_streaming_onnx).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/common/npy.h"
#include "runtime/common/status_macros.h"
#include "runtime/onnx/streaming_export.h"
#include "runtime/streaming/sequence_runner.h"
#include "runtime/streaming/transform.h"
#include "runtime/tools/backend_factory.h"
#include "runtime/tools/step_latency.h"

ABSL_FLAG(std::string, model, "", "ONNX model file (offline model, exported from PyTorch).");
ABSL_FLAG(std::string, input, "",
          "float32 .npy input in the model's offline layout; each "
          "batch row is streamed as its own session.");
ABSL_FLAG(std::string, output, "",
          "Where to write the outputs (.npy, offline layout). With "
          "several model outputs, output k>0 goes to <stem>_<k>.npy.");
ABSL_FLAG(std::string, backend, "cpu", "Backend to run on: cpu or opencl.");
ABSL_FLAG(std::string, precision, "fp32",
          "Weight precision: fp32, or bf16 (matrix weights rounded to bf16 and stored so on the "
          "CPU; activations and accumulation stay fp32).");
ABSL_FLAG(std::string, opencl_platform, "",
          "OpenCL platform name substring (--backend opencl; default: any).");
ABSL_FLAG(std::string, opencl_device, "",
          "OpenCL device: name substring or type cpu/gpu/accelerator (--backend opencl; default: "
          "an FPGA, accelerator or GPU; 'cpu' runs on PoCL).");
ABSL_FLAG(int, sessions, 1,
          "Copies of each input row, all interleaved frame by frame; the "
          "run fails if any copy's outputs differ.");
ABSL_FLAG(int, time_axis, -1, "The input's time axis (default: detected from the model).");
ABSL_FLAG(int, max_batch, 256, "Largest batch of sessions stepped in one call.");
ABSL_FLAG(bool, describe, false, "Print the streaming program (ops, state bytes per session).");
ABSL_FLAG(bool, bench, false,
          "Measure the backend's step latency on random frames at each --batch size.");
ABSL_FLAG(std::vector<std::string>, batch, std::vector<std::string>({"1", "64", "256"}),
          "--bench: comma-separated batch sizes (sessions per step).");
ABSL_FLAG(int, steps, 1000, "--bench: timed steps per batch size.");
ABSL_FLAG(int, warmup_steps, 100, "--bench: untimed steps before the timed ones.");
ABSL_FLAG(bool, json, false,
          "--bench: print one JSON object per batch size (batch, p50_us, p99_us, frames_per_s, "
          "gflops, cpu_share = CPU / real time, ...) instead of a table.");
ABSL_FLAG(std::string, export_streaming_onnx, "",
          "Write the streaming program as an ONNX model of one step, with each state (conv "
          "windows, RNN h/c) as an explicit input and output (runtime/onnx/streaming_export.h).");
ABSL_FLAG(int, export_batch, 1,
          "--export_streaming_onnx: sessions per Run() (the batch dim of every tensor).");

namespace sluice {
namespace {

constexpr int kExitUnsupported = 2;

std::string OutputPath(const std::string& base, size_t index) {
  if (index == 0) return base;
  std::string stem = base;
  if (stem.size() > 4 && stem.substr(stem.size() - 4) == ".npy") stem.resize(stem.size() - 4);
  return absl::StrCat(stem, "_", index, ".npy");
}

absl::StatusOr<tools::BackendSpec> BackendFromFlags() {
  tools::BackendSpec spec;
  spec.kind = absl::GetFlag(FLAGS_backend);
  ASSIGN_OR_RETURN(spec.precision, ParsePrecision(absl::GetFlag(FLAGS_precision)));
  spec.opencl_platform = absl::GetFlag(FLAGS_opencl_platform);
  spec.opencl_device = absl::GetFlag(FLAGS_opencl_device);
  return spec;
}

absl::Status Run(std::shared_ptr<const streaming::Program> program) {
  ASSIGN_OR_RETURN(NpyArray x, ReadNpy(absl::GetFlag(FLAGS_input)));
  ASSIGN_OR_RETURN(const tools::BackendSpec spec, BackendFromFlags());
  BackendOptions options;
  options.max_batch = absl::GetFlag(FLAGS_max_batch);
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, tools::CreateBackend(program, spec, options));
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

absl::Status Bench(std::shared_ptr<const streaming::Program> program) {
  std::vector<int> batches;
  for (const std::string& text : absl::GetFlag(FLAGS_batch)) {
    int batch = 0;
    if (!absl::SimpleAtoi(text, &batch) || batch < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--batch: '", text, "' is not a batch size"));
    }
    batches.push_back(batch);
  }
  if (batches.empty()) return absl::InvalidArgumentError("--batch is empty");
  ASSIGN_OR_RETURN(const tools::BackendSpec spec, BackendFromFlags());
  BackendOptions options;
  options.max_batch = *std::max_element(batches.begin(), batches.end());
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, tools::CreateBackend(program, spec, options));
  tools::StepLatencyOptions latency;
  latency.steps = absl::GetFlag(FLAGS_steps);
  latency.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  const bool json = absl::GetFlag(FLAGS_json);
  const char* precision = PrecisionName(spec.precision);
  if (!json) {
    std::cout << absl::StrFormat(
        "%s on %s (%s), %.3f MFLOP per frame, %d timed steps after %d warm-up steps\n"
        "%6s %10s %10s %10s %12s %8s %9s\n",
        absl::GetFlag(FLAGS_model), backend->name(), precision, program->FlopsPerFrame() / 1e6,
        latency.steps, latency.warmup_steps, "batch", "p50 us", "p99 us", "mean us", "frames/s",
        "GFLOP/s", "CPU/real");
  }
  for (int batch : batches) {
    ASSIGN_OR_RETURN(const tools::StepLatency r,
                     tools::MeasureStepLatency(*backend, batch, latency));
    if (json) {
      std::cout << absl::StrFormat(
          "{\"model\": \"%s\", \"backend\": \"%s\", \"precision\": \"%s\", \"batch\": %d, "
          "\"steps\": %d, \"p50_us\": %.2f, \"p99_us\": %.2f, \"mean_us\": %.2f, "
          "\"frames_per_s\": %.1f, \"gflops\": %.2f, \"cpu_share\": %.3f}\n",
          absl::GetFlag(FLAGS_model), backend->name(), precision, r.batch, r.steps, r.p50_us,
          r.p99_us, r.mean_us, r.frames_per_s, r.gflops, r.cpu_share);
    } else {
      std::cout << absl::StrFormat("%6d %10.2f %10.2f %10.2f %12.0f %8.2f %9.2f\n", r.batch,
                                   r.p50_us, r.p99_us, r.mean_us, r.frames_per_s, r.gflops,
                                   r.cpu_share);
    }
    std::cout.flush();
  }
  return absl::OkStatus();
}

absl::Status ExportStreaming(const streaming::Program& program) {
  onnx_export::StreamingExportOptions options;
  options.batch = absl::GetFlag(FLAGS_export_batch);
  const std::string path = absl::GetFlag(FLAGS_export_streaming_onnx);
  RETURN_IF_ERROR(onnx_export::WriteStreamingModel(program, options, path));
  std::cerr << "sluice-run: wrote " << path << " (batch " << options.batch << ", warm-up "
            << program.warmup_frames << " frames: ignore the outputs of the first "
            << program.warmup_frames << " steps)\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Streams an input sequence through an ONNX model frame by frame.\n"
      "  sluice-run --model M.onnx --input X.npy --output Y.npy [--sessions N]\n"
      "  sluice-run --model M.onnx --describe\n"
      "  sluice-run --model M.onnx --bench [--batch 1,64,256] [--steps N] [--backend cpu|opencl]\n"
      "             [--precision fp32] [--json]\n"
      "  sluice-run --model M.onnx --export_streaming_onnx OUT.onnx [--export_batch N]\n"
      "Exit codes: 0 ok, 1 error, 2 the model cannot stream (the reason names the node).");
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    std::cerr << "sluice-run: --model is required (see --help)\n";
    return 1;
  }
  const bool run = !absl::GetFlag(FLAGS_input).empty() || !absl::GetFlag(FLAGS_output).empty();
  const bool bench = absl::GetFlag(FLAGS_bench);
  const bool export_onnx = !absl::GetFlag(FLAGS_export_streaming_onnx).empty();
  if (!run && !bench && !export_onnx && !absl::GetFlag(FLAGS_describe)) {
    std::cerr << "sluice-run: --input and --output are required (see --help)\n";
    return 1;
  }
  if (run && (absl::GetFlag(FLAGS_input).empty() || absl::GetFlag(FLAGS_output).empty())) {
    std::cerr << "sluice-run: --input and --output are required (see --help)\n";
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
  if (absl::GetFlag(FLAGS_describe)) std::cout << shared->Describe();
  absl::Status status;
  if (status.ok() && export_onnx) status = sluice::ExportStreaming(*shared);
  if (status.ok() && bench) status = sluice::Bench(shared);
  if (status.ok() && run) status = sluice::Run(shared);
  if (!status.ok()) {
    std::cerr << "sluice-run: " << status << "\n";
    return 1;
  }
  return 0;
}
