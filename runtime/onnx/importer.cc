#include "runtime/onnx/importer.h"

#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "onnx/onnx_pb.h"
#include "runtime/common/status_macros.h"

namespace sluice::onnx_import {
namespace {

using ::onnx::TensorProto;

std::string ElemTypeName(int type) {
  if (TensorProto::DataType_IsValid(type)) {
    return TensorProto::DataType_Name(static_cast<TensorProto::DataType>(type));
  }
  return absl::StrCat("type#", type);
}

template <typename T>
void CopyRaw(const std::string& raw, int64_t count, std::vector<T>* out) {
  out->resize(count);
  std::memcpy(out->data(), raw.data(), count * sizeof(T));
}

absl::StatusOr<ir::Tensor> ConvertTensor(const TensorProto& proto) {
  ir::Tensor t;
  t.shape.assign(proto.dims().begin(), proto.dims().end());
  const std::string name = proto.name().empty() ? "<unnamed>" : proto.name();
  // Validate the shape before sizing anything by it: dims are attacker-controlled.
  for (int64_t d : t.shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", name, " has a negative dim in shape ", ir::ShapeToString(t.shape)));
    }
  }
  const std::optional<int64_t> checked = ir::CheckedNumElements(t.shape, ir::kMaxTensorElements);
  if (!checked) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tensor ", name, " of shape ", ir::ShapeToString(t.shape), " has more than ",
                     ir::kMaxTensorElements, " elements, the limit"));
  }
  const int64_t count = *checked;
  if (proto.data_location() == TensorProto::EXTERNAL) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, " uses external data, which is not supported"));
  }
  const bool raw = proto.has_raw_data();
  auto check_raw = [&](size_t elem_size) -> absl::Status {
    if (proto.raw_data().size() != count * elem_size) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " holds ",
                                                     proto.raw_data().size(),
                                                     " bytes, shape needs ", count * elem_size));
    }
    return absl::OkStatus();
  };
  auto check_count = [&](int64_t have) -> absl::Status {
    if (have != count) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " holds ", have, " values, shape needs ", count));
    }
    return absl::OkStatus();
  };
  switch (proto.data_type()) {
    case TensorProto::FLOAT:
      t.dtype = ir::DataType::kFloat32;
      if (raw) {
        RETURN_IF_ERROR(check_raw(4));
        CopyRaw(proto.raw_data(), count, &t.f32);
      } else {
        RETURN_IF_ERROR(check_count(proto.float_data_size()));
        t.f32.assign(proto.float_data().begin(), proto.float_data().end());
      }
      return t;
    case TensorProto::DOUBLE: {
      t.dtype = ir::DataType::kFloat32;
      std::vector<double> values;
      if (raw) {
        RETURN_IF_ERROR(check_raw(8));
        CopyRaw(proto.raw_data(), count, &values);
      } else {
        RETURN_IF_ERROR(check_count(proto.double_data_size()));
        values.assign(proto.double_data().begin(), proto.double_data().end());
      }
      t.f32.assign(values.begin(), values.end());
      return t;
    }
    case TensorProto::INT64:
      t.dtype = ir::DataType::kInt64;
      if (raw) {
        RETURN_IF_ERROR(check_raw(8));
        CopyRaw(proto.raw_data(), count, &t.i64);
      } else {
        RETURN_IF_ERROR(check_count(proto.int64_data_size()));
        t.i64.assign(proto.int64_data().begin(), proto.int64_data().end());
      }
      return t;
    case TensorProto::INT32:
    case TensorProto::INT8:
    case TensorProto::UINT8:
    case TensorProto::INT16:
    case TensorProto::BOOL: {
      t.dtype = ir::DataType::kInt64;
      // Sized only once the data is known to be there: the dims alone may claim gigabytes.
      if (raw) {
        const int type = proto.data_type();
        const size_t size = type == TensorProto::INT32 ? 4 : type == TensorProto::INT16 ? 2 : 1;
        RETURN_IF_ERROR(check_raw(size));
        t.i64.resize(count);
        const char* p = proto.raw_data().data();
        for (int64_t i = 0; i < count; ++i) {
          if (size == 4) {
            int32_t v;
            std::memcpy(&v, p + 4 * i, 4);
            t.i64[i] = v;
          } else if (size == 2) {
            int16_t v;
            std::memcpy(&v, p + 2 * i, 2);
            t.i64[i] = v;
          } else {
            t.i64[i] =
                type == TensorProto::INT8 ? static_cast<int8_t>(p[i]) : static_cast<uint8_t>(p[i]);
          }
        }
      } else {
        RETURN_IF_ERROR(check_count(proto.int32_data_size()));
        t.i64.resize(count);
        for (int64_t i = 0; i < count; ++i) t.i64[i] = proto.int32_data(i);
      }
      return t;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " has element type ", ElemTypeName(proto.data_type()),
                       ", which is not supported (float, double and integer types are)"));
  }
}

absl::StatusOr<ir::Attribute> ConvertAttribute(const ::onnx::AttributeProto& proto) {
  using ::onnx::AttributeProto;
  ir::Attribute attr;
  switch (proto.type()) {
    case AttributeProto::INT:
      attr.kind = ir::Attribute::Kind::kInt;
      attr.i = proto.i();
      break;
    case AttributeProto::FLOAT:
      attr.kind = ir::Attribute::Kind::kFloat;
      attr.f = proto.f();
      break;
    case AttributeProto::STRING:
      attr.kind = ir::Attribute::Kind::kString;
      attr.s = proto.s();
      break;
    case AttributeProto::INTS:
      attr.kind = ir::Attribute::Kind::kInts;
      attr.ints.assign(proto.ints().begin(), proto.ints().end());
      break;
    case AttributeProto::FLOATS:
      attr.kind = ir::Attribute::Kind::kFloats;
      attr.floats.assign(proto.floats().begin(), proto.floats().end());
      break;
    case AttributeProto::STRINGS:
      attr.kind = ir::Attribute::Kind::kStrings;
      attr.strings.assign(proto.strings().begin(), proto.strings().end());
      break;
    case AttributeProto::TENSOR: {
      attr.kind = ir::Attribute::Kind::kTensor;
      ASSIGN_OR_RETURN(attr.t, ConvertTensor(proto.t()));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "attribute ", proto.name(), " has an unsupported kind (", proto.type(), ")"));
  }
  return attr;
}

ir::ValueInfo ConvertValueInfo(const ::onnx::ValueInfoProto& proto) {
  ir::ValueInfo info;
  info.name = proto.name();
  if (proto.type().has_tensor_type()) {
    const auto& tensor_type = proto.type().tensor_type();
    const int elem = tensor_type.elem_type();
    info.is_float32 = elem == TensorProto::FLOAT;
    info.dtype = info.is_float32 ? ir::DataType::kFloat32 : ir::DataType::kInt64;
    info.elem_type_name = ElemTypeName(elem);
    for (const auto& dim : tensor_type.shape().dim()) {
      const bool known = dim.has_dim_value() && dim.dim_value() > 0;
      info.dims.push_back(known ? dim.dim_value() : ir::kUnknownDim);
      info.dim_params.push_back(dim.has_dim_param() ? dim.dim_param() : "");
    }
  } else {
    info.is_float32 = false;
    info.elem_type_name = "non-tensor";
  }
  return info;
}

}  // namespace

absl::StatusOr<ir::Graph> ImportModel(const std::string& bytes, const std::string& what) {
  ::onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a valid ONNX model (protobuf parse failed)"));
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ONNX model has an empty graph"));
  }
  ir::Graph graph;
  for (const auto& opset : model.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") graph.opset = opset.version();
  }
  if (graph.opset == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": model imports no default-domain opset"));
  }
  const auto& g = model.graph();
  for (const auto& init : g.initializer()) {
    auto tensor = ConvertTensor(init);
    if (!tensor.ok()) {
      return absl::Status(tensor.status().code(),
                          absl::StrCat(what, ": ", tensor.status().message()));
    }
    graph.initializers[init.name()] = *std::move(tensor);
  }
  std::set<std::string> defined;
  for (const auto& [name, tensor] : graph.initializers) defined.insert(name);
  for (const auto& input : g.input()) {
    defined.insert(input.name());
    if (graph.initializers.count(input.name()) == 0) {
      graph.inputs.push_back(ConvertValueInfo(input));
    }
  }
  for (const auto& output : g.output()) graph.outputs.push_back(ConvertValueInfo(output));
  int index = 0;
  for (const auto& proto : g.node()) {
    ir::Node node;
    node.name = proto.name().empty() ? absl::StrCat(proto.op_type(), "#", index) : proto.name();
    ++index;
    node.op_type = proto.op_type();
    if (!proto.domain().empty() && proto.domain() != "ai.onnx") {
      return absl::InvalidArgumentError(absl::StrCat(what, ": node ", node.name, ": op domain '",
                                                     proto.domain(), "' is not supported"));
    }
    for (const auto& input : proto.input()) {
      if (!input.empty() && defined.count(input) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": node ", node.name, " reads '",
                                                       input, "' before anything defines it"));
      }
      node.inputs.push_back(input);
    }
    for (const auto& output : proto.output()) {
      node.outputs.push_back(output);
      defined.insert(output);
    }
    for (const auto& attr : proto.attribute()) {
      auto converted = ConvertAttribute(attr);
      if (!converted.ok()) {
        return absl::Status(
            converted.status().code(),
            absl::StrCat(what, ": node ", node.name, ": ", converted.status().message()));
      }
      node.attributes[attr.name()] = *std::move(converted);
    }
    graph.nodes.push_back(std::move(node));
  }
  if (graph.inputs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": model has no non-constant input"));
  }
  for (const auto& output : graph.outputs) {
    if (defined.count(output.name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": graph output '", output.name, "' is never defined"));
    }
  }
  return graph;
}

absl::StatusOr<ir::Graph> ImportModelFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model file ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ImportModel(buffer.str(), path);
}

}  // namespace sluice::onnx_import
