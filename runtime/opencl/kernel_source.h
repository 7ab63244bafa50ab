// Turns a streaming Program into an OpenCL program for one kernel variant: the complete OpenCL C
// source (kernels/ templates specialised per op with compile-time constants), the constant
// tensors to upload (weights in kernel layout, biases, index maps), and the launch chain of one
// Step. Pure host code: no OpenCL calls, so it also serves tools that emit the source for the
// Intel FPGA offline compiler.
#ifndef SLUICE_RUNTIME_OPENCL_KERNEL_SOURCE_H_
#define SLUICE_RUNTIME_OPENCL_KERNEL_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/streaming/program.h"

namespace sluice::opencl {

enum class KernelVariant {
  kAuto,            // Single work-item on FPGA / accelerator devices, NDRange elsewhere.
  kNdRange,         // kernels/ndrange: many work-items, explicit float vectors (CPU, GPU).
  kSingleWorkItem,  // kernels/fpga: one pipelined work-item per kernel (Intel FPGA).
};
const char* KernelVariantName(KernelVariant variant);  // "auto", "ndrange", "single_work_item"
absl::StatusOr<KernelVariant> ParseKernelVariant(std::string_view name);

// Where a kernel argument comes from; the backend binds it per batch bucket.
struct KernelArg {
  enum class Kind {
    kValue,   // Program value `index`: [bucket][value size] floats.
    kOutput,  // Model output `index`'s part of the result buffer: [bucket][frame size].
    kConst,   // KernelProgram::consts[index].
    kPool,    // The state pool.
    kSlots,   // [bucket] int32 pool indices (0 = padding row).
    kReady,   // [bucket] int32 ready flags in the result buffer.
    kMirror,  // [bucket][mirror_bytes] recurrent-state read-back in the result buffer.
    kBatch,   // int: the bucket's row count.
    kUnused,  // A buffer parameter this op does not use (bound to a placeholder).
  };
  Kind kind = Kind::kUnused;
  int index = -1;
};

// One kernel launch of the chain.
struct Launch {
  std::string kernel;
  std::vector<KernelArg> args;
  bool task = false;  // Single work-item: global = local = 1.
  // NDRange: global {global_x, bucket * rows_per_session / rows_per_item}, local {local_x, 1};
  // or, with sessions_on_x, global {bucket rounded up to local_x}, local {local_x}.
  size_t global_x = 1;
  size_t local_x = 1;
  int rows_per_session = 1;
  int rows_per_item = 1;
  bool sessions_on_x = false;

  bool Fits(int bucket) const { return (bucket * rows_per_session) % rows_per_item == 0; }
  // Work sizes for a bucket of `bucket` rows; returns the dimension count.
  unsigned Geometry(int bucket, size_t global[2], size_t local[2]) const;
};

// The launches of one GEMM-class op (conv, linear, LSTM/GRU), or of one fused run of
// consecutive per-session ops (elementwise, reductions, ..., and the step commit). Alternatives
// differ only in rows_per_item, most first; a bucket uses the first that fits.
struct Stage {
  std::string what;  // "op 3 Conv /conv1/Conv", for errors.
  std::vector<Launch> alternatives;
  const Launch& For(int bucket) const;
};

// A constant device buffer: weights, biases, index maps.
struct ConstTensor {
  std::string name;
  std::vector<uint8_t> bytes;
  bool is_int = false;  // int32 (index maps) rather than float.
};

struct KernelProgram {
  KernelVariant variant = KernelVariant::kNdRange;
  std::string source;         // Complete OpenCL C 1.2, fingerprint kernel included.
  std::string build_options;  // For clBuildProgram.
  // A no-op kernel named after the hash of the source: a precompiled binary lacking it was
  // built for another model, variant or kernel version.
  std::string fingerprint;
  std::vector<ConstTensor> consts;
  std::vector<Stage> stages;  // In order; the last one ends with the step commit.
  // Per program value: the model output whose result-buffer part holds it, or -1.
  std::vector<int> value_output;
  // Bytes between session slots in the pool (program.state_bytes rounded up to 64).
  int64_t slot_stride = 64;
  // With KernelOptions::mirror_recurrent_state: per session and step, the int64 step counter
  // and then each of these (state offset, bytes) regions, copied after the step.
  int64_t mirror_bytes = 0;
  std::vector<std::pair<int64_t, int64_t>> mirror_regions;
};

// 64-bit FNV-1a: stable across runs and builds (cache keys, fingerprints).
uint64_t Fnv1a64(std::string_view data, uint64_t seed = 0xcbf29ce484222325ull);

struct KernelOptions {
  KernelVariant variant = KernelVariant::kNdRange;  // kNdRange or kSingleWorkItem, not kAuto.
  // Work-group size of the fused per-session kernels (NDRange): one session per work-item.
  int fused_local_size = 1;
  // Copy each session's step counter and LSTM/GRU state to the result buffer every step.
  bool mirror_recurrent_state = false;
};

// Generates the program. InvalidArgument for kAuto or a malformed program; Unimplemented for
// a program the kernels cannot express (e.g. a misaligned state region).
absl::StatusOr<KernelProgram> GenerateKernelProgram(const streaming::Program& program,
                                                    const KernelOptions& options);

}  // namespace sluice::opencl

#endif  // SLUICE_RUNTIME_OPENCL_KERNEL_SOURCE_H_
