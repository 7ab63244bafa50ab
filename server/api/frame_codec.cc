#include "server/api/frame_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/frame_layout.h"

namespace sluice::server {
namespace {

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

bool SameDims(const google::protobuf::RepeatedField<int64_t>& shape, int offset,
              const std::vector<int64_t>& dims) {
  if (shape.size() - offset != static_cast<int>(dims.size())) return false;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (shape[offset + static_cast<int>(d)] != dims[d]) return false;
  }
  return true;
}

float ElementAt(const std::string& data, v1::DataType dtype, int64_t index) {
  if (dtype == v1::INT16) {
    int16_t v;
    std::memcpy(&v, data.data() + index * 2, 2);
    return static_cast<float>(v) * (1.f / 32768.f);
  }
  float v;
  std::memcpy(&v, data.data() + index * 4, 4);
  return v;
}

}  // namespace

v1::TensorSpec ToTensorSpec(const streaming::StreamSpec& spec) {
  v1::TensorSpec out;
  out.set_name(spec.name);
  out.set_dtype(v1::FLOAT32);
  for (int64_t d : spec.offline_shape) out.add_offline_shape(d);
  out.set_time_axis(spec.time_axis);
  for (int64_t d : spec.frame_shape) out.add_frame_shape(d);
  return out;
}

absl::Status DecodeFrames(const v1::Frames& frames, const streaming::StreamSpec& spec,
                          std::vector<std::vector<float>>* out) {
  const v1::Tensor& tensor = frames.tensor();
  const v1::DataType dtype = tensor.dtype();
  if (dtype != v1::FLOAT32 && dtype != v1::INT16) {
    return absl::InvalidArgumentError(absl::StrCat("frames have dtype ", v1::DataType_Name(dtype),
                                                   "; the model takes FLOAT32 (or INT16 PCM)"));
  }
  const auto& shape = tensor.shape();
  int64_t count = 0;
  int time_axis = 0;
  if (frames.layout() == v1::Frames::STACKED) {
    if (SameDims(shape, 0, spec.frame_shape)) {
      count = 1;
    } else if (shape.size() >= 1 && SameDims(shape, 1, spec.frame_shape)) {
      count = shape[0];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("frames have shape ", ShapeString(shape),
                       "; the model takes frames of shape ", ShapeString(spec.frame_shape),
                       " stacked as [k,", absl::StrJoin(spec.frame_shape, ","), "]"));
    }
  } else {
    time_axis = spec.time_axis;
    bool matches = shape.size() == static_cast<int>(spec.offline_shape.size());
    for (int d = 0; matches && d < shape.size(); ++d) {
      if (d != spec.time_axis && shape[d] != spec.offline_shape[d]) matches = false;
    }
    if (!matches) {
      return absl::InvalidArgumentError(
          absl::StrCat("frames have shape ", ShapeString(shape), "; the model's offline layout is ",
                       ShapeString(spec.offline_shape), " (-1 = time, batch 1)"));
    }
    count = shape[spec.time_axis];
  }
  if (count <= 0) return absl::InvalidArgumentError("a Frames request holds no frames");
  const int64_t elem_bytes = dtype == v1::INT16 ? 2 : 4;
  // Compare before multiplying: a forged frame count must not overflow.
  if (count > static_cast<int64_t>(tensor.data().size()) / (spec.frame_size * elem_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frames hold ", tensor.data().size(), " bytes, too few for ", count,
                     " frames of ", spec.frame_size, " ", v1::DataType_Name(dtype), " values"));
  }
  const int64_t elements = count * spec.frame_size;
  if (static_cast<int64_t>(tensor.data().size()) != elements * elem_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("frames hold ", tensor.data().size(), " bytes; shape ", ShapeString(shape),
                     " of ", v1::DataType_Name(dtype), " needs ", elements * elem_bytes));
  }
  if (frames.tags_size() != 0 && frames.tags_size() != count) {
    return absl::InvalidArgumentError(
        absl::StrCat(frames.tags_size(), " tags for ", count, " frames (send none or one each)"));
  }
  // Frame t's element i sits at t * time_stride + offsets[i]. With only size-1 axes before the
  // time axis (always so when STACKED) each frame is one contiguous run, offsets[i] = i: a copy,
  // without building the offset table on every request (that was most of the decode's cost).
  bool contiguous = true;
  for (int d = 0; d < time_axis; ++d) contiguous = contiguous && shape[d] == 1;
  std::vector<std::vector<float>> decoded(count);
  if (contiguous) {
    for (int64_t t = 0; t < count; ++t) {
      std::vector<float>& frame = decoded[t];
      frame.resize(spec.frame_size);
      if (dtype == v1::FLOAT32) {
        std::memcpy(frame.data(), tensor.data().data() + t * spec.frame_size * sizeof(float),
                    spec.frame_size * sizeof(float));
      } else {
        for (int64_t i = 0; i < spec.frame_size; ++i) {
          frame[i] = ElementAt(tensor.data(), dtype, t * spec.frame_size + i);
        }
      }
    }
  } else {
    const std::vector<int64_t> dims(shape.begin(), shape.end());
    int64_t time_stride = 1;
    for (size_t d = time_axis + 1; d < dims.size(); ++d) time_stride *= dims[d];
    const std::vector<int64_t> offsets = FrameOffsets(dims, time_axis, -1, 0, 0);
    for (int64_t t = 0; t < count; ++t) {
      decoded[t].resize(spec.frame_size);
      for (int64_t i = 0; i < spec.frame_size; ++i) {
        decoded[t][i] = ElementAt(tensor.data(), dtype, t * time_stride + offsets[i]);
      }
    }
  }
  *out = std::move(decoded);
  return absl::OkStatus();
}

}  // namespace sluice::server
