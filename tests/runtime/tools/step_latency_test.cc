// The pieces of sluice-run --bench: the backend factory and the step-latency measurement.
#include "runtime/tools/step_latency.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/tools/backend_factory.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"

namespace sluice::tools {
namespace {

using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

TEST(BackendFactoryTest, CreatesTheCpuBackendAndRefusesWhatItCannotCreate) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadReferenceModel("cnn_tiny"));
  ASSERT_OK_AND_ASSIGN(auto cpu, CreateBackend(model.program, {}, {}));
  EXPECT_EQ(cpu->name(), "cpu");

  BackendSpec unknown;
  unknown.kind = "tpu";
  EXPECT_THAT(CreateBackend(model.program, unknown, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tpu")));
  EXPECT_THAT(ParsePrecision("fp8"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BackendFactoryTest, SpecPrecisionReachesTheBackend) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadReferenceModel("cnn_tiny"));
  BackendSpec spec;
  ASSERT_OK_AND_ASSIGN(Precision bf16, ParsePrecision("bf16"));
  spec.precision = bf16;
  ASSERT_OK_AND_ASSIGN(auto backend, CreateBackend(model.program, spec, {}));
  ASSERT_OK_AND_ASSIGN(auto fp32, cpu::CpuBackend::Create(model.program));
  EXPECT_EQ(2 * static_cast<cpu::CpuBackend&>(*backend).weight_bytes(), fp32->weight_bytes());
}

TEST(StepLatencyTest, TimesEveryStepAndFreesItsSessions) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadReferenceModel("cnn_tiny"));
  BackendOptions options;
  options.max_batch = 4;
  ASSERT_OK_AND_ASSIGN(auto backend, cpu::CpuBackend::Create(model.program, options));
  StepLatencyOptions latency;
  latency.steps = 20;
  latency.warmup_steps = 3;
  ASSERT_OK_AND_ASSIGN(StepLatency result, MeasureStepLatency(*backend, 4, latency));
  EXPECT_EQ(result.batch, 4);
  EXPECT_EQ(result.steps, 20);
  EXPECT_GT(result.p50_us, 0);
  EXPECT_LE(result.p50_us, result.p99_us);
  EXPECT_NEAR(result.frames_per_s, 4 / (result.mean_us * 1e-6), result.frames_per_s * 1e-6);
  EXPECT_NEAR(result.gflops, model.program->FlopsPerFrame() * 4 / (result.mean_us * 1e3),
              result.gflops * 1e-6);
  EXPECT_GT(result.cpu_share, 0);
  EXPECT_LE(result.cpu_share, 1.05);
  EXPECT_EQ(backend->live_slots(), 0);

  EXPECT_THAT(MeasureStepLatency(*backend, 5, latency),
              StatusIs(absl::StatusCode::kInvalidArgument));  // Above max_batch.
  EXPECT_EQ(backend->live_slots(), 0);
  latency.steps = 0;
  EXPECT_THAT(MeasureStepLatency(*backend, 1, latency),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sluice::tools
