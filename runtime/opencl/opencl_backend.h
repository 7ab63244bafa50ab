// The OpenCL backend: session state lives on the device, and a Step is one host-to-device write,
// one chain of kernel launches and one blocking device-to-host read, whatever the batch size.
//
// Device buffers (all allocated at Load, none on the step path):
//   constants  weights in kernel layout, biases, index maps: uploaded once.
//   pool       session slots, slot i at byte (i + 1) * slot_stride, each in the byte layout of
//              runtime/streaming/program.h (so ExportSlot / ImportSlot interoperate with the CPU
//              backend); index 0 is a dummy slot that padding rows read. Grows by doubling
//              (copy on the device) when max_slots is 0.
//   values     per intermediate program value: [max bucket][value size] floats.
//   staging    per step, written once: [bucket] int32 pool indices (0 = padding), then the
//              bucket's input frames (sub-buffers per bucket, aligned for the device).
//   result     per step, read once: each model output's [bucket][frame size], then [bucket]
//              int32 ready flags (then, optionally, the recurrent-state read-back). The last op
//              of an output writes straight into it.
// The chain (kernel_source.h): one kernel per conv / linear / LSTM / GRU op, and one fused
// kernel per run of the other ops; the last run also commits the step (ring heads, ready
// flags, step counters). Batches are padded to a bucket (powers of two up to max_batch, and
// max_batch itself); each bucket has its own kernel objects with every argument bound at Load,
// and its chain runs once at Load, so nothing compiles or is re-bound while serving.
#ifndef SLUICE_RUNTIME_OPENCL_OPENCL_BACKEND_H_
#define SLUICE_RUNTIME_OPENCL_OPENCL_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/batch_validator.h"
#include "runtime/opencl/cl_status.h"
#include "runtime/opencl/device.h"
#include "runtime/opencl/kernel_source.h"

namespace sluice::opencl {

struct OpenClOptions {
  // Device selection by substring (see device.h); "" or "auto" on both: an FPGA / accelerator /
  // GPU device only.
  std::string platform;
  std::string device;
  // Program binary cache for source builds (ignored with binary_path). kAuto uses it except
  // on CPU devices: PoCL caches compiled kernels itself (POCL_CACHE_DIR), and asking it for a
  // program binary compiles every kernel a second time (measured: doubles a cold load).
  enum class Cache { kAuto, kOn, kOff };
  Cache cache = Cache::kAuto;
  std::string cache_dir;  // "" means DefaultCacheDir().
  // Work-group size of the fused per-session kernels (NDRange variant); 0 picks 1 on CPU
  // devices (fast to compile on PoCL, and a CPU core runs one session at a time anyway) and 32
  // elsewhere.
  int fused_local_size = 0;
  // A precompiled program for this model and variant (an Intel FPGA .aocx, or a binary saved by
  // SaveProgramBinary) loaded with clCreateProgramWithBinary instead of building the source.
  std::string binary_path;
  KernelVariant variant = KernelVariant::kAuto;
  // Every Step also brings back, in its one read, each session's step counter and LSTM/GRU
  // state (h, c) after the step (see LastStepRecurrentState): what a fallback needs to carry
  // recurrent sessions over exactly when the device stops answering. Costs 8 + 4 * (hidden
  // floats of h and c) bytes per session per step; no extra transfer or launch.
  bool read_back_recurrent_state = false;
  // Test hook: after this many successful non-empty Steps, every Step (and Export, Import,
  // Allocate, Reset) fails with Unavailable as if the device had died. 0 disables it.
  int64_t inject_fault_after_steps = 0;
};

// Thread-compatible (see Backend). After any device error the backend stays failed: every later
// call that needs the device returns the first error (Unavailable), FreeSlot still works.
class OpenClBackend : public Backend {
 public:
  // Selects the device, builds or loads the kernels, uploads the weights, allocates the pool and
  // warms every batch bucket. Errors: NotFound (no matching device), InvalidArgument (kernels do
  // not build, binary corrupt or built for another model), Unavailable (device failure),
  // Unimplemented (an op the kernels cannot express).
  static absl::StatusOr<std::unique_ptr<OpenClBackend>> Create(
      std::shared_ptr<const streaming::Program> program, const BackendOptions& options,
      const OpenClOptions& opencl_options);

  explicit OpenClBackend(OpenClOptions opencl_options);
  ~OpenClBackend() override;

  // \see Backend.
  std::string name() const override { return "opencl"; }
  absl::Status Load(std::shared_ptr<const streaming::Program> program,
                    const BackendOptions& options) override;
  const streaming::Program& program() const override { return *program_; }
  absl::StatusOr<SlotId> AllocateSlot() override;
  absl::Status ResetSlot(SlotId slot) override;
  absl::Status FreeSlot(SlotId slot) override;
  absl::StatusOr<std::vector<uint8_t>> ExportSlot(SlotId slot) override;
  absl::Status ImportSlot(SlotId slot, absl::Span<const uint8_t> state) override;
  absl::Status Step(absl::Span<const StepItem> batch, absl::Span<float* const> outputs,
                    absl::Span<uint8_t> ready) override;

  // With OpenClOptions::read_back_recurrent_state: the state of batch row `row` of the last
  // successful non-empty Step, as a full state image (program().state_bytes, the layout of
  // program.h) holding the step counter and every LSTM/GRU region as they were after that step,
  // and zeros for conv regions. Needs no device, so it works after a device fault. For a
  // program without convs it equals ExportSlot after that step; with convs, a fallback
  // rebuilds the windows by replaying the last frames (issue 5). FailedPrecondition without the
  // option or before any step; OutOfRange for a row outside the last batch.
  absl::StatusOr<std::vector<uint8_t>> LastStepRecurrentState(int row) const;

  // Writes the loaded program's device binary to `path`; OpenClOptions::binary_path loads it.
  absl::Status SaveProgramBinary(const std::string& path) const;

  const DeviceInfo& device() const { return device_; }
  KernelVariant variant() const { return kernels_.variant; }
  const std::string& kernel_source() const { return kernels_.source; }
  bool program_from_cache() const { return program_from_cache_; }
  const std::vector<int>& buckets() const { return buckets_; }
  size_t launches_per_step() const { return kernels_.stages.size(); }
  // Kernel launches and host<->device transfers of the last Step: constants of the program.
  int64_t last_step_launches() const { return last_step_launches_; }
  int64_t last_step_transfers() const { return last_step_transfers_; }
  int64_t live_slots() const { return live_slots_; }
  int64_t slot_capacity() const { return capacity_; }

 private:
  struct BoundKernel {
    ClKernel kernel;
    cl_uint dims = 1;
    size_t global[2] = {1, 1};
    size_t local[2] = {1, 1};
  };
  // Per bucket: sub-buffers of staging and result, and the bound chain.
  struct Bucket {
    int rows = 0;
    size_t frames_offset = 0;            // Bytes into staging.
    std::vector<size_t> output_offsets;  // Bytes into result, per model output.
    size_t ready_offset = 0;
    size_t mirror_offset = 0;
    size_t result_bytes = 0;
    ClMem slots;
    ClMem frames;
    std::vector<ClMem> outputs;
    ClMem ready;
    ClMem mirror;
    std::vector<BoundKernel> chain;
  };

  absl::Status LoadProgram();
  absl::Status CreateBuffers();
  absl::Status BindBucket(Bucket& bucket);
  absl::Status RunChain(const Bucket& bucket, size_t write_bytes);
  absl::Status GrowPool();
  absl::Status CheckSlot(SlotId slot) const;
  absl::Status CheckHealthy() const;
  // Records a device failure (sticky) and returns it.
  absl::Status Fail(absl::Status status);
  size_t SlotOffset(SlotId slot) const { return static_cast<size_t>(slot + 1) * slot_stride_; }

  const OpenClOptions opencl_options_;
  std::shared_ptr<const streaming::Program> program_;
  bool loaded_ = false;  // Load succeeded; until then every call but Load fails.
  BackendOptions options_;
  DeviceInfo device_;
  KernelProgram kernels_;
  bool program_from_cache_ = false;
  size_t align_bytes_ = 128;
  size_t max_alloc_bytes_ = 0;
  int64_t slot_stride_ = 64;
  std::vector<int> buckets_;

  // Declaration order is release order reversed: kernels before buffers before the context.
  ClContext context_;
  ClQueue queue_;
  ClProgram cl_program_;
  std::vector<ClMem> consts_;
  ClMem placeholder_;
  std::vector<ClMem> values_;  // Per program value; empty handle for staged / result values.
  ClMem staging_;
  ClMem result_;
  ClMem pool_;
  std::vector<Bucket> bucket_data_;
  std::vector<std::pair<cl_kernel, cl_uint>> pool_args_;  // Re-bound when the pool grows.

  std::vector<uint8_t> host_staging_;
  std::vector<uint8_t> host_result_;

  int64_t capacity_ = 0;  // Slots the pool holds (excluding the dummy).
  std::vector<uint8_t> slot_live_;
  std::vector<SlotId> free_slots_;
  int64_t live_slots_ = 0;
  BatchValidator batch_validator_;

  int64_t steps_run_ = 0;
  int last_rows_ = 0;                 // Rows of the last successful non-empty Step.
  std::vector<uint8_t> last_mirror_;  // Its recurrent-state read-back, [rows][mirror_bytes].
  absl::Status failure_;
  int64_t last_step_launches_ = 0;
  int64_t last_step_transfers_ = 0;
};

}  // namespace sluice::opencl

#endif  // SLUICE_RUNTIME_OPENCL_OPENCL_BACKEND_H_
