#include "runtime/ir/elementwise.h"

#include <map>

namespace sluice::ir {
namespace {

const std::map<std::string, UnaryKind>& UnaryTable() {
  static const auto* table = new std::map<std::string, UnaryKind>{
      {"Relu", UnaryKind::kRelu},
      {"LeakyRelu", UnaryKind::kLeakyRelu},
      {"Sigmoid", UnaryKind::kSigmoid},
      {"Tanh", UnaryKind::kTanh},
      {"Gelu", UnaryKind::kGelu},
      {"Erf", UnaryKind::kErf},
      {"Silu", UnaryKind::kSilu},
      {"Softplus", UnaryKind::kSoftplus},
      {"Clip", UnaryKind::kClip},
      {"Exp", UnaryKind::kExp},
      {"Log", UnaryKind::kLog},
      {"Sqrt", UnaryKind::kSqrt},
      {"Neg", UnaryKind::kNeg},
      {"Abs", UnaryKind::kAbs},
      {"Reciprocal", UnaryKind::kReciprocal},
      {"Elu", UnaryKind::kElu},
      {"HardSigmoid", UnaryKind::kHardSigmoid},
      {"Floor", UnaryKind::kFloor},
      {"Ceil", UnaryKind::kCeil},
      {"Sign", UnaryKind::kSign},
      {"Identity", UnaryKind::kIdentity},
  };
  return *table;
}

const std::map<std::string, BinaryKind>& BinaryTable() {
  static const auto* table = new std::map<std::string, BinaryKind>{
      {"Add", BinaryKind::kAdd}, {"Sub", BinaryKind::kSub}, {"Mul", BinaryKind::kMul},
      {"Div", BinaryKind::kDiv}, {"Pow", BinaryKind::kPow}, {"Min", BinaryKind::kMin},
      {"Max", BinaryKind::kMax},
  };
  return *table;
}

}  // namespace

std::optional<UnaryKind> ParseUnary(const std::string& op_type) {
  auto it = UnaryTable().find(op_type);
  if (it == UnaryTable().end()) return std::nullopt;
  return it->second;
}

std::optional<BinaryKind> ParseBinary(const std::string& op_type) {
  auto it = BinaryTable().find(op_type);
  if (it == BinaryTable().end()) return std::nullopt;
  return it->second;
}

const char* UnaryName(UnaryKind kind) {
  for (const auto& [name, k] : UnaryTable()) {
    if (k == kind) return name.c_str();
  }
  return "?";
}

const char* BinaryName(BinaryKind kind) {
  for (const auto& [name, k] : BinaryTable()) {
    if (k == kind) return name.c_str();
  }
  return "?";
}

}  // namespace sluice::ir
