// A tiny streaming model built in code, shared by the session fuzz target and the TSan
// harness: x [1, 2, T] -> Conv(3 out, kernel 2, no padding: warm-up 1) -> Relu -> y [1, 3, T-1].
// Small frames (2 floats in, 3 out) keep the interesting part, the state and warm-up.
#ifndef SLUICE_TESTS_FUZZ_TINY_MODEL_H_
#define SLUICE_TESTS_FUZZ_TINY_MODEL_H_

#include <cstdint>
#include <string>

#include "onnx/onnx_pb.h"

namespace sluice::fuzz {

inline std::string TinyConvModel() {
  onnx::ModelProto model;
  model.set_ir_version(7);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("tiny");
  auto add_value = [](onnx::ValueInfoProto* info, const char* name, int64_t channels,
                      const char* time) {
    info->set_name(name);
    auto* tensor = info->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    tensor->mutable_shape()->add_dim()->set_dim_value(1);
    tensor->mutable_shape()->add_dim()->set_dim_value(channels);
    tensor->mutable_shape()->add_dim()->set_dim_param(time);
  };
  add_value(graph->add_input(), "x", 2, "T");
  add_value(graph->add_output(), "y", 3, "T_out");
  onnx::TensorProto* w = graph->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : {3, 2, 2}) w->add_dims(d);
  for (int i = 0; i < 12; ++i) w->add_float_data(0.25f * static_cast<float>(i % 5) - 0.5f);
  onnx::TensorProto* b = graph->add_initializer();
  b->set_name("b");
  b->set_data_type(onnx::TensorProto::FLOAT);
  b->add_dims(3);
  for (float v : {0.1f, -0.2f, 0.3f}) b->add_float_data(v);
  onnx::NodeProto* conv = graph->add_node();
  conv->set_name("conv");
  conv->set_op_type("Conv");
  conv->add_input("x");
  conv->add_input("w");
  conv->add_input("b");
  conv->add_output("c");
  onnx::NodeProto* relu = graph->add_node();
  relu->set_name("relu");
  relu->set_op_type("Relu");
  relu->add_input("c");
  relu->add_output("y");
  return model.SerializeAsString();
}

}  // namespace sluice::fuzz

#endif  // SLUICE_TESTS_FUZZ_TINY_MODEL_H_
