// The documented limits that keep a hostile or broken ONNX model from making the runtime
// allocate without bound or hit undefined behaviour (ir/tensor.h, streaming/program.h,
// streaming/transform.h), each checked on a small model built here, and the helpers behind them.
// The fuzz-found crashers themselves are replayed by fuzz_replay_onnx (regressions/onnx).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "onnx/onnx_pb.h"
#include "runtime/ir/tensor.h"
#include "runtime/onnx/importer.h"
#include "runtime/streaming/program.h"
#include "runtime/streaming/transform.h"
#include "tests/common/status_matchers.h"

namespace sluice {
namespace {

using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

// Builds a one-input ONNX model node by node.
class ModelBuilder {
 public:
  // `dims`: a number is a fixed dim, anything else a named (symbolic) one.
  explicit ModelBuilder(const std::vector<std::string>& input_dims, int opset = 13) {
    model_.set_ir_version(7);
    auto* import = model_.add_opset_import();
    import->set_domain("");
    import->set_version(opset);
    graph_ = model_.mutable_graph();
    graph_->set_name("limits");
    auto* input = graph_->add_input();
    input->set_name("x");
    auto* tensor = input->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    for (const std::string& dim : input_dims) {
      int64_t value = 0;
      if (absl::SimpleAtoi(dim, &value)) {
        tensor->mutable_shape()->add_dim()->set_dim_value(value);
      } else {
        tensor->mutable_shape()->add_dim()->set_dim_param(dim);
      }
    }
  }

  onnx::TensorProto* Initializer(const std::string& name, onnx::TensorProto::DataType type,
                                 const std::vector<int64_t>& dims) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    return t;
  }
  void Ints(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* t =
        Initializer(name, onnx::TensorProto::INT64, {static_cast<int64_t>(values.size())});
    for (int64_t v : values) t->add_int64_data(v);
  }
  void Floats(const std::string& name, const std::vector<int64_t>& dims, float value) {
    onnx::TensorProto* t = Initializer(name, onnx::TensorProto::FLOAT, dims);
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    for (int64_t i = 0; i < count; ++i) t->add_float_data(value);
  }
  onnx::NodeProto* Node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    onnx::NodeProto* node = graph_->add_node();
    node->set_name(absl::StrCat(op, "_", graph_->node_size()));
    node->set_op_type(op);
    for (const std::string& in : inputs) node->add_input(in);
    for (const std::string& out : outputs) node->add_output(out);
    return node;
  }
  static void IntsAttr(onnx::NodeProto* node, const std::string& name,
                       const std::vector<int64_t>& values) {
    auto* attr = node->add_attribute();
    attr->set_name(name);
    attr->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) attr->add_ints(v);
  }
  static void IntAttr(onnx::NodeProto* node, const std::string& name, int64_t value) {
    auto* attr = node->add_attribute();
    attr->set_name(name);
    attr->set_type(onnx::AttributeProto::INT);
    attr->set_i(value);
  }
  void Output(const std::string& name) { graph_->add_output()->set_name(name); }

  absl::StatusOr<ir::Graph> Import() const {
    return onnx_import::ImportModel(model_.SerializeAsString(), "limits model");
  }
  absl::StatusOr<streaming::Program> Build() const {
    auto graph = Import();
    if (!graph.ok()) return graph.status();
    return streaming::BuildProgram(*graph, {});
  }

 private:
  onnx::ModelProto model_;
  onnx::GraphProto* graph_;
};

TEST(TensorHelpersTest, CheckedNumElements) {
  EXPECT_EQ(ir::CheckedNumElements({2, 3, 4}, 100), 24);
  EXPECT_EQ(ir::CheckedNumElements({}, 100), 1);
  EXPECT_EQ(ir::CheckedNumElements({0, int64_t{1} << 62}, 100), 0);
  EXPECT_EQ(ir::CheckedNumElements({2, 3, 4}, 23), std::nullopt);
  EXPECT_EQ(ir::CheckedNumElements({-1, 4}, 100), std::nullopt);
  EXPECT_EQ(ir::CheckedNumElements({int64_t{1} << 40, int64_t{1} << 40},
                                   std::numeric_limits<int64_t>::max()),
            std::nullopt);
  EXPECT_EQ(ir::NumElements({int64_t{1} << 40, int64_t{1} << 40}),
            std::numeric_limits<int64_t>::max());
}

TEST(TensorHelpersTest, SaturatingToInt64) {
  EXPECT_EQ(ir::SaturatingToInt64(std::nan("")), 0);
  EXPECT_EQ(ir::SaturatingToInt64(1e300), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(ir::SaturatingToInt64(-INFINITY), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(ir::SaturatingToInt64(9223372036854775808.0), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(ir::SaturatingToInt64(-3.7), -3);
  EXPECT_EQ(ir::Tensor::Float({2}, {1e30f, -2.5f}).AsInts(),
            (std::vector<int64_t>{std::numeric_limits<int64_t>::max(), -2}));
}

TEST(ImportLimitsTest, NegativeDimIsInvalid) {
  ModelBuilder m({"1", "2", "T"});
  m.Initializer("w", onnx::TensorProto::FLOAT, {-1, 4});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Import(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative dim")));
}

TEST(ImportLimitsTest, TensorOverTheLimitIsResourceExhausted) {
  ModelBuilder m({"1", "2", "T"});
  m.Initializer("w", onnx::TensorProto::FLOAT, {int64_t{1} << 20, int64_t{1} << 20});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Import(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit")));
}

TEST(ImportLimitsTest, ClaimedButMissingDataIsInvalid) {
  // 2^27 int32 values claimed, none present: refused before sizing anything by the claim.
  ModelBuilder m({"1", "2", "T"});
  m.Initializer("w", onnx::TensorProto::INT32, {int64_t{1} << 27});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Import(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holds 0")));
}

TEST(TransformLimitsTest, HugeFoldedConstantIsResourceExhausted) {
  ModelBuilder m({"1", "2", "T"});
  m.Ints("shape", {1024, 1024, 1024});
  m.Node("ConstantOfShape", {"shape"}, {"big"});
  m.Node("Add", {"x", "big"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit")));
}

TEST(TransformLimitsTest, FoldingHasABudget) {
  // A model without weights may fold 2^22 elements in all: 2^21 + 2^22 is past it.
  ModelBuilder m({"1", "2", "T"});
  m.Ints("shape", {int64_t{1} << 21});
  m.Node("ConstantOfShape", {"shape"}, {"a"});
  ModelBuilder::IntAttr(m.Node("Concat", {"a", "a"}, {"b"}), "axis", 0);
  ModelBuilder::IntAttr(m.Node("ReduceSum", {"b"}, {"s"}), "keepdims", 0);
  m.Node("Add", {"x", "s"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit")));
}

TEST(TransformLimitsTest, FrameOverTheLimitIsResourceExhausted) {
  ModelBuilder m({"1", absl::StrCat(int64_t{1} << 30), "T"});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("floats")));
}

TEST(TransformLimitsTest, AllFramesTogetherAreBounded) {
  // Each value's frame is within kMaxFrameElements; ten of them are past the program's total.
  ModelBuilder m({"1", absl::StrCat(streaming::kMaxFrameElements / 2), "T"});
  std::string in = "x";
  for (int i = 0; i < 9; ++i) {
    const std::string out = absl::StrCat("r", i);
    m.Node(i % 2 == 0 ? "Relu" : "Sigmoid", {in}, {out});
    in = out;
  }
  m.Output(in);
  EXPECT_THAT(m.Build(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("frames of all values")));
}

TEST(TransformLimitsTest, ConvWindowIsBounded) {
  ModelBuilder m({"1", "2", "T"});
  m.Floats("w", {3, 2, 2}, 0.5f);
  ModelBuilder::IntsAttr(m.Node("Conv", {"x", "w"}, {"y"}), "dilations", {int64_t{1} << 40});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("window")));
}

TEST(TransformLimitsTest, ConvKernelMustBePositive) {
  ModelBuilder m({"1", "2", "T"});
  m.Initializer("w", onnx::TensorProto::FLOAT, {3, 2, 0});
  m.Node("Conv", {"x", "w"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("positive")));
}

TEST(TransformLimitsTest, TransposePermMustBeAPermutation) {
  ModelBuilder m({"1", "2", "T"});
  ModelBuilder::IntsAttr(m.Node("Transpose", {"x"}, {"y"}), "perm", {0, 0, 2});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("permutation")));
}

TEST(TransformLimitsTest, UnsqueezeAxesMustNotRepeat) {
  ModelBuilder m({"1", "2", "T"}, /*opset=*/11);
  ModelBuilder::IntsAttr(m.Node("Unsqueeze", {"x"}, {"y"}), "axes", {0, 0});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeat")));
}

TEST(TransformLimitsTest, SliceStartAlongTimeIsBounded) {
  ModelBuilder m({"1", "2", "T"});
  m.Ints("starts", {int64_t{1} << 40});
  m.Ints("ends", {std::numeric_limits<int64_t>::max()});
  m.Ints("axes", {2});
  m.Node("Slice", {"x", "starts", "ends", "axes"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit")));
}

TEST(TransformLimitsTest, NodeWithoutOutputsIsInvalid) {
  ModelBuilder m({"1", "2", "T"});
  m.Node("Relu", {"x"}, {});
  m.Node("Sigmoid", {"x"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no outputs")));
}

TEST(TransformLimitsTest, RnnWeightsMustBeFloat) {
  ModelBuilder m({"T", "1", "2"});
  onnx::TensorProto* w = m.Initializer("W", onnx::TensorProto::INT64, {1, 12, 2});
  for (int i = 0; i < 24; ++i) w->add_int64_data(1);
  onnx::TensorProto* r = m.Initializer("R", onnx::TensorProto::INT64, {1, 12, 3});
  for (int i = 0; i < 36; ++i) r->add_int64_data(1);
  ModelBuilder::IntAttr(m.Node("LSTM", {"x", "W", "R"}, {"y"}), "hidden_size", 3);
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("W/R")));
}

TEST(TransformLimitsTest, ConstantValueMustBeATensor) {
  // Found by fuzz_onnx: an int attribute named "value" passed for a tensor with one element
  // and no data, read past the end by the Clip that used it.
  ModelBuilder m({"1", "2", "T"});
  ModelBuilder::IntAttr(m.Node("Constant", {}, {"lo"}), "value", 0);
  m.Node("Clip", {"x", "lo"}, {"y"});
  m.Output("y");
  EXPECT_THAT(m.Build(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a tensor")));
}

TEST(TransformLimitsTest, SmallModelsStillBuild) {
  ModelBuilder m({"1", "2", "T"});
  m.Floats("w", {3, 2, 2}, 0.5f);
  m.Node("Conv", {"x", "w"}, {"c"});
  m.Node("Relu", {"c"}, {"y"});
  m.Output("y");
  auto program = m.Build();
  ASSERT_THAT(program, IsOk());
  EXPECT_EQ(program->warmup_frames, 1);
}

}  // namespace
}  // namespace sluice
