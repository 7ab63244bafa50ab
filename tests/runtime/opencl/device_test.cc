// Device discovery and selection, and how OpenCL error codes become Status.
#include "runtime/opencl/device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/opencl/cl_status.h"
#include "runtime/opencl/opencl_backend.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"
#include "tests/runtime/opencl/opencl_testing.h"

namespace sluice::opencl {
namespace {

using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ReferenceModel;
using ::sluice::opencl::testing::TestOptions;
using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(Device, EnumeratesPoclCpuDevice) {
  ASSERT_OK_AND_ASSIGN(std::vector<DeviceInfo> devices, EnumerateDevices());
  ASSERT_FALSE(devices.empty());
  bool cpu = false;
  for (const DeviceInfo& info : devices) {
    EXPECT_FALSE(info.name.empty());
    EXPECT_FALSE(info.version.empty());
    cpu = cpu || info.TypeName() == "CPU";
  }
  EXPECT_TRUE(cpu) << "the tests expect PoCL's CPU device";
}

TEST(Device, ListDevicesNamesEveryDeviceAndTheAutoChoice) {
  ASSERT_OK_AND_ASSIGN(std::vector<DeviceInfo> devices, EnumerateDevices());
  const std::string listing = ListDevices();
  for (const DeviceInfo& info : devices) EXPECT_THAT(listing, HasSubstr(info.name));
  EXPECT_THAT(listing, HasSubstr("auto selects: "));
}

TEST(Device, SelectsByTypeOrSubstring) {
  ASSERT_OK_AND_ASSIGN(DeviceInfo cpu, SelectDevice("", "cpu"));
  EXPECT_EQ(cpu.TypeName(), "CPU");
  EXPECT_FALSE(cpu.PrefersSingleWorkItem());
  ASSERT_OK_AND_ASSIGN(DeviceInfo by_name,
                       SelectDevice(cpu.platform_name.substr(0, 6), cpu.name.substr(0, 4)));
  EXPECT_EQ(by_name.device, cpu.device);
}

TEST(Device, AutoNeverPicksACpuDevice) {
  ASSERT_OK_AND_ASSIGN(std::vector<DeviceInfo> devices, EnumerateDevices());
  auto chosen = SelectDevice("auto", "auto");
  if (chosen.ok()) {
    EXPECT_NE(chosen->TypeName(), "CPU");
  } else {
    EXPECT_THAT(chosen, StatusIs(absl::StatusCode::kNotFound, HasSubstr("accelerator")));
    for (const DeviceInfo& info : devices) EXPECT_EQ(info.TypeName(), "CPU");
  }
}

TEST(Device, BadSelectionIsNotFoundAndListsDevices) {
  ASSERT_OK_AND_ASSIGN(DeviceInfo cpu, SelectDevice("", "cpu"));
  EXPECT_THAT(SelectDevice("no-such-platform", ""),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("no-such-platform"), HasSubstr(cpu.name))));
  EXPECT_THAT(SelectDevice("", "no-such-device"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-device")));
}

TEST(Device, BackendWithBadSelectionFailsClearly) {
  ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel("lstm2"));
  OpenClOptions options = TestOptions();
  options.device = "no-such-device";
  EXPECT_THAT(OpenClBackend::Create(model.program, {}, options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-device")));
  options.device = "";  // auto: PoCL's CPU device is not eligible.
  auto automatic = OpenClBackend::Create(model.program, {}, options);
  if (!automatic.ok()) {
    EXPECT_THAT(automatic, StatusIs(absl::StatusCode::kNotFound));
  }
}

TEST(ClStatus, NamesTheErrorAndClassifiesIt) {
  EXPECT_THAT(ClStatus(CL_SUCCESS, "x"), IsOk());
  EXPECT_THAT(ClStatus(CL_OUT_OF_RESOURCES, "clEnqueueNDRangeKernel"),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("clEnqueueNDRangeKernel"), HasSubstr("CL_OUT_OF_RESOURCES"),
                             HasSubstr("-5"))));
  EXPECT_THAT(ClStatus(CL_DEVICE_NOT_AVAILABLE, "x"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("CL_DEVICE_NOT_AVAILABLE")));
  EXPECT_THAT(ClStatus(CL_INVALID_BINARY, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CL_INVALID_BINARY")));
  EXPECT_THAT(ClStatus(CL_BUILD_PROGRAM_FAILURE, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ClStatus(-9999, "x"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("-9999")));
}

absl::Status ReturnsThrough(cl_int code) {
  CL_RETURN_IF_ERROR(code);
  return absl::OkStatus();
}

TEST(ClStatus, MacroReturnsTheStatus) {
  EXPECT_THAT(ReturnsThrough(CL_SUCCESS), IsOk());
  EXPECT_THAT(
      ReturnsThrough(CL_MEM_OBJECT_ALLOCATION_FAILURE),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("CL_MEM_OBJECT_ALLOCATION_FAILURE")));
}

}  // namespace
}  // namespace sluice::opencl
