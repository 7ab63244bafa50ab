// Per-frame CPU kernels other than matrix products, each over a batch of sessions whose frames
// are contiguous ([batch][frame size]). Per-session arithmetic never depends on the batch, so
// results are bitwise batch-invariant.
#ifndef SLUICE_RUNTIME_CPU_KERNELS_H_
#define SLUICE_RUNTIME_CPU_KERNELS_H_

#include <cstdint>

#include "runtime/streaming/program.h"

namespace sluice::cpu {

void ApplyUnary(const streaming::UnaryOp& op, int64_t count, const float* in, float* out);

// `a` / `b` frames are a_size / b_size floats (ignored for the constant operand).
void ApplyBinary(const streaming::BinaryOp& op, int batch, int64_t out_size, const float* a,
                 int64_t a_size, const float* b, int64_t b_size, float* out);

void ApplyReduce(const streaming::ReduceOp& op, int batch, const float* in, float* out);
void ApplySoftmax(const streaming::SoftmaxOp& op, int batch, const float* in, float* out);
void ApplyLayerNorm(const streaming::LayerNormOp& op, int batch, const float* in, float* out);
// `inputs[k]` is input k's batch of frames.
void ApplyConcat(const streaming::ConcatOp& op, int batch, const float* const* inputs, float* out);
void ApplySlice(const streaming::SliceOp& op, int batch, const float* in, float* out);

// Depthwise causal conv for one session: `window` is taps() frames of `channels` floats,
// oldest first; out[c] = bias[c] + sum_i tap_weights[i][c] * window[i * dilation][c].
// `tap_weights` is [kernel][channels] (transposed from ONNX for contiguous loads).
void DepthwiseConv(const float* window, const float* tap_weights, const float* bias,
                   int64_t channels, int64_t kernel, int64_t dilation, float* out);

}  // namespace sluice::cpu

#endif  // SLUICE_RUNTIME_CPU_KERNELS_H_
