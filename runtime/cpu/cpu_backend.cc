#include "runtime/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/common/status_macros.h"
#include "runtime/cpu/kernels.h"

namespace sluice::cpu {

using streaming::ConvOp;
using streaming::LinearOp;
using streaming::Op;
using streaming::RnnOp;

namespace {

constexpr int kSlotsPerChunk = 64;

enum class ConvPath {
  kWindowGemm,  // groups == 1, dilation == 1: the ring window is the GEMM row, read in place.
  kGatherGemm,  // groups == 1, dilation > 1: taps gathered into a row first.
  kGrouped,     // One GEMM per group over gathered rows.
  kDepthwise,   // groups == channels == out_channels.
};

int64_t StepCounter(const uint8_t* state) {
  int64_t step;
  std::memcpy(&step, state, sizeof(step));
  return step;
}

}  // namespace

struct CpuBackend::Chunk {
  std::unique_ptr<uint8_t[]> raw;
  uint8_t* base = nullptr;  // 64-byte aligned.
};

struct CpuBackend::CompiledOp {
  const Op* op = nullptr;
  Epilogue epilogue = Epilogue::kNone;
  bool post_activation = false;  // Activation not fused into the GEMM epilogue.
  ConvPath conv_path = ConvPath::kWindowGemm;
  std::vector<PackedWeights> weights;  // Conv: 1 or one per group; Linear: 1; RNN: W, R, R_h.
  std::vector<float> tap_weights;      // Depthwise: [kernel][channels].
};

CpuBackend::CpuBackend() = default;
CpuBackend::~CpuBackend() = default;

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(
    std::shared_ptr<const streaming::Program> program, const BackendOptions& options) {
  auto backend = std::make_unique<CpuBackend>();
  RETURN_IF_ERROR(backend->Load(std::move(program), options));
  return backend;
}

absl::Status CpuBackend::Load(std::shared_ptr<const streaming::Program> program,
                              const BackendOptions& options) {
  if (program_ != nullptr) return absl::FailedPreconditionError("backend already loaded");
  if (options.max_batch <= 0) return absl::InvalidArgumentError("max_batch must be positive");
  if (options.precision == Precision::kBf16) {
    program = std::make_shared<const streaming::Program>(streaming::RoundWeightsToBf16(*program));
  }
  program_ = std::move(program);
  options_ = options;
  const Precision precision = options.precision;
  const int max_batch = options.max_batch;
  int64_t max_rows = 2 * static_cast<int64_t>(max_batch);  // Windows + gathered rows.
  int64_t max_gather = 0;
  int64_t max_gates = 0;
  for (const Op& op : program_->ops) {
    CompiledOp compiled;
    compiled.op = &op;
    const bool gemm_op =
        std::holds_alternative<ConvOp>(op.params) || std::holds_alternative<LinearOp>(op.params);
    if (op.activation) {
      if (gemm_op && op.activation->kind == ir::UnaryKind::kRelu) {
        compiled.epilogue = Epilogue::kRelu;
      } else {
        compiled.post_activation = true;
      }
    }
    if (const auto* conv = std::get_if<ConvOp>(&op.params)) {
      const int64_t cin = conv->in_channels / conv->groups;
      const int64_t cout = conv->out_channels / conv->groups;
      if (conv->groups == 1) {
        compiled.conv_path = conv->dilation == 1 ? ConvPath::kWindowGemm : ConvPath::kGatherGemm;
      } else if (cin == 1 && cout == 1) {
        compiled.conv_path = ConvPath::kDepthwise;
      } else {
        compiled.conv_path = ConvPath::kGrouped;
      }
      if (compiled.conv_path == ConvPath::kDepthwise && op.activation) {
        // No GEMM epilogue on this path: apply the activation afterwards.
        compiled.epilogue = Epilogue::kNone;
        compiled.post_activation = true;
      }
      if (compiled.conv_path == ConvPath::kDepthwise) {
        compiled.tap_weights.resize(conv->kernel * conv->in_channels);
        for (int64_t c = 0; c < conv->in_channels; ++c) {
          for (int64_t i = 0; i < conv->kernel; ++i) {
            compiled.tap_weights[i * conv->in_channels + c] = conv->weight[c * conv->kernel + i];
          }
        }
      } else {
        // Row layout [tap][channel in group]; ONNX weight is [out][in/groups][kernel].
        const int64_t k = conv->kernel * cin;
        for (int64_t g = 0; g < conv->groups; ++g) {
          std::vector<float> w_kn(k * cout);
          for (int64_t o = 0; o < cout; ++o) {
            for (int64_t c = 0; c < cin; ++c) {
              for (int64_t i = 0; i < conv->kernel; ++i) {
                w_kn[(i * cin + c) * cout + o] =
                    conv->weight[((g * cout + o) * cin + c) * conv->kernel + i];
              }
            }
          }
          compiled.weights.emplace_back(static_cast<int>(k), static_cast<int>(cout), w_kn.data(),
                                        conv->bias.data() + g * cout, precision);
        }
        if (compiled.conv_path != ConvPath::kWindowGemm) max_gather = std::max(max_gather, k);
      }
    } else if (const auto* linear = std::get_if<LinearOp>(&op.params)) {
      compiled.weights.emplace_back(
          static_cast<int>(linear->in_features), static_cast<int>(linear->out_features),
          linear->weight.data(), linear->bias.empty() ? nullptr : linear->bias.data(), precision);
      max_rows = std::max<int64_t>(max_rows, linear->rows * max_batch);
    } else if (const auto* rnn = std::get_if<RnnOp>(&op.params)) {
      const int64_t gh = rnn->gates() * rnn->hidden;
      compiled.weights.emplace_back(static_cast<int>(rnn->input_size), static_cast<int>(gh),
                                    rnn->w.data(), rnn->w_bias.data(), precision);
      compiled.weights.emplace_back(static_cast<int>(rnn->hidden), static_cast<int>(gh),
                                    rnn->r.data(), rnn->r_bias.data(), precision);
      if (rnn->gru && !rnn->linear_before_reset) {
        // (r * h) @ R_h^T needs R's h-gate columns alone.
        std::vector<float> r_h(rnn->hidden * rnn->hidden);
        for (int64_t k = 0; k < rnn->hidden; ++k) {
          for (int64_t n = 0; n < rnn->hidden; ++n) {
            r_h[k * rnn->hidden + n] = rnn->r[k * gh + 2 * rnn->hidden + n];
          }
        }
        compiled.weights.emplace_back(static_cast<int>(rnn->hidden), static_cast<int>(rnn->hidden),
                                      r_h.data(), rnn->r_bias.data() + 2 * rnn->hidden, precision);
        max_gather = std::max(max_gather, rnn->hidden);
      }
      max_gates = std::max(max_gates, gh);
    }
    compiled_.push_back(std::move(compiled));
  }
  values_.resize(program_->values.size());
  for (size_t v = 0; v < values_.size(); ++v) {
    values_[v].assign(program_->values[v].size * max_batch, 0.f);
  }
  rows_.resize(max_rows);
  gather_.resize(max_gather * max_batch);
  gates_x_.resize(max_gates * max_batch);
  gates_h_.resize(max_gates * max_batch);
  gates_n_.resize(max_gates * max_batch);
  states_.resize(max_batch);
  steps_.resize(max_batch);
  slot_stride_ = std::max<int64_t>(64, (program_->state_bytes + 63) / 64 * 64);
  return absl::OkStatus();
}

int64_t CpuBackend::weight_bytes() const {
  int64_t bytes = 0;
  for (const CompiledOp& compiled : compiled_) {
    for (const PackedWeights& w : compiled.weights) bytes += w.bytes();
  }
  return bytes;
}

absl::Status CpuBackend::CheckSlot(SlotId slot) const {
  if (slot < 0 || slot >= static_cast<SlotId>(slot_live_.size()) || !slot_live_[slot]) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is not allocated"));
  }
  return absl::OkStatus();
}

uint8_t* CpuBackend::SlotState(SlotId slot) const {
  return chunks_[slot / kSlotsPerChunk].base + (slot % kSlotsPerChunk) * slot_stride_;
}

absl::StatusOr<SlotId> CpuBackend::AllocateSlot() {
  if (program_ == nullptr) return absl::FailedPreconditionError("backend not loaded");
  if (options_.max_slots > 0 && live_slots_ >= options_.max_slots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", options_.max_slots, " session slots are in use"));
  }
  if (free_slots_.empty()) {
    Chunk chunk;
    const int64_t bytes = slot_stride_ * kSlotsPerChunk + 64;
    chunk.raw.reset(new (std::nothrow) uint8_t[bytes]);
    if (chunk.raw == nullptr) {
      return absl::ResourceExhaustedError("out of memory for session state");
    }
    const auto address = reinterpret_cast<uintptr_t>(chunk.raw.get());
    chunk.base = chunk.raw.get() + ((64 - address % 64) % 64);
    const SlotId first = static_cast<SlotId>(chunks_.size() * kSlotsPerChunk);
    chunks_.push_back(std::move(chunk));
    slot_live_.resize(slot_live_.size() + kSlotsPerChunk, 0);
    batch_validator_.Resize(slot_live_.size());
    for (int i = kSlotsPerChunk - 1; i >= 0; --i) free_slots_.push_back(first + i);
  }
  const SlotId slot = free_slots_.back();
  free_slots_.pop_back();
  slot_live_[slot] = 1;
  ++live_slots_;
  std::memset(SlotState(slot), 0, slot_stride_);
  return slot;
}

absl::Status CpuBackend::ResetSlot(SlotId slot) {
  RETURN_IF_ERROR(CheckSlot(slot));
  std::memset(SlotState(slot), 0, slot_stride_);
  return absl::OkStatus();
}

absl::Status CpuBackend::FreeSlot(SlotId slot) {
  RETURN_IF_ERROR(CheckSlot(slot));
  slot_live_[slot] = 0;
  free_slots_.push_back(slot);
  --live_slots_;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> CpuBackend::ExportSlot(SlotId slot) {
  RETURN_IF_ERROR(CheckSlot(slot));
  const uint8_t* state = SlotState(slot);
  return std::vector<uint8_t>(state, state + program_->state_bytes);
}

absl::Status CpuBackend::ImportSlot(SlotId slot, absl::Span<const uint8_t> state) {
  RETURN_IF_ERROR(CheckSlot(slot));
  if (static_cast<int64_t>(state.size()) != program_->state_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state holds ", state.size(), " bytes; this program's state is ", program_->state_bytes));
  }
  std::memcpy(SlotState(slot), state.data(), state.size());
  return absl::OkStatus();
}

void CpuBackend::RunGemm(const PackedWeights& w, int m, const float* const* rows, float* out,
                         int ldc, Epilogue epilogue) {
  Gemm(w, m, rows, out, ldc, epilogue);
  ++gemm_calls_;
}

void CpuBackend::RunConv(const CompiledOp& compiled, int batch) {
  const Op& op = *compiled.op;
  const auto& conv = std::get<ConvOp>(op.params);
  const int64_t cin = conv.in_channels;
  const int64_t taps = conv.taps();
  const float* in = values_[op.inputs[0]].data();
  float* out = values_[op.output].data();
  // Advance each active session's ring; `rows_[b]` becomes its window, oldest frame first.
  for (int b = 0; b < batch; ++b) {
    uint8_t* region = states_[b] + conv.state_offset;
    int64_t head;
    std::memcpy(&head, region, sizeof(head));
    float* ring = reinterpret_cast<float*>(region + streaming::kConvStateHeader);
    if (steps_[b] >= op.input_lag) {
      const float* frame = in + b * cin;
      std::memcpy(ring + head * cin, frame, cin * sizeof(float));
      std::memcpy(ring + (head + taps) * cin, frame, cin * sizeof(float));
      rows_[b] = ring + (head + 1) * cin;
      head = head + 1 == taps ? 0 : head + 1;
      std::memcpy(region, &head, sizeof(head));
    } else {
      rows_[b] = ring + (head + 1) * cin;  // Warm-up: the output is never reported.
    }
  }
  switch (compiled.conv_path) {
    case ConvPath::kWindowGemm:
      RunGemm(compiled.weights[0], batch, rows_.data(), out, static_cast<int>(conv.out_channels),
              compiled.epilogue);
      return;
    case ConvPath::kDepthwise:
      for (int b = 0; b < batch; ++b) {
        DepthwiseConv(rows_[b], compiled.tap_weights.data(), conv.bias.data(), cin, conv.kernel,
                      conv.dilation, out + b * conv.out_channels);
      }
      return;
    case ConvPath::kGatherGemm:
    case ConvPath::kGrouped: {
      const int64_t group_in = cin / conv.groups;
      const int64_t group_out = conv.out_channels / conv.groups;
      const int64_t k = conv.kernel * group_in;
      for (int64_t g = 0; g < conv.groups; ++g) {
        for (int b = 0; b < batch; ++b) {
          float* row = gather_.data() + b * k;
          for (int64_t i = 0; i < conv.kernel; ++i) {
            const float* tap = rows_[b] + i * conv.dilation * cin + g * group_in;
            std::memcpy(row + i * group_in, tap, group_in * sizeof(float));
          }
        }
        // rows_ still holds the windows; gathered rows go through a second pointer table.
        const float** gathered = rows_.data() + batch;
        for (int b = 0; b < batch; ++b) gathered[b] = gather_.data() + b * k;
        RunGemm(compiled.weights[g], batch, gathered, out + g * group_out,
                static_cast<int>(conv.out_channels), compiled.epilogue);
      }
      return;
    }
  }
}

void CpuBackend::RunRnn(const CompiledOp& compiled, int batch) {
  const Op& op = *compiled.op;
  const auto& rnn = std::get<RnnOp>(op.params);
  const int64_t hidden = rnn.hidden;
  const int64_t gh = rnn.gates() * hidden;
  const float* in = values_[op.inputs[0]].data();
  float* out = values_[op.output].data();
  for (int b = 0; b < batch; ++b) rows_[b] = in + b * rnn.input_size;
  RunGemm(compiled.weights[0], batch, rows_.data(), gates_x_.data(), static_cast<int>(gh),
          Epilogue::kNone);
  for (int b = 0; b < batch; ++b) {
    rows_[b] = reinterpret_cast<const float*>(states_[b] + rnn.state_offset);
  }
  RunGemm(compiled.weights[1], batch, rows_.data(), gates_h_.data(), static_cast<int>(gh),
          Epilogue::kNone);
  if (rnn.gru && !rnn.linear_before_reset) {
    for (int b = 0; b < batch; ++b) {
      const float* h = rows_[b];
      const float* gx = gates_x_.data() + b * gh;
      const float* g = gates_h_.data() + b * gh;
      float* reset_h = gather_.data() + b * hidden;
      for (int64_t j = 0; j < hidden; ++j) {
        reset_h[j] = ir::Sigmoid(gx[hidden + j] + g[hidden + j]) * h[j];
      }
      rows_[batch + b] = reset_h;
    }
    RunGemm(compiled.weights[2], batch, rows_.data() + batch, gates_n_.data(),
            static_cast<int>(hidden), Epilogue::kNone);
  }
  for (int b = 0; b < batch; ++b) {
    float* h = reinterpret_cast<float*>(states_[b] + rnn.state_offset);
    const float* gx = gates_x_.data() + b * gh;
    const float* g = gates_h_.data() + b * gh;
    float* y = out + b * hidden;
    if (rnn.gru) {
      const float* gn = gates_n_.data() + b * hidden;
      for (int64_t j = 0; j < hidden; ++j) {
        const float z = ir::Sigmoid(gx[j] + g[j]);
        const float r = ir::Sigmoid(gx[hidden + j] + g[hidden + j]);
        const float n = std::tanh(gx[2 * hidden + j] +
                                  (rnn.linear_before_reset ? r * g[2 * hidden + j] : gn[j]));
        y[j] = (1.f - z) * n + z * h[j];
      }
    } else {
      float* c = h + hidden;
      for (int64_t j = 0; j < hidden; ++j) {
        const float i = ir::Sigmoid(gx[j] + g[j]);
        const float o = ir::Sigmoid(gx[hidden + j] + g[hidden + j]);
        const float f = ir::Sigmoid(gx[2 * hidden + j] + g[2 * hidden + j]);
        const float cell = std::tanh(gx[3 * hidden + j] + g[3 * hidden + j]);
        const float c_next = f * c[j] + i * cell;
        y[j] = o * std::tanh(c_next);
        if (steps_[b] >= op.input_lag) c[j] = c_next;
      }
    }
    if (steps_[b] >= op.input_lag) std::memcpy(h, y, hidden * sizeof(float));
  }
}

absl::Status CpuBackend::Step(absl::Span<const StepItem> batch, absl::Span<float* const> outputs,
                              absl::Span<uint8_t> ready) {
  if (program_ == nullptr) return absl::FailedPreconditionError("backend not loaded");
  const int n = static_cast<int>(batch.size());
  if (n > options_.max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", n, " exceeds max_batch ", options_.max_batch));
  }
  if (outputs.size() != program_->outputs.size() || ready.size() < batch.size()) {
    return absl::InvalidArgumentError("outputs/ready do not match the program and batch");
  }
  RETURN_IF_ERROR(
      batch_validator_.Validate(batch, [this](SlotId slot) { return CheckSlot(slot); }));
  gemm_calls_ = 0;
  if (n == 0) return absl::OkStatus();
  const int64_t in_size = program_->input.frame_size;
  float* input = values_[program_->input_value].data();
  for (int b = 0; b < n; ++b) {
    states_[b] = SlotState(batch[b].slot);
    steps_[b] = StepCounter(states_[b]);
    std::memcpy(input + b * in_size, batch[b].frame, in_size * sizeof(float));
  }
  for (const CompiledOp& compiled : compiled_) {
    const Op& op = *compiled.op;
    float* out = values_[op.output].data();
    const int64_t out_size = program_->values[op.output].size;
    const float* in0 = op.inputs.empty() ? nullptr : values_[op.inputs[0]].data();
    if (std::holds_alternative<ConvOp>(op.params)) {
      RunConv(compiled, n);
    } else if (const auto* linear = std::get_if<LinearOp>(&op.params)) {
      const int64_t in_size_op = program_->values[op.inputs[0]].size;
      const int m = static_cast<int>(n * linear->rows);
      for (int b = 0; b < n; ++b) {
        for (int64_t r = 0; r < linear->rows; ++r) {
          rows_[b * linear->rows + r] = in0 + b * in_size_op + r * linear->in_features;
        }
      }
      RunGemm(compiled.weights[0], m, rows_.data(), out, static_cast<int>(linear->out_features),
              compiled.epilogue);
    } else if (std::holds_alternative<RnnOp>(op.params)) {
      RunRnn(compiled, n);
    } else if (const auto* unary = std::get_if<streaming::UnaryOp>(&op.params)) {
      ApplyUnary(*unary, n * out_size, in0, out);
    } else if (const auto* binary = std::get_if<streaming::BinaryOp>(&op.params)) {
      const int64_t a_size = program_->values[op.inputs[0]].size;
      const bool two = op.inputs.size() > 1;
      ApplyBinary(*binary, n, out_size, in0, a_size, two ? values_[op.inputs[1]].data() : nullptr,
                  two ? program_->values[op.inputs[1]].size : 0, out);
    } else if (const auto* reduce = std::get_if<streaming::ReduceOp>(&op.params)) {
      ApplyReduce(*reduce, n, in0, out);
    } else if (const auto* softmax = std::get_if<streaming::SoftmaxOp>(&op.params)) {
      ApplySoftmax(*softmax, n, in0, out);
    } else if (const auto* norm = std::get_if<streaming::LayerNormOp>(&op.params)) {
      ApplyLayerNorm(*norm, n, in0, out);
    } else if (const auto* concat = std::get_if<streaming::ConcatOp>(&op.params)) {
      const float** inputs = rows_.data();
      for (size_t k = 0; k < op.inputs.size(); ++k) inputs[k] = values_[op.inputs[k]].data();
      ApplyConcat(*concat, n, inputs, out);
    } else if (const auto* slice = std::get_if<streaming::SliceOp>(&op.params)) {
      ApplySlice(*slice, n, in0, out);
    }
    if (compiled.post_activation) ApplyUnary(*op.activation, n * out_size, out, out);
  }
  for (size_t j = 0; j < outputs.size(); ++j) {
    const int64_t size = program_->outputs[j].frame_size;
    std::memcpy(outputs[j], values_[program_->output_values[j]].data(), n * size * sizeof(float));
  }
  for (int b = 0; b < n; ++b) {
    ready[b] = steps_[b] >= program_->warmup_frames ? 1 : 0;
    const int64_t next = steps_[b] + 1;
    std::memcpy(states_[b], &next, sizeof(next));
  }
  return absl::OkStatus();
}

}  // namespace sluice::cpu
