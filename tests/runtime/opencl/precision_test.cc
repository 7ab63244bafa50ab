// Precision::kBf16 on every reference model: the CPU backend (packed bf16 weights) and the
// OpenCL backend on PoCL (bf16-valued weights in fp32 buffers) both stay within the reduced-
// precision tolerance of the offline fp32 output, actually differ from fp32, and agree with each
// other to fp32 tolerance, so a session can move between them.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/common/bf16.h"
#include "runtime/common/status_macros.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/opencl/opencl_backend.h"
#include "runtime/streaming/sequence_runner.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"
#include "tests/runtime/opencl/opencl_testing.h"

namespace sluice {
namespace {

using ::sluice::model_testing::AllClose;
using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ManifestNames;
using ::sluice::model_testing::ReferenceModel;

// The reduced-precision tolerance against the fp32 offline output.
constexpr double kBf16Atol = 5e-3;
constexpr double kBf16Rtol = 1e-3;

class Bf16ModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(model_, LoadReferenceModel(GetParam())); }

  static BackendOptions Options(Precision precision) {
    BackendOptions options;
    options.max_batch = 64;
    options.precision = precision;
    return options;
  }

  // Every row of the input, twice, interleaved in shared batches.
  absl::StatusOr<NpyArray> Run(Backend& backend) const {
    streaming::SequenceRunOptions options;
    options.copies = 2;
    options.batch = 64;
    ASSIGN_OR_RETURN(std::vector<NpyArray> outputs,
                     streaming::RunSequences(backend, model_.input, options));
    return outputs.at(0);
  }

  ReferenceModel model_;
};

TEST_P(Bf16ModelTest, CpuMatchesOfflineWithinBf16ToleranceAndDiffersFromFp32) {
  ASSERT_OK_AND_ASSIGN(auto fp32,
                       cpu::CpuBackend::Create(model_.program, Options(Precision::kFp32)));
  ASSERT_OK_AND_ASSIGN(auto bf16,
                       cpu::CpuBackend::Create(model_.program, Options(Precision::kBf16)));
  ASSERT_OK_AND_ASSIGN(NpyArray fp32_out, Run(*fp32));
  ASSERT_OK_AND_ASSIGN(NpyArray bf16_out, Run(*bf16));
  EXPECT_TRUE(AllClose(bf16_out, model_.expected, kBf16Atol, kBf16Rtol));
  // The weights really are bf16: packed in half the bytes, and the outputs change.
  EXPECT_EQ(2 * bf16->weight_bytes(), fp32->weight_bytes());
  EXPECT_NE(
      std::memcmp(bf16_out.data.data(), fp32_out.data.data(), fp32_out.data.size() * sizeof(float)),
      0);
  // program() is the rounded program.
  for (const streaming::Op& op : bf16->program().ops) {
    if (const auto* conv = std::get_if<streaming::ConvOp>(&op.params)) {
      for (float w : conv->weight) ASSERT_EQ(w, RoundToBf16(w)) << op.node;
    }
  }
}

TEST_P(Bf16ModelTest, OpenClAgreesWithCpuToFp32Tolerance) {
  ASSERT_OK_AND_ASSIGN(auto cpu,
                       cpu::CpuBackend::Create(model_.program, Options(Precision::kBf16)));
  ASSERT_OK_AND_ASSIGN(auto opencl,
                       opencl::OpenClBackend::Create(model_.program, Options(Precision::kBf16),
                                                     opencl::testing::TestOptions()));
  ASSERT_OK_AND_ASSIGN(NpyArray cpu_out, Run(*cpu));
  ASSERT_OK_AND_ASSIGN(NpyArray opencl_out, Run(*opencl));
  EXPECT_TRUE(AllClose(opencl_out, cpu_out));
  EXPECT_TRUE(AllClose(opencl_out, model_.expected, kBf16Atol, kBf16Rtol));
}

INSTANTIATE_TEST_SUITE_P(Manifest, Bf16ModelTest, ::testing::ValuesIn(ManifestNames("stream")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace sluice
