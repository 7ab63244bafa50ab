#include "client/lib/frame_layout.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice::client {
namespace {

// The offline layout with time dim k is [outer][k][inner]; frame-major is [k][outer][inner].
struct Split {
  int64_t outer = 1;
  int64_t inner = 1;
};

absl::StatusOr<Split> SplitAtTime(const v1::TensorSpec& spec) {
  const int rank = spec.offline_shape_size();
  const int axis = spec.time_axis();
  if (axis < 0 || axis >= rank) {
    return absl::InvalidArgumentError(absl::StrCat("tensor spec '", spec.name(), "' has time axis ",
                                                   axis, " outside its rank ", rank));
  }
  Split split;
  for (int d = 0; d < rank; ++d) {
    if (d == axis) continue;
    const int64_t dim = spec.offline_shape(d);
    if (dim < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor spec '", spec.name(), "' has a non-positive dim ", dim, " at ", d));
    }
    (d < axis ? split.outer : split.inner) *= dim;
  }
  return split;
}

// Copies [a][b][elem] into [b][a][elem]; elem is in bytes.
void SwapOuterAxes(const char* src, char* dst, int64_t a, int64_t b, int64_t elem) {
  if (a == 1 || b == 1) {
    std::memcpy(dst, src, a * b * elem);
    return;
  }
  for (int64_t i = 0; i < a; ++i) {
    for (int64_t j = 0; j < b; ++j) {
      std::memcpy(dst + (j * a + i) * elem, src + (i * b + j) * elem, elem);
    }
  }
}

}  // namespace

int64_t DataTypeSize(v1::DataType dtype) {
  switch (dtype) {
    case v1::FLOAT32:
      return 4;
    case v1::INT16:
      return 2;
    default:
      return 0;
  }
}

int64_t FrameSize(const v1::TensorSpec& spec) {
  int64_t size = 1;
  for (int64_t dim : spec.frame_shape()) size *= dim;
  return size;
}

int BatchAxis(const v1::TensorSpec& spec) {
  const int rank = spec.offline_shape_size();
  if (rank < 2) return -1;
  const int first = spec.time_axis() == 0 ? 1 : 0;
  return spec.offline_shape(first) == 1 ? first : -1;
}

std::vector<int64_t> ChunkShape(const v1::TensorSpec& spec, int64_t frames) {
  std::vector<int64_t> shape(spec.offline_shape().begin(), spec.offline_shape().end());
  if (spec.time_axis() >= 0 && spec.time_axis() < static_cast<int>(shape.size())) {
    shape[spec.time_axis()] = frames;
  }
  return shape;
}

absl::StatusOr<v1::Tensor> PackFrames(const v1::TensorSpec& spec, v1::DataType dtype,
                                      const void* frames, int64_t count,
                                      v1::Frames::Layout layout) {
  const int64_t elem = DataTypeSize(dtype);
  if (elem == 0) return absl::InvalidArgumentError("frames must be FLOAT32 or INT16");
  if (count < 1) return absl::InvalidArgumentError(absl::StrCat("frame count ", count, " < 1"));
  absl::StatusOr<Split> split = SplitAtTime(spec);
  if (!split.ok()) return split.status();
  if (split->outer * split->inner != FrameSize(spec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor spec '", spec.name(), "': frame_shape [", absl::StrJoin(spec.frame_shape(), ","),
        "] does not match offline_shape [", absl::StrJoin(spec.offline_shape(), ","), "]"));
  }
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  std::string* data = tensor.mutable_data();
  data->resize(count * FrameSize(spec) * elem);
  const char* src = static_cast<const char*>(frames);
  if (layout == v1::Frames::OFFLINE) {
    for (int64_t dim : ChunkShape(spec, count)) tensor.add_shape(dim);
    // Frame-major [count][outer][inner] -> offline [outer][count][inner].
    SwapOuterAxes(src, data->data(), count, split->outer, split->inner * elem);
  } else {
    if (count > 1) tensor.add_shape(count);
    for (int64_t dim : spec.frame_shape()) tensor.add_shape(dim);
    std::memcpy(data->data(), src, data->size());
  }
  return tensor;
}

absl::StatusOr<std::vector<float>> UnpackFrames(const v1::TensorSpec& spec,
                                                const v1::Tensor& tensor, int64_t* count) {
  const int64_t elem = DataTypeSize(tensor.dtype());
  if (elem == 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor for '", spec.name(), "' has dtype ",
                                                   v1::DataType_Name(tensor.dtype())));
  }
  const int64_t frame_size = FrameSize(spec);
  const int rank = spec.frame_shape_size();
  int64_t k = 0;
  auto dims_match = [&](int offset) {
    for (int d = 0; d < rank; ++d) {
      if (tensor.shape(offset + d) != spec.frame_shape(d)) return false;
    }
    return true;
  };
  if (tensor.shape_size() == rank && dims_match(0)) {
    k = 1;
  } else if (tensor.shape_size() == rank + 1 && tensor.shape(0) >= 0 && dims_match(1)) {
    k = tensor.shape(0);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor for '", spec.name(), "' has shape [", absl::StrJoin(tensor.shape(), ","),
        "]; expected [k,", absl::StrJoin(spec.frame_shape(), ","), "]"));
  }
  if (static_cast<int64_t>(tensor.data().size()) != k * frame_size * elem) {
    return absl::InvalidArgumentError(absl::StrCat("tensor for '", spec.name(), "' has ",
                                                   tensor.data().size(), " bytes; its shape needs ",
                                                   k * frame_size * elem));
  }
  std::vector<float> out(k * frame_size);
  if (tensor.dtype() == v1::FLOAT32) {
    std::memcpy(out.data(), tensor.data().data(), tensor.data().size());
  } else {
    std::vector<int16_t> raw(k * frame_size);
    std::memcpy(raw.data(), tensor.data().data(), tensor.data().size());
    for (size_t i = 0; i < raw.size(); ++i) out[i] = static_cast<float>(raw[i]) / 32768.f;
  }
  if (count != nullptr) *count = k;
  return out;
}

}  // namespace sluice::client
