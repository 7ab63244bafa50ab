#include "runtime/cpu/kernels.h"

#include <algorithm>
#include <cmath>

namespace sluice::cpu {

using streaming::ReduceKind;

void ApplyUnary(const streaming::UnaryOp& op, int64_t count, const float* in, float* out) {
  if (op.kind == ir::UnaryKind::kRelu) {
    for (int64_t i = 0; i < count; ++i) out[i] = in[i] > 0.f ? in[i] : 0.f;
    return;
  }
  for (int64_t i = 0; i < count; ++i) out[i] = ir::ApplyUnary(op.kind, op.params, in[i]);
}

namespace {

// out[i] = a[ma ? ma[i] : i] (op) b[mb ? mb[i] : i] for i < size.
void Combine(ir::BinaryKind kind, int64_t size, const float* a, const int32_t* ma, const float* b,
             const int32_t* mb, float* out) {
  if (ma == nullptr && mb == nullptr) {
    switch (kind) {
      case ir::BinaryKind::kAdd:
        for (int64_t i = 0; i < size; ++i) out[i] = a[i] + b[i];
        return;
      case ir::BinaryKind::kMul:
        for (int64_t i = 0; i < size; ++i) out[i] = a[i] * b[i];
        return;
      default:
        for (int64_t i = 0; i < size; ++i) out[i] = ir::ApplyBinary(kind, a[i], b[i]);
        return;
    }
  }
  for (int64_t i = 0; i < size; ++i) {
    out[i] = ir::ApplyBinary(kind, a[ma ? ma[i] : i], b[mb ? mb[i] : i]);
  }
}

const int32_t* MapOrNull(const std::vector<int32_t>& map) {
  return map.empty() ? nullptr : map.data();
}

}  // namespace

void ApplyBinary(const streaming::BinaryOp& op, int batch, int64_t out_size, const float* a,
                 int64_t a_size, const float* b, int64_t b_size, float* out) {
  const int32_t* map_a = MapOrNull(op.map_a);
  const int32_t* map_b = MapOrNull(op.map_b);
  for (int s = 0; s < batch; ++s) {
    float* o = out + s * out_size;
    if (op.constant.empty()) {
      Combine(op.kind, out_size, a + s * a_size, map_a, b + s * b_size, map_b, o);
    } else if (op.constant_is_lhs) {
      // The streamed operand is always input `a`; here it is the right-hand side.
      Combine(op.kind, out_size, op.constant.data(), nullptr, a + s * a_size, map_b, o);
    } else {
      Combine(op.kind, out_size, a + s * a_size, map_a, op.constant.data(), nullptr, o);
    }
  }
}

void ApplyReduce(const streaming::ReduceOp& op, int batch, const float* in, float* out) {
  const auto& v = op.shape;
  const int64_t in_size = v.outer * v.axis * v.inner;
  for (int s = 0; s < batch; ++s) {
    const float* x = in + s * in_size;
    float* y = out + s * v.outer * v.inner;
    for (int64_t o = 0; o < v.outer; ++o) {
      for (int64_t i = 0; i < v.inner; ++i) {
        const float* p = x + o * v.axis * v.inner + i;
        float acc = op.kind == ReduceKind::kMax   ? -INFINITY
                    : op.kind == ReduceKind::kMin ? INFINITY
                                                  : 0.f;
        for (int64_t a = 0; a < v.axis; ++a) {
          const float e = p[a * v.inner];
          switch (op.kind) {
            case ReduceKind::kSum:
            case ReduceKind::kMean:
              acc += e;
              break;
            case ReduceKind::kMax:
              acc = std::max(acc, e);
              break;
            case ReduceKind::kMin:
              acc = std::min(acc, e);
              break;
            case ReduceKind::kL2:
            case ReduceKind::kSumSquare:
              acc += e * e;
              break;
          }
        }
        if (op.kind == ReduceKind::kMean) acc /= static_cast<float>(v.axis);
        if (op.kind == ReduceKind::kL2) acc = std::sqrt(acc);
        y[o * v.inner + i] = acc;
      }
    }
  }
}

void ApplySoftmax(const streaming::SoftmaxOp& op, int batch, const float* in, float* out) {
  const auto& v = op.shape;
  const int64_t size = v.outer * v.axis * v.inner;
  for (int s = 0; s < batch; ++s) {
    for (int64_t o = 0; o < v.outer; ++o) {
      for (int64_t i = 0; i < v.inner; ++i) {
        const int64_t base = s * size + o * v.axis * v.inner + i;
        float max = -INFINITY;
        for (int64_t a = 0; a < v.axis; ++a) max = std::max(max, in[base + a * v.inner]);
        float sum = 0.f;
        for (int64_t a = 0; a < v.axis; ++a) {
          const float e = std::exp(in[base + a * v.inner] - max);
          out[base + a * v.inner] = e;
          sum += e;
        }
        if (op.log) {
          const float log_sum = std::log(sum);
          for (int64_t a = 0; a < v.axis; ++a) {
            out[base + a * v.inner] = in[base + a * v.inner] - max - log_sum;
          }
        } else {
          const float inv = 1.f / sum;
          for (int64_t a = 0; a < v.axis; ++a) out[base + a * v.inner] *= inv;
        }
      }
    }
  }
}

void ApplyLayerNorm(const streaming::LayerNormOp& op, int batch, const float* in, float* out) {
  const int64_t n = op.shape.axis;
  const int64_t rows = static_cast<int64_t>(batch) * op.shape.outer;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * n;
    float* y = out + r * n;
    float mean = 0.f;
    for (int64_t i = 0; i < n; ++i) mean += x[i];
    mean /= static_cast<float>(n);
    float var = 0.f;
    for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= static_cast<float>(n);
    const float inv = 1.f / std::sqrt(var + op.epsilon);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv * op.scale[i] + op.bias[i];
  }
}

void ApplyConcat(const streaming::ConcatOp& op, int batch, const float* const* inputs, float* out) {
  int64_t total = 0;
  for (int64_t part : op.parts) total += part;
  for (int s = 0; s < batch; ++s) {
    float* o = out + s * op.outer * total;
    for (int64_t outer = 0; outer < op.outer; ++outer) {
      for (size_t k = 0; k < op.parts.size(); ++k) {
        const int64_t part = op.parts[k];
        const float* src = inputs[k] + (s * op.outer + outer) * part;
        std::copy(src, src + part, o);
        o += part;
      }
    }
  }
}

void ApplySlice(const streaming::SliceOp& op, int batch, const float* in, float* out) {
  const auto& v = op.shape;
  const int64_t in_size = v.outer * v.axis * v.inner;
  const int64_t out_size = v.outer * op.count * v.inner;
  for (int s = 0; s < batch; ++s) {
    for (int64_t o = 0; o < v.outer; ++o) {
      for (int64_t c = 0; c < op.count; ++c) {
        const float* src = in + s * in_size + (o * v.axis + op.start + c * op.step) * v.inner;
        std::copy(src, src + v.inner, out + s * out_size + (o * op.count + c) * v.inner);
      }
    }
  }
}

void DepthwiseConv(const float* window, const float* tap_weights, const float* bias,
                   int64_t channels, int64_t kernel, int64_t dilation, float* out) {
  for (int64_t c = 0; c < channels; ++c) out[c] = bias[c];
  for (int64_t i = 0; i < kernel; ++i) {
    const float* x = window + i * dilation * channels;
    const float* w = tap_weights + i * channels;
    for (int64_t c = 0; c < channels; ++c) out[c] += w[c] * x[c];
  }
}

}  // namespace sluice::cpu
