#include "runtime/onnx/importer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "onnx/onnx_pb.h"
#include "runtime/streaming/transform.h"
#include "tests/common/status_matchers.h"

namespace sluice::onnx_import {
namespace {

using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ModelPath(const std::string& name) {
  return absl::StrCat(SLUICE_SOURCE_DIR, "/tests/models/", name);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string TempPath(const std::string& name) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(::testing::TempDir(), "/importer_test_", info->name(), "_", name);
}

// Sets a float tensor type on `info`; each dim is a number (dim_value) or a name (dim_param).
void SetTensorType(::onnx::ValueInfoProto* info, const std::string& name,
                   const std::vector<std::string>& dims) {
  info->set_name(name);
  auto* tensor_type = info->mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(::onnx::TensorProto::FLOAT);
  tensor_type->clear_shape();
  auto* shape = tensor_type->mutable_shape();
  for (const std::string& dim : dims) {
    int64_t value = 0;
    if (absl::SimpleAtoi(dim, &value)) {
      shape->add_dim()->set_dim_value(value);
    } else {
      shape->add_dim()->set_dim_param(dim);
    }
  }
}

::onnx::TensorProto* AddFloatInitializer(::onnx::GraphProto* graph, const std::string& name,
                                         const std::vector<int64_t>& dims,
                                         const std::vector<float>& values, bool raw) {
  ::onnx::TensorProto* t = graph->add_initializer();
  t->set_name(name);
  t->set_data_type(::onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  if (raw) {
    t->set_raw_data(
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  } else {
    for (float v : values) t->add_float_data(v);
  }
  return t;
}

::onnx::NodeProto* AddNode(::onnx::GraphProto* graph, const std::string& name,
                           const std::string& op_type, const std::vector<std::string>& inputs,
                           const std::vector<std::string>& outputs) {
  ::onnx::NodeProto* node = graph->add_node();
  node->set_name(name);
  node->set_op_type(op_type);
  for (const std::string& in : inputs) node->add_input(in);
  for (const std::string& out : outputs) node->add_output(out);
  return node;
}

// A model x[1, 4, T] -> Relu -> y[1, 4, T] (opset 13); tests add to or edit it.
::onnx::ModelProto ReluModel() {
  ::onnx::ModelProto model;
  model.set_ir_version(7);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  ::onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("relu");
  SetTensorType(graph->add_input(), "x", {"1", "4", "T"});
  SetTensorType(graph->add_output(), "y", {"1", "4", "T"});
  AddNode(graph, "/relu/Relu", "Relu", {"x"}, {"y"});
  return model;
}

std::string Serialize(const ::onnx::ModelProto& model) {
  std::string bytes;
  EXPECT_TRUE(model.SerializeToString(&bytes));
  return bytes;
}

absl::StatusOr<streaming::Program> Build(const ::onnx::ModelProto& model) {
  auto graph = ImportModel(Serialize(model), "test model");
  if (!graph.ok()) return graph.status();
  return streaming::BuildProgram(*graph, {});
}

TEST(ImporterTest, MissingFileIsNotFoundNamingThePath) {
  const std::string path = TempPath("no_such_model.onnx");
  EXPECT_THAT(ImportModelFile(path), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_THAT(streaming::LoadProgram(path, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

TEST(ImporterTest, EmptyBytesAreInvalid) {
  EXPECT_THAT(ImportModel("", "empty.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty.onnx")));
  const std::string path = TempPath("empty.onnx");
  { std::ofstream out(path, std::ios::binary); }
  EXPECT_THAT(ImportModelFile(path), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
}

TEST(ImporterTest, GarbageBytesAreInvalid) {
  EXPECT_THAT(ImportModel("this is not an ONNX model\xff\xff\xff\xff", "text.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("text.onnx")));
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 20; ++trial) {
    std::string bytes(64 + trial * 37, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    EXPECT_THAT(ImportModel(bytes, "random.onnx"), StatusIs(absl::StatusCode::kInvalidArgument))
        << "trial " << trial;
  }
}

TEST(ImporterTest, TruncatedModelIsInvalid) {
  for (const std::string name : {"cnn_tiny/model.onnx", "lstm2/model.onnx", "ops_zoo/model.onnx"}) {
    SCOPED_TRACE(name);
    const std::string bytes = ReadBytes(ModelPath(name));
    ASSERT_GT(bytes.size(), 100u);
    ASSERT_THAT(ImportModel(bytes, name), IsOk());                     // The whole file is fine...
    EXPECT_THAT(ImportModel(bytes.substr(0, bytes.size() / 2), name),  // ...half of it is not.
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(name)));
  }
}

TEST(ImporterTest, ImportsReferenceModel) {
  ASSERT_OK_AND_ASSIGN(ir::Graph graph, ImportModelFile(ModelPath("vollo_valid_cnn/model.onnx")));
  EXPECT_EQ(graph.opset, 13);
  ASSERT_EQ(graph.inputs.size(), 1u);  // Weights are initializers, not inputs.
  EXPECT_EQ(graph.inputs[0].name, "x");
  EXPECT_TRUE(graph.inputs[0].is_float32);
  ASSERT_EQ(graph.inputs[0].dims.size(), 3u);
  EXPECT_EQ(graph.inputs[0].dims[0], ir::kUnknownDim);  // Exported with a symbolic batch "B".
  EXPECT_EQ(graph.inputs[0].dim_params[0], "B");
  EXPECT_EQ(graph.inputs[0].dims[1], 16);
  EXPECT_EQ(graph.inputs[0].dims[2], ir::kUnknownDim);
  EXPECT_EQ(graph.inputs[0].dim_params[2], "T");
  ASSERT_EQ(graph.outputs.size(), 1u);
  EXPECT_FALSE(graph.initializers.empty());
  int convs = 0;
  for (const ir::Node& node : graph.nodes) convs += node.op_type == "Conv";
  EXPECT_EQ(convs, 2);
}

TEST(ImporterTest, ImportsHandBuiltGraph) {
  ::onnx::ModelProto model = ReluModel();
  ::onnx::GraphProto* graph = model.mutable_graph();
  AddFloatInitializer(graph, "raw", {2, 2}, {1.f, 2.f, 3.f, 4.f}, /*raw=*/true);
  AddFloatInitializer(graph, "listed", {3}, {-1.f, 0.5f, 7.f}, /*raw=*/false);
  // An unnamed node gets "<op>#<index>".
  AddNode(graph, "", "Neg", {"y"}, {"z"});
  ASSERT_OK_AND_ASSIGN(ir::Graph imported, ImportModel(Serialize(model), "hand.onnx"));
  ASSERT_EQ(imported.nodes.size(), 2u);
  EXPECT_EQ(imported.nodes[0].name, "/relu/Relu");
  EXPECT_EQ(imported.nodes[0].op_type, "Relu");
  EXPECT_THAT(imported.nodes[0].inputs, ElementsAre("x"));
  EXPECT_EQ(imported.nodes[1].name, "Neg#1");
  ASSERT_EQ(imported.initializers.count("raw"), 1u);
  EXPECT_THAT(imported.initializers.at("raw").shape, ElementsAre(2, 2));
  EXPECT_THAT(imported.initializers.at("raw").f32, ElementsAre(1.f, 2.f, 3.f, 4.f));
  ASSERT_EQ(imported.initializers.count("listed"), 1u);
  EXPECT_THAT(imported.initializers.at("listed").f32, ElementsAre(-1.f, 0.5f, 7.f));
  ASSERT_EQ(imported.inputs.size(), 1u);
  EXPECT_THAT(imported.inputs[0].dims, ElementsAre(1, 4, ir::kUnknownDim));
  EXPECT_THAT(imported.inputs[0].dim_params, ElementsAre("", "", "T"));
}

TEST(ImporterTest, InitializerWithWrongRawSizeIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  ::onnx::TensorProto* t =
      AddFloatInitializer(model.mutable_graph(), "short_weight", {4}, {1.f, 2.f, 3.f, 4.f}, true);
  t->mutable_raw_data()->resize(10);
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("short_weight")));
}

TEST(ImporterTest, ExternalDataIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  ::onnx::TensorProto* t = model.mutable_graph()->add_initializer();
  t->set_name("external_weight");
  t->set_data_type(::onnx::TensorProto::FLOAT);
  t->add_dims(4);
  t->set_data_location(::onnx::TensorProto::EXTERNAL);
  auto* entry = t->add_external_data();
  entry->set_key("location");
  entry->set_value("weights.bin");
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("external_weight"), HasSubstr("external"))));
}

TEST(ImporterTest, UnsupportedElementTypeIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  ::onnx::TensorProto* t = model.mutable_graph()->add_initializer();
  t->set_name("strings");
  t->set_data_type(::onnx::TensorProto::STRING);
  t->add_dims(1);
  t->add_string_data("hello");
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("strings")));
}

TEST(ImporterTest, NodeReadingUndefinedValueIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  AddNode(model.mutable_graph(), "/late/Add", "Add", {"y", "defined_later"}, {"z"});
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("/late/Add"), HasSubstr("defined_later"))));
}

TEST(ImporterTest, NonDefaultDomainIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  model.mutable_graph()->mutable_node(0)->set_domain("com.microsoft");
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("/relu/Relu"), HasSubstr("com.microsoft"))));
}

TEST(ImporterTest, ModelWithoutDefaultOpsetIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  model.mutable_opset_import(0)->set_domain("com.example");
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("opset")));
}

TEST(ImporterTest, UndefinedGraphOutputIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  SetTensorType(model.mutable_graph()->add_output(), "ghost", {"1"});
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ghost")));
}

TEST(ImporterTest, ModelWithoutNodesIsInvalid) {
  ::onnx::ModelProto model = ReluModel();
  model.mutable_graph()->clear_node();
  EXPECT_THAT(ImportModel(Serialize(model), "m.onnx"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ImporterTest, HandBuiltReluModelStreams) {
  ASSERT_OK_AND_ASSIGN(streaming::Program program, Build(ReluModel()));
  EXPECT_EQ(program.input.time_axis, 2);
  EXPECT_EQ(program.input.frame_size, 4);
  ASSERT_EQ(program.outputs.size(), 1u);
  EXPECT_EQ(program.outputs[0].frame_size, 4);
  EXPECT_EQ(program.warmup_frames, 0);
}

TEST(ImporterTest, UnknownOpIsUnimplementedNamingTheNode) {
  ::onnx::ModelProto model = ReluModel();
  ::onnx::GraphProto* graph = model.mutable_graph();
  AddNode(graph, "/mystery/FrobnicateNode", "Frobnicate", {"y"}, {"z"});
  graph->mutable_output(0)->set_name("z");
  EXPECT_THAT(Build(model), StatusIs(absl::StatusCode::kUnimplemented,
                                     AllOf(HasSubstr("/mystery/FrobnicateNode"),
                                           HasSubstr("unsupported op"), HasSubstr("Frobnicate"))));
  // The same through a file and LoadProgram.
  const std::string path = TempPath("unknown_op.onnx");
  {
    std::ofstream out(path, std::ios::binary);
    ASSERT_TRUE(model.SerializeToOstream(&out));
  }
  EXPECT_THAT(streaming::LoadProgram(path, {}),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("/mystery/FrobnicateNode")));
}

TEST(ImporterTest, TwoDimensionalConvIsRefusedNamingTheNode) {
  ::onnx::ModelProto model;
  model.set_ir_version(7);
  model.add_opset_import()->set_version(13);
  ::onnx::GraphProto* graph = model.mutable_graph();
  SetTensorType(graph->add_input(), "x", {"1", "2", "5", "T"});
  SetTensorType(graph->add_output(), "y", {"1", "3", "3", "T"});
  AddFloatInitializer(graph, "w", {3, 2, 3, 3}, std::vector<float>(3 * 2 * 3 * 3, 0.1f), true);
  ::onnx::NodeProto* conv = AddNode(graph, "/conv2d/Conv", "Conv", {"x", "w"}, {"y"});
  auto* kernel = conv->add_attribute();
  kernel->set_name("kernel_shape");
  kernel->set_type(::onnx::AttributeProto::INTS);
  kernel->add_ints(3);
  kernel->add_ints(3);
  EXPECT_THAT(Build(model),
              StatusIs(AnyOf(absl::StatusCode::kUnimplemented, absl::StatusCode::kInvalidArgument),
                       HasSubstr("/conv2d/Conv")));
  EXPECT_THAT(Build(model), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("1-D")));
}

TEST(ImporterTest, ConvWhoseLastAxisIsNotTimeIsRefusedNamingTheNode) {
  // x[1, T, 4]: the Conv would slide over features, not time.
  ::onnx::ModelProto model;
  model.set_ir_version(7);
  model.add_opset_import()->set_version(13);
  ::onnx::GraphProto* graph = model.mutable_graph();
  SetTensorType(graph->add_input(), "x", {"1", "T", "4"});
  SetTensorType(graph->add_output(), "y", {"1", "2", "2"});
  AddFloatInitializer(graph, "w", {2, 1, 3}, std::vector<float>(6, 0.5f), true);
  AddNode(graph, "/feature/Conv", "Conv", {"x", "w"}, {"y"});
  EXPECT_THAT(Build(model), StatusIs(absl::StatusCode::kInvalidArgument,
                                     AllOf(HasSubstr("/feature/Conv"), HasSubstr("time"))));
}

TEST(ImporterTest, ModelWithTwoInputsIsUnimplemented) {
  ::onnx::ModelProto model = ReluModel();
  ::onnx::GraphProto* graph = model.mutable_graph();
  SetTensorType(graph->add_input(), "x2", {"1", "4", "T"});
  AddNode(graph, "/add/Add", "Add", {"y", "x2"}, {"z"});
  graph->mutable_output(0)->set_name("z");
  ASSERT_OK_AND_ASSIGN(ir::Graph imported, ImportModel(Serialize(model), "two.onnx"));
  EXPECT_EQ(imported.inputs.size(), 2u);
  EXPECT_THAT(streaming::BuildProgram(imported, {}),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("2 inputs")));
  streaming::TransformOptions options;
  options.time_axis = 2;
  EXPECT_THAT(streaming::BuildProgram(imported, options),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(ImporterTest, AmbiguousTimeAxisIsInvalid) {
  // x[B, 4, T] -> Relu: either symbolic dim could be time, and nothing tells them apart.
  ::onnx::ModelProto model = ReluModel();
  SetTensorType(model.mutable_graph()->mutable_input(0), "x", {"B", "4", "T"});
  EXPECT_THAT(Build(model), StatusIs(absl::StatusCode::kInvalidArgument,
                                     AllOf(HasSubstr("x"), HasSubstr("time_axis"))));
  ASSERT_OK_AND_ASSIGN(ir::Graph imported, ImportModel(Serialize(model), "ambiguous.onnx"));
  streaming::TransformOptions options;
  options.time_axis = 2;
  ASSERT_OK_AND_ASSIGN(streaming::Program program, streaming::BuildProgram(imported, options));
  EXPECT_EQ(program.input.time_axis, 2);
  EXPECT_EQ(program.input.batch_axis, 0);
}

TEST(ImporterTest, InputWithoutSymbolicDimNeedsATimeAxis) {
  ::onnx::ModelProto model = ReluModel();
  SetTensorType(model.mutable_graph()->mutable_input(0), "x", {"1", "4", "16"});
  EXPECT_THAT(Build(model), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x")));
  ASSERT_OK_AND_ASSIGN(ir::Graph imported, ImportModel(Serialize(model), "static.onnx"));
  streaming::TransformOptions options;
  options.time_axis = 2;
  ASSERT_OK_AND_ASSIGN(streaming::Program program, streaming::BuildProgram(imported, options));
  EXPECT_EQ(program.input.time_axis, 2);
  options.time_axis = 3;  // Out of range for rank 3.
  EXPECT_THAT(streaming::BuildProgram(imported, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

}  // namespace
}  // namespace sluice::onnx_import
