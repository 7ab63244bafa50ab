// The CPU backend: the default backend and the reference every other backend is compared
// with. A Step computes each layer for all sessions of the batch as one matrix product
// (runtime/cpu/gemm.h), reading every session's conv window in place from its state slot.
#ifndef SLUICE_RUNTIME_CPU_CPU_BACKEND_H_
#define SLUICE_RUNTIME_CPU_CPU_BACKEND_H_

#include <memory>
#include <vector>

#include "runtime/backend.h"
#include "runtime/batch_validator.h"
#include "runtime/cpu/gemm.h"

namespace sluice::cpu {

// Thread-compatible (see Backend). Step is allocation-free; AllocateSlot may allocate a new
// chunk of slots (existing slots never move).
class CpuBackend : public Backend {
 public:
  // Loads `program`; the convenient form of constructing and calling Load.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(
      std::shared_ptr<const streaming::Program> program, const BackendOptions& options = {});

  CpuBackend();
  ~CpuBackend() override;

  std::string name() const override { return "cpu"; }
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

  // Matrix-product calls the last Step made; a constant of the program, whatever the batch.
  int64_t last_step_gemm_calls() const { return gemm_calls_; }
  int64_t live_slots() const { return live_slots_; }
  // Bytes of packed matrix weights (halved by Precision::kBf16).
  int64_t weight_bytes() const;

 private:
  struct CompiledOp;
  struct Chunk;

  absl::Status CheckSlot(SlotId slot) const;
  uint8_t* SlotState(SlotId slot) const;
  void RunGemm(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
               Epilogue epilogue);
  void RunConv(const CompiledOp& compiled, int batch);
  void RunRnn(const CompiledOp& compiled, int batch);

  std::shared_ptr<const streaming::Program> program_;
  BackendOptions options_;
  std::vector<CompiledOp> compiled_;

  // Per value: [max_batch][value size] floats.
  std::vector<std::vector<float>> values_;
  // Scratch sized at Load for max_batch.
  std::vector<const float*> rows_;
  std::vector<float> gather_;
  std::vector<float> gates_x_;
  std::vector<float> gates_h_;
  std::vector<float> gates_n_;
  std::vector<uint8_t*> states_;
  std::vector<int64_t> steps_;
  BatchValidator batch_validator_;
  int64_t gemm_calls_ = 0;

  // Slot pool: fixed-size chunks so a slot's address never changes.
  int64_t slot_stride_ = 0;
  std::vector<Chunk> chunks_;
  std::vector<uint8_t> slot_live_;
  std::vector<SlotId> free_slots_;
  int64_t live_slots_ = 0;
};

}  // namespace sluice::cpu

#endif  // SLUICE_RUNTIME_CPU_CPU_BACKEND_H_
