// Kernel generation without a device: every reference model generates for both variants,
// deterministically, with one launch per GEMM-class op plus fused runs of the rest.
#include "runtime/opencl/kernel_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <variant>

#include "absl/strings/match.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"

namespace sluice::opencl {
namespace {

using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ManifestNames;
using ::sluice::model_testing::ReferenceModel;
using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

KernelOptions Options(KernelVariant variant) {
  KernelOptions options;
  options.variant = variant;
  return options;
}

TEST(KernelSource, EveryModelGeneratesForBothVariants) {
  for (const std::string& name : ManifestNames("stream")) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel(name));
    int gemm_ops = 0;
    for (const streaming::Op& op : model.program->ops) {
      gemm_ops += std::holds_alternative<streaming::ConvOp>(op.params) ||
                  std::holds_alternative<streaming::LinearOp>(op.params) ||
                  std::holds_alternative<streaming::RnnOp>(op.params);
    }
    for (KernelVariant variant : {KernelVariant::kNdRange, KernelVariant::kSingleWorkItem}) {
      ASSERT_OK_AND_ASSIGN(KernelProgram a,
                           GenerateKernelProgram(*model.program, Options(variant)));
      ASSERT_OK_AND_ASSIGN(KernelProgram b,
                           GenerateKernelProgram(*model.program, Options(variant)));
      EXPECT_EQ(a.source, b.source) << "generation is deterministic";
      EXPECT_EQ(a.fingerprint, b.fingerprint);
      EXPECT_TRUE(absl::StrContains(a.source, "void " + a.fingerprint + "(void)"));
      EXPECT_GE(a.stages.size(), static_cast<size_t>(gemm_ops + 1));
      EXPECT_LE(a.stages.size(), static_cast<size_t>(2 * gemm_ops + 1));
      EXPECT_EQ(a.slot_stride % 64, 0);
      EXPECT_GE(a.slot_stride, model.program->state_bytes);
      for (const Stage& stage : a.stages) {
        ASSERT_FALSE(stage.alternatives.empty()) << stage.what;
        EXPECT_TRUE(stage.For(1).Fits(1)) << stage.what;
        for (const Launch& launch : stage.alternatives) {
          EXPECT_TRUE(absl::StrContains(a.source, "#define KNAME " + launch.kernel + "\n"))
              << stage.what << ": no kernel " << launch.kernel;
          EXPECT_EQ(launch.task, variant == KernelVariant::kSingleWorkItem) << stage.what;
        }
      }
      EXPECT_THAT(a.stages.back().what, HasSubstr("commit"));
    }
    ASSERT_OK_AND_ASSIGN(KernelProgram nd,
                         GenerateKernelProgram(*model.program, Options(KernelVariant::kNdRange)));
    ASSERT_OK_AND_ASSIGN(
        KernelProgram swi,
        GenerateKernelProgram(*model.program, Options(KernelVariant::kSingleWorkItem)));
    EXPECT_NE(nd.fingerprint, swi.fingerprint);
    EXPECT_TRUE(absl::StrContains(swi.source, "max_global_work_dim(0)"));
    EXPECT_FALSE(absl::StrContains(nd.source, "SL_SWI"));
  }
}

TEST(KernelSource, CnnTinyIsThreeConvsAndOneCommit) {
  ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel("cnn_tiny"));
  ASSERT_OK_AND_ASSIGN(KernelProgram nd,
                       GenerateKernelProgram(*model.program, Options(KernelVariant::kNdRange)));
  ASSERT_EQ(nd.stages.size(), 4u);
  // Large convs also get a kernel computing 4 sessions per work-item; small buckets fall back.
  EXPECT_EQ(nd.stages[0].alternatives.size(), 2u);
  EXPECT_EQ(nd.stages[0].For(64).rows_per_item, 4);
  EXPECT_EQ(nd.stages[0].For(2).rows_per_item, 1);
  size_t global[2];
  size_t local[2];
  EXPECT_EQ(nd.stages[0].For(64).Geometry(64, global, local), 2u);
  EXPECT_EQ(global[0], 128u / 16);  // float16 output blocks.
  EXPECT_EQ(global[1], 16u);
  EXPECT_EQ(nd.stages[3].For(64).Geometry(64, global, local), 1u);
  EXPECT_EQ(global[0], 64u);
}

TEST(KernelSource, MalformedProgramsAreRefusedBeforeTheDevice) {
  ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel("ops_zoo"));
  const auto refuse = [&](const std::function<void(streaming::Program&)>& damage) {
    streaming::Program program = *model.program;
    damage(program);
    return GenerateKernelProgram(program, Options(KernelVariant::kNdRange)).status();
  };
  EXPECT_THAT(refuse([](streaming::Program&) {}), IsOk());
  EXPECT_THAT(refuse([](streaming::Program& p) {
                for (streaming::Op& op : p.ops) {
                  if (auto* conv = std::get_if<streaming::ConvOp>(&op.params))
                    conv->weight.pop_back();
                }
              }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Conv")));
  EXPECT_THAT(refuse([](streaming::Program& p) {
                for (streaming::Op& op : p.ops) {
                  if (auto* binary = std::get_if<streaming::BinaryOp>(&op.params)) {
                    if (op.inputs.size() == 2)
                      binary->map_a.assign(p.values[op.output].size, 1 << 20);
                  }
                }
              }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maps")));
  EXPECT_THAT(
      refuse([](streaming::Program& p) { p.ops[0].inputs = {static_cast<int>(p.values.size())}; }),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refuse([](streaming::Program& p) {
                for (streaming::Op& op : p.ops) {
                  if (auto* slice = std::get_if<streaming::SliceOp>(&op.params))
                    slice->start += 1000;
                }
              }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Slice")));
}

TEST(KernelSource, RecurrentStateMirrorLayout) {
  ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel("lstm2"));
  KernelOptions options = Options(KernelVariant::kNdRange);
  ASSERT_OK_AND_ASSIGN(KernelProgram plain, GenerateKernelProgram(*model.program, options));
  EXPECT_EQ(plain.mirror_bytes, 0);
  options.mirror_recurrent_state = true;
  ASSERT_OK_AND_ASSIGN(KernelProgram mirrored, GenerateKernelProgram(*model.program, options));
  ASSERT_EQ(mirrored.mirror_regions.size(), 2u);  // Two LSTM layers: h and c of 24 each.
  EXPECT_EQ(mirrored.mirror_bytes, 8 + 2 * (2 * 24 * 4));
  EXPECT_EQ(mirrored.stages.size(), plain.stages.size()) << "no extra launch";
}

TEST(KernelSource, VariantNames) {
  EXPECT_THAT(ParseKernelVariant("auto"), IsOk());
  ASSERT_OK_AND_ASSIGN(KernelVariant v, ParseKernelVariant("single_work_item"));
  EXPECT_EQ(v, KernelVariant::kSingleWorkItem);
  ASSERT_OK_AND_ASSIGN(v, ParseKernelVariant("NDRange"));
  EXPECT_EQ(v, KernelVariant::kNdRange);
  EXPECT_THAT(ParseKernelVariant("systolic"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("systolic")));
  ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel("lstm2"));
  EXPECT_THAT(GenerateKernelProgram(*model.program, Options(KernelVariant::kAuto)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sluice::opencl
