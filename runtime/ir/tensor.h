// Constant tensors of the model IR: weights, folded shape arithmetic, attribute tensors.
#ifndef SLUICE_RUNTIME_IR_TENSOR_H_
#define SLUICE_RUNTIME_IR_TENSOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::ir {

// Float tensors hold float32; every integer or boolean tensor is widened to int64.
enum class DataType { kFloat32, kInt64 };

// Stands for the symbolic sequence length inside folded int64 shape tensors (the result of
// Shape on a streamed value). Data movement keeps it; arithmetic on it is not folded.
inline constexpr int64_t kSymbolicTime = -(int64_t{1} << 62);

// The most elements one constant tensor may hold: an initializer, an attribute tensor or a
// folded value (1 GiB of float32). Past it, import and folding fail with ResourceExhausted
// instead of letting a hostile or broken model allocate without bound. (Folding has a tighter,
// per-model budget: see streaming/transform.h.)
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 28;

// A dense row-major tensor. Copyable value type; copies are deep.
struct Tensor {
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<float> f32;    // Used when dtype == kFloat32.
  std::vector<int64_t> i64;  // Used when dtype == kInt64.

  static Tensor Float(std::vector<int64_t> shape, std::vector<float> values);
  static Tensor Int64(std::vector<int64_t> shape, std::vector<int64_t> values);
  static Tensor ScalarFloat(float value) { return Float({}, {value}); }

  int64_t NumElements() const;
  int rank() const { return static_cast<int>(shape.size()); }
  bool is_float() const { return dtype == DataType::kFloat32; }
  // Element i as double / int64, whatever the dtype.
  double AsDouble(int64_t i) const { return is_float() ? f32[i] : static_cast<double>(i64[i]); }
  int64_t AsInt(int64_t i) const;
  std::vector<int64_t> AsInts() const;
  bool ContainsSymbolicTime() const;
};

std::string ShapeToString(const std::vector<int64_t>& shape);
// The product of the dims (saturating at INT64_MAX instead of overflowing).
int64_t NumElements(const std::vector<int64_t>& shape);
// The element count of `shape` when every dim is >= 0 and the count is at most `limit`.
std::optional<int64_t> CheckedNumElements(const std::vector<int64_t>& shape, int64_t limit);
// `v` as an int64, saturated to the int64 range (NaN gives 0): a plain cast of an out-of-range
// float is undefined behaviour, and folded shape arithmetic may hold anything.
int64_t SaturatingToInt64(double v);
// Row-major strides of `shape`.
std::vector<int64_t> Strides(const std::vector<int64_t>& shape);
// Numpy-style broadcast of two shapes; false when incompatible.
bool BroadcastShapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                     std::vector<int64_t>* out);

}  // namespace sluice::ir

#endif  // SLUICE_RUNTIME_IR_TENSOR_H_
