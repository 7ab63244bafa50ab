#include "runtime/ir/tensor.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice::ir {

Tensor Tensor::Float(std::vector<int64_t> shape, std::vector<float> values) {
  Tensor t;
  t.dtype = DataType::kFloat32;
  t.shape = std::move(shape);
  t.f32 = std::move(values);
  return t;
}

Tensor Tensor::Int64(std::vector<int64_t> shape, std::vector<int64_t> values) {
  Tensor t;
  t.dtype = DataType::kInt64;
  t.shape = std::move(shape);
  t.i64 = std::move(values);
  return t;
}

int64_t Tensor::NumElements() const { return ir::NumElements(shape); }

int64_t Tensor::AsInt(int64_t i) const { return is_float() ? SaturatingToInt64(f32[i]) : i64[i]; }

std::vector<int64_t> Tensor::AsInts() const {
  if (!is_float()) return i64;
  std::vector<int64_t> out(f32.size());
  for (size_t i = 0; i < f32.size(); ++i) out[i] = SaturatingToInt64(f32[i]);
  return out;
}

bool Tensor::ContainsSymbolicTime() const {
  return !is_float() && std::find(i64.begin(), i64.end(), kSymbolicTime) != i64.end();
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::vector<std::string> dims;
  for (int64_t d : shape) dims.push_back(d == kSymbolicTime ? "T" : absl::StrCat(d));
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) return std::numeric_limits<int64_t>::max();
  }
  return n;
}

std::optional<int64_t> CheckedNumElements(const std::vector<int64_t>& shape, int64_t limit) {
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n) || n > limit) return std::nullopt;
  }
  return n;
}

int64_t SaturatingToInt64(double v) {
  if (std::isnan(v)) return 0;
  // 2^63 is exactly representable; every double below it converts without overflow.
  if (v >= 9223372036854775808.0) return std::numeric_limits<int64_t>::max();
  if (v <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(v);
}

std::vector<int64_t> Strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) {
    strides[i] = strides[i + 1] * shape[i + 1];
  }
  return strides;
}

bool BroadcastShapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                     std::vector<int64_t>* out) {
  const size_t rank = std::max(a.size(), b.size());
  out->assign(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    (*out)[i] = da == 1 ? db : da;
  }
  return true;
}

}  // namespace sluice::ir
