// Constant folding: evaluates one ONNX node whose inputs are all known tensors. PyTorch
// exports are full of shape arithmetic (Shape/Gather/Concat/ConstantOfShape/Reshape/Cast...)
// and weight preprocessing (weight_norm's g * v / ||v||) that fold away here.
#ifndef SLUICE_RUNTIME_ONNX_FOLDER_H_
#define SLUICE_RUNTIME_ONNX_FOLDER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/ir/graph.h"

namespace sluice::onnx_import {

// True when EvaluateConstant knows `op_type`.
bool IsFoldable(const std::string& op_type);

// Evaluates `node` on `inputs` (nullptr for omitted optional inputs). int64 inputs may carry
// ir::kSymbolicTime elements: data movement keeps them; arithmetic on them fails with
// FailedPrecondition ("depends on the sequence length"). ResourceExhausted when a result would
// hold more than `max_result_elements` (at most ir::kMaxTensorElements) elements. Other errors
// are InvalidArgument.
absl::StatusOr<std::vector<ir::Tensor>> EvaluateConstant(
    const ir::Node& node, const std::vector<const ir::Tensor*>& inputs, int64_t opset,
    int64_t max_result_elements = ir::kMaxTensorElements);

// Resolves a possibly negative axis against `rank`; InvalidArgument when out of range.
absl::StatusOr<int> NormalizeAxis(int64_t axis, int rank, const ir::Node& node);

}  // namespace sluice::onnx_import

#endif  // SLUICE_RUNTIME_ONNX_FOLDER_H_
