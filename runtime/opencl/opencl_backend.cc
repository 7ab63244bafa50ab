#include "runtime/opencl/opencl_backend.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/common/status_macros.h"
#include "runtime/opencl/program_cache.h"

namespace sluice::opencl {
namespace {

using Kind = KernelArg::Kind;

// Initial pool size when BackendOptions::max_slots is 0 (it doubles when full).
constexpr int64_t kDefaultSlots = 1024;
constexpr int64_t kDefaultPoolBytes = 64ll << 20;

size_t RoundUp(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

absl::StatusOr<ClMem> CreateBuffer(cl_context context, cl_mem_flags flags, size_t bytes,
                                   const void* data, const std::string& what) {
  cl_int code = CL_SUCCESS;
  ClMem mem(
      clCreateBuffer(context, flags, std::max<size_t>(bytes, 4), const_cast<void*>(data), &code));
  if (code != CL_SUCCESS) {
    return ClStatus(code, absl::StrCat("allocating ", bytes, " bytes for ", what));
  }
  return mem;
}

absl::StatusOr<ClMem> SubBuffer(cl_mem parent, size_t offset, size_t bytes) {
  cl_buffer_region region{offset, std::max<size_t>(bytes, 4)};
  cl_int code = CL_SUCCESS;
  ClMem mem(clCreateSubBuffer(parent, 0, CL_BUFFER_CREATE_TYPE_REGION, &region, &code));
  CL_RETURN_IF_ERROR(code);
  return mem;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenClBackend>> OpenClBackend::Create(
    std::shared_ptr<const streaming::Program> program, const BackendOptions& options,
    const OpenClOptions& opencl_options) {
  auto backend = std::make_unique<OpenClBackend>(opencl_options);
  RETURN_IF_ERROR(backend->Load(std::move(program), options));
  return backend;
}

OpenClBackend::OpenClBackend(OpenClOptions opencl_options)
    : opencl_options_(std::move(opencl_options)) {}

OpenClBackend::~OpenClBackend() {
  if (queue_) clFinish(queue_.get());
}

absl::Status OpenClBackend::Load(std::shared_ptr<const streaming::Program> program,
                                 const BackendOptions& options) {
  if (program_ != nullptr) return absl::FailedPreconditionError("backend already loaded");
  if (program == nullptr) return absl::InvalidArgumentError("no program");
  if (options.max_batch <= 0) return absl::InvalidArgumentError("max_batch must be positive");
  if (options.max_slots < 0) return absl::InvalidArgumentError("max_slots must not be negative");
  for (const streaming::Value& value : program->values) {
    // Kernels index a bucket's rows of a value with 32-bit ints.
    if (static_cast<int64_t>(options.max_batch) * std::max<int64_t>(value.size, 1) >
        std::numeric_limits<int32_t>::max() / 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_batch ", options.max_batch, " is too large for value ", value.name));
    }
  }
  if (options.precision == Precision::kBf16) {
    // bf16-valued weights in fp32 buffers: the same arithmetic as the CPU backend's packed bf16
    // (so sessions can move between them), without the halved bytes.
    program = std::make_shared<const streaming::Program>(streaming::RoundWeightsToBf16(*program));
  }
  program_ = std::move(program);
  options_ = options;

  ASSIGN_OR_RETURN(device_, SelectDevice(opencl_options_.platform, opencl_options_.device));
  KernelVariant variant = opencl_options_.variant;
  if (variant == KernelVariant::kAuto) {
    variant =
        device_.PrefersSingleWorkItem() ? KernelVariant::kSingleWorkItem : KernelVariant::kNdRange;
  }
  KernelOptions kernel_options;
  kernel_options.variant = variant;
  kernel_options.mirror_recurrent_state = opencl_options_.read_back_recurrent_state;
  kernel_options.fused_local_size = opencl_options_.fused_local_size > 0
                                        ? opencl_options_.fused_local_size
                                        : ((device_.type & CL_DEVICE_TYPE_CPU) != 0 ? 1 : 32);
  ASSIGN_OR_RETURN(kernels_, GenerateKernelProgram(*program_, kernel_options));
  slot_stride_ = kernels_.slot_stride;

  cl_int code = CL_SUCCESS;
  const cl_context_properties properties[] = {
      CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(device_.platform), 0};
  context_.reset(clCreateContext(properties, 1, &device_.device, nullptr, nullptr, &code));
  CL_RETURN_IF_ERROR(code);
  queue_.reset(clCreateCommandQueue(context_.get(), device_.device, 0, &code));
  CL_RETURN_IF_ERROR(code);

  cl_uint align_bits = 1024;
  CL_RETURN_IF_ERROR(clGetDeviceInfo(device_.device, CL_DEVICE_MEM_BASE_ADDR_ALIGN,
                                     sizeof(align_bits), &align_bits, nullptr));
  align_bytes_ = std::max<size_t>(64, align_bits / 8);
  cl_ulong max_alloc = 0;
  CL_RETURN_IF_ERROR(clGetDeviceInfo(device_.device, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                                     sizeof(max_alloc), &max_alloc, nullptr));
  max_alloc_bytes_ = static_cast<size_t>(max_alloc);
  size_t max_group = 0;
  CL_RETURN_IF_ERROR(clGetDeviceInfo(device_.device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                                     sizeof(max_group), &max_group, nullptr));
  for (const Stage& stage : kernels_.stages) {
    for (const Launch& launch : stage.alternatives) {
      if (launch.local_x > max_group) {
        return absl::UnimplementedError(absl::StrCat(stage.what, " needs work-groups of ",
                                                     launch.local_x, "; ", device_.name, " allows ",
                                                     max_group));
      }
    }
  }

  RETURN_IF_ERROR(LoadProgram());
  for (int rows = 1; rows < options_.max_batch; rows *= 2) buckets_.push_back(rows);
  buckets_.push_back(options_.max_batch);
  RETURN_IF_ERROR(CreateBuffers());

  // Warm-up: every bucket's chain once, all rows padding (no state is touched), so every kernel
  // and work-group size is compiled before the first real step.
  for (Bucket& bucket : bucket_data_) {
    std::fill(host_staging_.begin(), host_staging_.end(), 0);
    RETURN_IF_ERROR(RunChain(bucket, bucket.frames_offset));
  }
  loaded_ = true;
  return absl::OkStatus();
}

absl::Status OpenClBackend::LoadProgram() {
  if (!opencl_options_.binary_path.empty()) {
    ASSIGN_OR_RETURN(cl_program_,
                     LoadProgramBinaryFile(context_.get(), device_, opencl_options_.binary_path,
                                           kernels_.build_options));
  } else {
    using Cache = OpenClOptions::Cache;
    const bool cache =
        opencl_options_.cache == Cache::kOn ||
        (opencl_options_.cache == Cache::kAuto && (device_.type & CL_DEVICE_TYPE_CPU) == 0);
    const std::string cache_dir = !cache                              ? std::string()
                                  : opencl_options_.cache_dir.empty() ? DefaultCacheDir()
                                                                      : opencl_options_.cache_dir;
    ASSIGN_OR_RETURN(BuildResult built, BuildProgram(context_.get(), device_, kernels_.source,
                                                     kernels_.build_options, cache_dir));
    cl_program_ = std::move(built.program);
    program_from_cache_ = built.from_cache;
  }
  // A binary built for another model or variant lacks this program's fingerprint kernel.
  cl_int code = CL_SUCCESS;
  ClKernel fingerprint(clCreateKernel(cl_program_.get(), kernels_.fingerprint.c_str(), &code));
  if (code == CL_INVALID_KERNEL_NAME) {
    return absl::InvalidArgumentError(
        absl::StrCat("program binary ", opencl_options_.binary_path,
                     " was not built for this model and kernel variant (",
                     KernelVariantName(kernels_.variant), "): it has no kernel ",
                     kernels_.fingerprint, "; rebuild it from the source this model generates"));
  }
  CL_RETURN_IF_ERROR(code);
  return absl::OkStatus();
}

absl::Status OpenClBackend::CreateBuffers() {
  const streaming::Program& p = *program_;
  const int max_rows = buckets_.back();
  const cl_context context = context_.get();
  for (const ConstTensor& tensor : kernels_.consts) {
    ASSIGN_OR_RETURN(ClMem mem,
                     CreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                  tensor.bytes.size(), tensor.bytes.data(), tensor.name));
    consts_.push_back(std::move(mem));
  }
  ASSIGN_OR_RETURN(placeholder_,
                   CreateBuffer(context, CL_MEM_READ_WRITE, 64, nullptr, "an unused argument"));
  values_.resize(p.values.size());
  for (size_t v = 0; v < p.values.size(); ++v) {
    if (static_cast<int>(v) == p.input_value || kernels_.value_output[v] >= 0) continue;
    ASSIGN_OR_RETURN(values_[v],
                     CreateBuffer(context, CL_MEM_READ_WRITE,
                                  static_cast<size_t>(max_rows) * p.values[v].size * sizeof(float),
                                  nullptr, absl::StrCat("value ", p.values[v].name)));
  }

  // Staging and result layouts per bucket; the buffers fit the largest.
  const size_t frame_bytes = p.input.frame_size * sizeof(float);
  size_t staging_bytes = 0;
  size_t result_bytes = 0;
  bucket_data_.resize(buckets_.size());
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& bucket = bucket_data_[i];
    bucket.rows = buckets_[i];
    const size_t rows = bucket.rows;
    bucket.frames_offset = RoundUp(rows * sizeof(int32_t), align_bytes_);
    staging_bytes = std::max(staging_bytes, bucket.frames_offset + rows * frame_bytes);
    size_t offset = 0;
    for (const streaming::StreamSpec& output : p.outputs) {
      bucket.output_offsets.push_back(offset);
      offset = RoundUp(offset + rows * output.frame_size * sizeof(float), align_bytes_);
    }
    bucket.ready_offset = offset;
    offset = RoundUp(offset + rows * sizeof(int32_t), align_bytes_);
    bucket.mirror_offset = offset;
    bucket.result_bytes = kernels_.mirror_bytes > 0 ? offset + rows * kernels_.mirror_bytes
                                                    : bucket.ready_offset + rows * sizeof(int32_t);
    result_bytes = std::max(result_bytes, bucket.result_bytes);
  }
  ASSIGN_OR_RETURN(staging_, CreateBuffer(context, CL_MEM_READ_ONLY, staging_bytes, nullptr,
                                          "the step staging buffer"));
  ASSIGN_OR_RETURN(result_, CreateBuffer(context, CL_MEM_WRITE_ONLY, result_bytes, nullptr,
                                         "the step result buffer"));
  host_staging_.assign(staging_bytes, 0);
  host_result_.assign(result_bytes, 0);

  capacity_ = options_.max_slots > 0
                  ? options_.max_slots
                  : std::clamp<int64_t>(kDefaultPoolBytes / slot_stride_, 1, kDefaultSlots);
  const size_t pool_bytes = static_cast<size_t>(capacity_ + 1) * slot_stride_;
  if (pool_bytes > max_alloc_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(capacity_, " session slots of ", slot_stride_,
                                                     " bytes exceed the ", max_alloc_bytes_,
                                                     "-byte buffer limit of ", device_.name));
  }
  ASSIGN_OR_RETURN(pool_, CreateBuffer(context, CL_MEM_READ_WRITE, pool_bytes, nullptr,
                                       "the session state pool"));
  const float zero = 0.f;
  CL_RETURN_IF_ERROR(clEnqueueFillBuffer(queue_.get(), pool_.get(), &zero, sizeof(zero), 0,
                                         pool_bytes, 0, nullptr, nullptr));
  slot_live_.assign(capacity_, 0);
  batch_validator_.Resize(capacity_);
  for (int64_t s = capacity_ - 1; s >= 0; --s) free_slots_.push_back(static_cast<SlotId>(s));

  for (Bucket& bucket : bucket_data_) {
    const size_t rows = bucket.rows;
    ASSIGN_OR_RETURN(bucket.slots, SubBuffer(staging_.get(), 0, rows * sizeof(int32_t)));
    ASSIGN_OR_RETURN(bucket.frames,
                     SubBuffer(staging_.get(), bucket.frames_offset, rows * frame_bytes));
    for (size_t j = 0; j < p.outputs.size(); ++j) {
      ASSIGN_OR_RETURN(ClMem output, SubBuffer(result_.get(), bucket.output_offsets[j],
                                               rows * p.outputs[j].frame_size * sizeof(float)));
      bucket.outputs.push_back(std::move(output));
    }
    ASSIGN_OR_RETURN(bucket.ready,
                     SubBuffer(result_.get(), bucket.ready_offset, rows * sizeof(int32_t)));
    if (kernels_.mirror_bytes > 0) {
      ASSIGN_OR_RETURN(bucket.mirror, SubBuffer(result_.get(), bucket.mirror_offset,
                                                rows * kernels_.mirror_bytes));
    }
    RETURN_IF_ERROR(BindBucket(bucket));
  }
  return absl::OkStatus();
}

absl::Status OpenClBackend::BindBucket(Bucket& bucket) {
  const streaming::Program& p = *program_;
  for (const Stage& stage : kernels_.stages) {
    const Launch& launch = stage.For(bucket.rows);
    BoundKernel bound;
    cl_int code = CL_SUCCESS;
    bound.kernel.reset(clCreateKernel(cl_program_.get(), launch.kernel.c_str(), &code));
    if (code != CL_SUCCESS) {
      const absl::Status status = ClStatus(code, absl::StrCat("kernel ", launch.kernel));
      return absl::Status(status.code(), absl::StrCat(stage.what, ": ", status.message()));
    }
    for (size_t a = 0; a < launch.args.size(); ++a) {
      const KernelArg& arg = launch.args[a];
      const cl_uint index = static_cast<cl_uint>(a);
      cl_mem mem = nullptr;
      switch (arg.kind) {
        case Kind::kValue:
          if (arg.index == p.input_value) {
            mem = bucket.frames.get();
          } else if (kernels_.value_output[arg.index] >= 0) {
            mem = bucket.outputs[kernels_.value_output[arg.index]].get();
          } else {
            mem = values_[arg.index].get();
          }
          break;
        case Kind::kOutput:
          mem = bucket.outputs[arg.index].get();
          break;
        case Kind::kConst:
          mem = consts_[arg.index].get();
          break;
        case Kind::kPool:
          mem = pool_.get();
          pool_args_.emplace_back(bound.kernel.get(), index);
          break;
        case Kind::kSlots:
          mem = bucket.slots.get();
          break;
        case Kind::kReady:
          mem = bucket.ready.get();
          break;
        case Kind::kMirror:
          mem = bucket.mirror.get();
          break;
        case Kind::kUnused:
          mem = placeholder_.get();
          break;
        case Kind::kBatch: {
          const cl_int rows = bucket.rows;
          CL_RETURN_IF_ERROR(clSetKernelArg(bound.kernel.get(), index, sizeof(rows), &rows));
          continue;
        }
      }
      CL_RETURN_IF_ERROR(clSetKernelArg(bound.kernel.get(), index, sizeof(cl_mem), &mem));
    }
    bound.dims = launch.Geometry(bucket.rows, bound.global, bound.local);
    bucket.chain.push_back(std::move(bound));
  }
  return absl::OkStatus();
}

absl::Status OpenClBackend::RunChain(const Bucket& bucket, size_t write_bytes) {
  const cl_command_queue queue = queue_.get();
  CL_RETURN_IF_ERROR(clEnqueueWriteBuffer(queue, staging_.get(), CL_FALSE, 0, write_bytes,
                                          host_staging_.data(), 0, nullptr, nullptr));
  for (const BoundKernel& bound : bucket.chain) {
    CL_RETURN_IF_ERROR(clEnqueueNDRangeKernel(queue, bound.kernel.get(), bound.dims, nullptr,
                                              bound.global, bound.local, 0, nullptr, nullptr));
  }
  CL_RETURN_IF_ERROR(clEnqueueReadBuffer(queue, result_.get(), CL_TRUE, 0, bucket.result_bytes,
                                         host_result_.data(), 0, nullptr, nullptr));
  return absl::OkStatus();
}

absl::Status OpenClBackend::Fail(absl::Status status) {
  if (failure_.ok()) failure_ = status;
  return status;
}

absl::Status OpenClBackend::CheckHealthy() const {
  if (!loaded_) return absl::FailedPreconditionError("backend not loaded");
  if (!failure_.ok()) {
    return absl::UnavailableError(
        absl::StrCat("OpenCL device ", device_.name, " failed earlier: ", failure_.message()));
  }
  return absl::OkStatus();
}

absl::Status OpenClBackend::CheckSlot(SlotId slot) const {
  if (slot < 0 || slot >= static_cast<SlotId>(slot_live_.size()) || !slot_live_[slot]) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is not allocated"));
  }
  return absl::OkStatus();
}

absl::Status OpenClBackend::GrowPool() {
  const int64_t capacity = capacity_ * 2;
  const size_t old_bytes = static_cast<size_t>(capacity_ + 1) * slot_stride_;
  const size_t bytes = static_cast<size_t>(capacity + 1) * slot_stride_;
  if (bytes > max_alloc_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the session pool cannot grow past ", capacity_, " slots on ", device_.name));
  }
  auto pool =
      CreateBuffer(context_.get(), CL_MEM_READ_WRITE, bytes, nullptr, "the session state pool");
  if (!pool.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("growing the session pool: ", pool.status().message()));
  }
  CL_RETURN_IF_ERROR(clEnqueueCopyBuffer(queue_.get(), pool_.get(), pool->get(), 0, 0, old_bytes, 0,
                                         nullptr, nullptr));
  pool_ = *std::move(pool);  // The old buffer is freed once the copy is done.
  const cl_mem mem = pool_.get();
  for (const auto& [kernel, index] : pool_args_) {
    CL_RETURN_IF_ERROR(clSetKernelArg(kernel, index, sizeof(cl_mem), &mem));
  }
  slot_live_.resize(capacity, 0);
  batch_validator_.Resize(capacity);
  for (int64_t s = capacity - 1; s >= capacity_; --s) free_slots_.push_back(static_cast<SlotId>(s));
  capacity_ = capacity;
  return absl::OkStatus();
}

absl::StatusOr<SlotId> OpenClBackend::AllocateSlot() {
  RETURN_IF_ERROR(CheckHealthy());
  if (options_.max_slots > 0 && live_slots_ >= options_.max_slots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", options_.max_slots, " session slots are in use"));
  }
  if (free_slots_.empty()) {
    const absl::Status grown = GrowPool();
    if (!grown.ok()) {
      if (grown.code() != absl::StatusCode::kResourceExhausted) return Fail(grown);
      return grown;
    }
  }
  const SlotId slot = free_slots_.back();
  const float zero = 0.f;
  const cl_int code = clEnqueueFillBuffer(queue_.get(), pool_.get(), &zero, sizeof(zero),
                                          SlotOffset(slot), slot_stride_, 0, nullptr, nullptr);
  if (code != CL_SUCCESS) return Fail(ClStatus(code, "clearing a new session slot"));
  free_slots_.pop_back();
  slot_live_[slot] = 1;
  ++live_slots_;
  return slot;
}

absl::Status OpenClBackend::ResetSlot(SlotId slot) {
  RETURN_IF_ERROR(CheckHealthy());
  RETURN_IF_ERROR(CheckSlot(slot));
  const float zero = 0.f;
  const cl_int code = clEnqueueFillBuffer(queue_.get(), pool_.get(), &zero, sizeof(zero),
                                          SlotOffset(slot), slot_stride_, 0, nullptr, nullptr);
  if (code != CL_SUCCESS) return Fail(ClStatus(code, "resetting a session slot"));
  return absl::OkStatus();
}

absl::Status OpenClBackend::FreeSlot(SlotId slot) {
  if (!loaded_) return absl::FailedPreconditionError("backend not loaded");
  RETURN_IF_ERROR(CheckSlot(slot));
  slot_live_[slot] = 0;
  free_slots_.push_back(slot);
  --live_slots_;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> OpenClBackend::ExportSlot(SlotId slot) {
  RETURN_IF_ERROR(CheckHealthy());
  RETURN_IF_ERROR(CheckSlot(slot));
  std::vector<uint8_t> state(program_->state_bytes);
  const cl_int code = clEnqueueReadBuffer(queue_.get(), pool_.get(), CL_TRUE, SlotOffset(slot),
                                          state.size(), state.data(), 0, nullptr, nullptr);
  if (code != CL_SUCCESS) return Fail(ClStatus(code, "reading a session slot"));
  return state;
}

absl::Status OpenClBackend::ImportSlot(SlotId slot, absl::Span<const uint8_t> state) {
  RETURN_IF_ERROR(CheckHealthy());
  RETURN_IF_ERROR(CheckSlot(slot));
  if (static_cast<int64_t>(state.size()) != program_->state_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state holds ", state.size(), " bytes; this program's state is ", program_->state_bytes));
  }
  const cl_int code = clEnqueueWriteBuffer(queue_.get(), pool_.get(), CL_TRUE, SlotOffset(slot),
                                           state.size(), state.data(), 0, nullptr, nullptr);
  if (code != CL_SUCCESS) return Fail(ClStatus(code, "writing a session slot"));
  return absl::OkStatus();
}

absl::Status OpenClBackend::Step(absl::Span<const StepItem> batch, absl::Span<float* const> outputs,
                                 absl::Span<uint8_t> ready) {
  RETURN_IF_ERROR(CheckHealthy());
  const streaming::Program& p = *program_;
  const int n = static_cast<int>(batch.size());
  if (n > options_.max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", n, " exceeds max_batch ", options_.max_batch));
  }
  if (outputs.size() != p.outputs.size() || ready.size() < batch.size()) {
    return absl::InvalidArgumentError("outputs/ready do not match the program and batch");
  }
  RETURN_IF_ERROR(
      batch_validator_.Validate(batch, [this](SlotId slot) { return CheckSlot(slot); }));
  last_step_launches_ = 0;
  last_step_transfers_ = 0;
  if (n == 0) return absl::OkStatus();
  if (opencl_options_.inject_fault_after_steps > 0 &&
      steps_run_ >= opencl_options_.inject_fault_after_steps) {
    return Fail(absl::UnavailableError(
        absl::StrCat("injected OpenCL device fault after ", steps_run_, " steps")));
  }

  const Bucket& bucket = *std::find_if(bucket_data_.begin(), bucket_data_.end(),
                                       [n](const Bucket& b) { return b.rows >= n; });
  auto* indices = reinterpret_cast<int32_t*>(host_staging_.data());
  for (int b = 0; b < bucket.rows; ++b) indices[b] = b < n ? batch[b].slot + 1 : 0;
  const size_t frame_bytes = p.input.frame_size * sizeof(float);
  uint8_t* frames = host_staging_.data() + bucket.frames_offset;
  for (int b = 0; b < n; ++b) std::memcpy(frames + b * frame_bytes, batch[b].frame, frame_bytes);
  const absl::Status run = RunChain(bucket, bucket.frames_offset + n * frame_bytes);
  if (!run.ok()) return Fail(run);
  ++steps_run_;
  last_rows_ = n;
  if (kernels_.mirror_bytes > 0) {  // Kept apart: a later failed step may clobber the buffer.
    const uint8_t* mirror = host_result_.data() + bucket.mirror_offset;
    last_mirror_.assign(mirror, mirror + n * kernels_.mirror_bytes);
  }
  last_step_launches_ = static_cast<int64_t>(bucket.chain.size());
  last_step_transfers_ = 2;

  for (size_t j = 0; j < outputs.size(); ++j) {
    std::memcpy(outputs[j], host_result_.data() + bucket.output_offsets[j],
                n * p.outputs[j].frame_size * sizeof(float));
  }
  const auto* flags = reinterpret_cast<const int32_t*>(host_result_.data() + bucket.ready_offset);
  for (int b = 0; b < n; ++b) ready[b] = flags[b] != 0 ? 1 : 0;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> OpenClBackend::LastStepRecurrentState(int row) const {
  if (kernels_.mirror_bytes == 0) {
    return absl::FailedPreconditionError(
        "recurrent state is read back only with OpenClOptions::read_back_recurrent_state");
  }
  if (last_rows_ == 0) return absl::FailedPreconditionError("no step yet");
  if (row < 0 || row >= last_rows_) {
    return absl::OutOfRangeError(
        absl::StrCat("row ", row, " outside the last batch of ", last_rows_));
  }
  std::vector<uint8_t> state(program_->state_bytes, 0);
  const uint8_t* mirror = last_mirror_.data() + row * kernels_.mirror_bytes;
  std::memcpy(state.data(), mirror, sizeof(int64_t));
  size_t at = sizeof(int64_t);
  for (const auto& [offset, bytes] : kernels_.mirror_regions) {
    std::memcpy(state.data() + offset, mirror + at, bytes);
    at += bytes;
  }
  return state;
}

absl::Status OpenClBackend::SaveProgramBinary(const std::string& path) const {
  if (!loaded_) return absl::FailedPreconditionError("backend not loaded");
  return SaveProgramBinaryFile(cl_program_.get(), device_, path);
}

}  // namespace sluice::opencl
