// The scalar math of elementwise ops, shared by constant folding and the backends so that
// every place computes a Sigmoid or a Gelu the same way.
#ifndef SLUICE_RUNTIME_IR_ELEMENTWISE_H_
#define SLUICE_RUNTIME_IR_ELEMENTWISE_H_

#include <cmath>
#include <optional>
#include <string>

namespace sluice::ir {

enum class UnaryKind {
  kRelu,
  kLeakyRelu,
  kSigmoid,
  kTanh,
  kGelu,
  kErf,
  kSilu,
  kSoftplus,
  kClip,
  kExp,
  kLog,
  kSqrt,
  kNeg,
  kAbs,
  kReciprocal,
  kElu,
  kHardSigmoid,
  kFloor,
  kCeil,
  kSign,
  kIdentity,
};
enum class BinaryKind { kAdd, kSub, kMul, kDiv, kPow, kMin, kMax };

// Parameters some unary ops carry: LeakyRelu/Elu alpha, Clip bounds, HardSigmoid alpha/beta.
struct UnaryParams {
  float alpha = 0.f;
  float beta = 0.f;
  float lo = -INFINITY;
  float hi = INFINITY;
};

// Maps an ONNX op type to its kind, or nullopt.
std::optional<UnaryKind> ParseUnary(const std::string& op_type);
std::optional<BinaryKind> ParseBinary(const std::string& op_type);
const char* UnaryName(UnaryKind kind);
const char* BinaryName(BinaryKind kind);

inline float Sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

inline float ApplyUnary(UnaryKind kind, const UnaryParams& p, float x) {
  switch (kind) {
    case UnaryKind::kRelu:
      return x > 0.f ? x : 0.f;
    case UnaryKind::kLeakyRelu:
      return x >= 0.f ? x : p.alpha * x;
    case UnaryKind::kSigmoid:
      return Sigmoid(x);
    case UnaryKind::kTanh:
      return std::tanh(x);
    case UnaryKind::kGelu:
      return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
    case UnaryKind::kErf:
      return std::erf(x);
    case UnaryKind::kSilu:
      return x * Sigmoid(x);
    case UnaryKind::kSoftplus:
      return x > 20.f ? x : std::log1p(std::exp(x));
    case UnaryKind::kClip:
      return x < p.lo ? p.lo : (x > p.hi ? p.hi : x);
    case UnaryKind::kExp:
      return std::exp(x);
    case UnaryKind::kLog:
      return std::log(x);
    case UnaryKind::kSqrt:
      return std::sqrt(x);
    case UnaryKind::kNeg:
      return -x;
    case UnaryKind::kAbs:
      return std::fabs(x);
    case UnaryKind::kReciprocal:
      return 1.f / x;
    case UnaryKind::kElu:
      return x >= 0.f ? x : p.alpha * (std::exp(x) - 1.f);
    case UnaryKind::kHardSigmoid: {
      const float y = p.alpha * x + p.beta;
      return y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
    }
    case UnaryKind::kFloor:
      return std::floor(x);
    case UnaryKind::kCeil:
      return std::ceil(x);
    case UnaryKind::kSign:
      return static_cast<float>((x > 0.f) - (x < 0.f));
    case UnaryKind::kIdentity:
      return x;
  }
  return x;
}

inline float ApplyBinary(BinaryKind kind, float a, float b) {
  switch (kind) {
    case BinaryKind::kAdd:
      return a + b;
    case BinaryKind::kSub:
      return a - b;
    case BinaryKind::kMul:
      return a * b;
    case BinaryKind::kDiv:
      return a / b;
    case BinaryKind::kPow:
      return b == 2.f ? a * a : std::pow(a, b);
    case BinaryKind::kMin:
      return a < b ? a : b;
    case BinaryKind::kMax:
      return a > b ? a : b;
  }
  return a;
}

}  // namespace sluice::ir

#endif  // SLUICE_RUNTIME_IR_ELEMENTWISE_H_
