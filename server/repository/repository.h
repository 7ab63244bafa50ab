// The model repository: a folder per model (model.onnx, optional config.pbtxt). Each model that
// loads gets its streaming program and its scheduler instances; one that fails is kept with
// its error (reported not ready) and never stops the others.
#ifndef SLUICE_SERVER_REPOSITORY_REPOSITORY_H_
#define SLUICE_SERVER_REPOSITORY_REPOSITORY_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/streaming/program.h"
#include "server/scheduler/scheduler.h"
#include "sluice/v1/model_config.pb.h"

namespace sluice::server {

class Metrics;
class ModelMetrics;

// One model of the repository. Immutable after loading except for the counters.
struct ServedModel {
  std::string name;
  std::string dir;
  v1::ModelConfig config;
  absl::Status load_status;  // OK when the model serves.
  std::shared_ptr<const streaming::Program> program;
  std::vector<std::unique_ptr<Scheduler>> instances;
  std::string backend;
  ModelMetrics* metrics = nullptr;
  std::atomic<int64_t> sessions_active{0};
  std::atomic<uint64_t> next_instance{0};

  bool ready() const { return load_status.ok(); }
  // Round-robin over instances.
  Scheduler* PickInstance();
  // Empty while every instance runs on its primary backend; otherwise why not.
  std::string DegradedReason() const;
};

struct RepositoryOptions {
  // The server's --backend for models whose config says auto: auto (an accelerator if one is
  // found, else the CPU), cpu, or opencl.
  std::string backend = "auto";
  std::string opencl_platform;  // Substrings selecting the OpenCL device ("" = auto).
  std::string opencl_device;
  std::string opencl_cache_dir;  // "" = the default cache dir.
  // Test hook: every model's primary backend fails like a lost device at this step (0 = never),
  // and its sessions move to a CPU fallback backend.
  int64_t inject_device_fault_after_steps = 0;
  // Frames between host snapshots of a session's device state (see SchedulerOptions).
  int fallback_snapshot_interval_frames = 64;
};

// Thread-safe after Load: lookups only.
class ModelRepository {
 public:
  // NotFound when `root` is not a folder. Models that fail to load are kept, with their error.
  // `metrics` may be null; otherwise it must outlive the repository.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Load(const std::string& root,
                                                               const RepositoryOptions& options,
                                                               Metrics* metrics);
  ~ModelRepository();

  // nullptr when no such model.
  ServedModel* Find(const std::string& name) const;
  std::vector<ServedModel*> models() const;
  // Stops every scheduler thread.
  void Stop();

 private:
  std::map<std::string, std::unique_ptr<ServedModel>> models_;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_REPOSITORY_REPOSITORY_H_
