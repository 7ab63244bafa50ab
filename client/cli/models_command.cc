// sluice-client models: ListModels, or one model's ModelInfo with --model.
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands.h"
#include "client/cli/common_flags.h"

namespace sluice::client {
namespace {

std::string SpecLine(const v1::TensorSpec& spec) {
  return absl::StrCat(spec.name(), " ", v1::DataType_Name(spec.dtype()), " offline [",
                      absl::StrJoin(spec.offline_shape(), ","), "] time_axis ", spec.time_axis(),
                      " frame [", absl::StrJoin(spec.frame_shape(), ","), "]");
}

void PrintInfo(const v1::ModelInfoResponse& info) {
  std::cout << "model          " << info.summary().name() << "\n"
            << "ready          " << (info.summary().ready() ? "yes" : "no") << " ("
            << info.summary().state() << ")\n"
            << "backend        " << info.backend() << "\n"
            << "input          " << SpecLine(info.input()) << "\n";
  for (const v1::TensorSpec& output : info.outputs()) {
    std::cout << "output         " << SpecLine(output) << "\n";
  }
  std::cout << "warmup_frames  " << info.warmup_frames() << "\n"
            << "state_bytes    " << info.state_bytes() << "\n"
            << "max_batch      " << info.max_batch() << "\n"
            << "sessions       " << info.sessions_active() << "\n";
  if (!info.program().empty()) std::cout << "program:\n" << info.program();
}

}  // namespace

const Command kModelsCommand = {
    "models", "List the server's models with their readiness, or one model's info.",
    "Lists the models of the server with their readiness; with --model, prints that model's\n"
    "ModelInfo (tensor specs, warm-up, state bytes, backend, program).\n"
    "  sluice-client models [--server HOST:PORT] [--model NAME]",
    "client/cli/models_command.cc", &RunModelsCommand};

int RunModelsCommand() {
  auto client = ClientFromFlags();
  if (!client.ok()) {
    std::cerr << "sluice-client models: " << client.status() << "\n";
    return 1;
  }
  const std::string model = absl::GetFlag(FLAGS_model);
  if (!model.empty()) {
    absl::StatusOr<v1::ModelInfoResponse> info = (*client)->ModelInfo(model);
    if (!info.ok()) {
      std::cerr << "sluice-client models: " << info.status() << "\n";
      return 1;
    }
    PrintInfo(*info);
    return 0;
  }
  absl::StatusOr<v1::ListModelsResponse> list = (*client)->ListModels();
  if (!list.ok()) {
    std::cerr << "sluice-client models: " << list.status() << "\n";
    return 1;
  }
  for (const v1::ModelSummary& summary : list->models()) {
    std::cout << summary.name() << "\t" << (summary.ready() ? "READY" : "NOT_READY") << "\t"
              << summary.state() << "\n";
  }
  return 0;
}

}  // namespace sluice::client
