// The model graph as imported from ONNX: nodes in topological order, constant initializers,
// and the declared inputs/outputs. Plain data; the ONNX protobuf stays in runtime/onnx.
#ifndef SLUICE_RUNTIME_IR_GRAPH_H_
#define SLUICE_RUNTIME_IR_GRAPH_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/ir/tensor.h"

namespace sluice::ir {

struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kTensor, kStrings };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  Tensor t;
};

struct Node {
  std::string name;  // The ONNX node name; errors quote it (falls back to op#index).
  std::string op_type;
  std::vector<std::string> inputs;  // "" marks an omitted optional input.
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;

  bool HasAttr(const std::string& key) const { return attributes.count(key) > 0; }
  int64_t IntAttr(const std::string& key, int64_t fallback) const;
  float FloatAttr(const std::string& key, float fallback) const;
  std::string StringAttr(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> IntsAttr(const std::string& key) const;
  // Input i, or "" when absent.
  const std::string& Input(size_t i) const;
};

// A declared graph input or output. A dim is its size, or kUnknownDim with `dim_params[i]`
// naming it ("T", "batch", or "" when anonymous).
inline constexpr int64_t kUnknownDim = -1;
struct ValueInfo {
  std::string name;
  DataType dtype = DataType::kFloat32;
  bool is_float32 = true;  // False for any element type other than float32.
  std::string elem_type_name;
  std::vector<int64_t> dims;
  std::vector<std::string> dim_params;
};

struct Graph {
  std::vector<Node> nodes;  // Topologically sorted.
  std::map<std::string, Tensor> initializers;
  std::vector<ValueInfo> inputs;  // Excluding inputs that are initializers.
  std::vector<ValueInfo> outputs;
  int64_t opset = 0;  // Default-domain opset version.
};

}  // namespace sluice::ir

#endif  // SLUICE_RUNTIME_IR_GRAPH_H_
