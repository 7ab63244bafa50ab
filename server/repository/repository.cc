#include "server/repository/repository.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/fault_injecting_backend.h"
#include "runtime/opencl/device.h"
#include "runtime/opencl/opencl_backend.h"
#include "runtime/streaming/transform.h"
#include "server/admin/metrics.h"
#include "server/repository/config.h"
#include "spdlog/spdlog.h"

namespace sluice::server {
namespace {

absl::Status LoadOne(ServedModel* model, const RepositoryOptions& options) {
  auto config = LoadModelConfig(model->dir);
  if (!config.ok()) return config.status();
  model->config = *config;
  const std::string onnx = (std::filesystem::path(model->dir) / "model.onnx").string();
  if (!std::filesystem::exists(onnx)) {
    return absl::NotFoundError(
        absl::StrCat("model ", model->name, ": no model.onnx in ", model->dir));
  }
  std::string backend_choice = options.backend;
  if (model->config.backend() == v1::ModelConfig::BACKEND_OPENCL) backend_choice = "opencl";
  if (model->config.backend() == v1::ModelConfig::BACKEND_CPU) backend_choice = "cpu";
  if (backend_choice != "auto" && backend_choice != "cpu" && backend_choice != "opencl") {
    return absl::InvalidArgumentError(absl::StrCat("unknown backend '", backend_choice, "'"));
  }
  streaming::TransformOptions transform;
  if (model->config.has_time_axis()) transform.time_axis = model->config.time_axis();
  auto program = streaming::LoadProgram(onnx, transform);
  if (!program.ok()) {
    return absl::Status(program.status().code(),
                        absl::StrCat("model ", model->name, ": ", program.status().message()));
  }
  model->program = std::make_shared<const streaming::Program>(*std::move(program));
  BackendOptions backend_options;
  backend_options.max_batch = model->config.max_batch();
  if (model->config.max_sessions() > 0) backend_options.max_slots = model->config.max_sessions();
  // Every backend of the model (and the CPU fallback) runs the same bf16-rounded weights.
  backend_options.precision = model->config.precision() == v1::ModelConfig::PRECISION_BF16
                                  ? Precision::kBf16
                                  : Precision::kFp32;
  std::shared_ptr<const streaming::Program> shared = model->program;
  auto make_cpu = [shared, backend_options]() -> absl::StatusOr<std::unique_ptr<Backend>> {
    auto backend = cpu::CpuBackend::Create(shared, backend_options);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(*std::move(backend));
  };
  opencl::OpenClOptions opencl_options;
  opencl_options.platform = options.opencl_platform;
  opencl_options.device = options.opencl_device;
  opencl_options.cache_dir = options.opencl_cache_dir;
  if (!model->config.opencl_binary().empty()) {
    opencl_options.binary_path =
        (std::filesystem::path(model->dir) / model->config.opencl_binary()).string();
  }
  if (backend_choice == "auto") {
    // An accelerator if there is one (an Intel FPGA first), else the CPU backend.
    auto device = opencl::SelectDevice(options.opencl_platform, options.opencl_device);
    if (device.ok()) {
      backend_choice = "opencl";
      spdlog::info("model {}: backend auto chose OpenCL device {}", model->name, device->name);
    } else {
      backend_choice = "cpu";
      spdlog::info("model {}: backend auto chose the CPU ({})", model->name,
                   device.status().ToString());
    }
  }
  for (int i = 0; i < model->config.instance_count(); ++i) {
    SchedulerOptions scheduler_options;
    scheduler_options.model = model->name;
    scheduler_options.max_batch = model->config.max_batch();
    scheduler_options.max_queue_delay = absl::Microseconds(model->config.max_queue_delay_us());
    scheduler_options.snapshot_interval_frames = options.fallback_snapshot_interval_frames;
    std::unique_ptr<Backend> primary;
    if (backend_choice == "opencl") {
      auto backend = opencl::OpenClBackend::Create(shared, backend_options, opencl_options);
      if (!backend.ok()) {
        return absl::Status(backend.status().code(),
                            absl::StrCat("model ", model->name, ": ", backend.status().message()));
      }
      primary = *std::move(backend);
      scheduler_options.make_fallback = make_cpu;
    } else {
      auto backend = make_cpu();
      if (!backend.ok()) return backend.status();
      primary = *std::move(backend);
    }
    if (options.inject_device_fault_after_steps > 0) {
      primary = std::make_unique<FaultInjectingBackend>(std::move(primary),
                                                        options.inject_device_fault_after_steps);
      scheduler_options.make_fallback = make_cpu;
    }
    model->backend = primary->name();
    model->instances.push_back(
        std::make_unique<Scheduler>(scheduler_options, shared, std::move(primary), model->metrics));
  }
  for (auto& instance : model->instances) instance->Start();
  return absl::OkStatus();
}

}  // namespace

std::string ServedModel::DegradedReason() const {
  for (const auto& instance : instances) {
    std::string reason = instance->degraded_reason();
    if (!reason.empty()) return reason;
  }
  return "";
}

Scheduler* ServedModel::PickInstance() {
  if (instances.empty()) return nullptr;
  return instances[next_instance.fetch_add(1) % instances.size()].get();
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(
    const std::string& root, const RepositoryOptions& options, Metrics* metrics) {
  std::error_code error;
  if (!std::filesystem::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat("model repository ", root, " is not a folder"));
  }
  auto repository = std::unique_ptr<ModelRepository>(new ModelRepository());
  std::vector<std::filesystem::path> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(root, error)) {
    if (entry.is_directory()) dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  for (const auto& dir : dirs) {
    auto model = std::make_unique<ServedModel>();
    model->dir = dir.string();
    // Clients open the config's name, which defaults to the folder's.
    const absl::StatusOr<v1::ModelConfig> named = LoadModelConfig(model->dir);
    model->name = named.ok() ? named->name() : dir.filename().string();
    absl::Status duplicate;
    if (repository->models_.count(model->name) != 0) {
      duplicate = absl::AlreadyExistsError(absl::StrCat("folder ", dir.filename().string(),
                                                        " names a model '", model->name,
                                                        "' that another folder already serves"));
      model->name = dir.filename().string();
    }
    if (metrics != nullptr) model->metrics = metrics->ForModel(model->name);
    model->load_status = duplicate.ok() ? LoadOne(model.get(), options) : duplicate;
    if (model->load_status.ok()) {
      spdlog::info(
          "model {} ready: {} instance(s) on {} ({}), warm-up {} frames, {} state bytes per "
          "session, {:.3f} MFLOP per frame",
          model->name, model->instances.size(), model->backend,
          model->config.precision() == v1::ModelConfig::PRECISION_BF16 ? "bf16" : "fp32",
          model->program->warmup_frames, model->program->state_bytes,
          model->program->FlopsPerFrame() / 1e6);
    } else {
      spdlog::error("model {} failed to load: {}", model->name, model->load_status.ToString());
    }
    repository->models_[model->name] = std::move(model);
  }
  return repository;
}

ModelRepository::~ModelRepository() { Stop(); }

ServedModel* ModelRepository::Find(const std::string& name) const {
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : it->second.get();
}

std::vector<ServedModel*> ModelRepository::models() const {
  std::vector<ServedModel*> out;
  for (const auto& [name, model] : models_) out.push_back(model.get());
  return out;
}

void ModelRepository::Stop() {
  for (const auto& [name, model] : models_) {
    for (auto& instance : model->instances) instance->Stop();
  }
}

}  // namespace sluice::server
