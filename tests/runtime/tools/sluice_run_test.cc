// Runs the sluice-run binary (SLUICE_RUN_BINARY) as a user would and checks its exit codes,
// messages and output files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/common/npy.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"

#ifndef SLUICE_RUN_BINARY
#error "SLUICE_RUN_BINARY must be the path of the sluice-run executable"
#endif

namespace sluice {
namespace {

using ::sluice::model_testing::AllClose;
using ::sluice::model_testing::FindManifestRow;
using ::sluice::model_testing::ManifestRow;
using ::sluice::model_testing::SourcePath;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string TempPath(const std::string& name) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(::testing::TempDir(), "/sluice_run_test_", info->name(), "_", name);
}

std::string Quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

// Runs sluice-run with `args` (each quoted for the shell), capturing stdout and stderr.
RunResult RunSluice(const std::vector<std::string>& args) {
  const std::string out_path = TempPath("stdout.txt");
  const std::string err_path = TempPath("stderr.txt");
  std::string command = Quote(SLUICE_RUN_BINARY);
  for (const std::string& arg : args) absl::StrAppend(&command, " ", Quote(arg));
  absl::StrAppend(&command, " >", Quote(out_path), " 2>", Quote(err_path));
  RunResult result;
  const int status = std::system(command.c_str());
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = ReadText(out_path);
  result.err = ReadText(err_path);
  return result;
}

TEST(SluiceRunTest, StreamsModelAndMatchesOfflineOutput) {
  ASSERT_OK_AND_ASSIGN(ManifestRow row, FindManifestRow("vollo_valid_cnn"));
  const std::string output = TempPath("y.npy");
  std::remove(output.c_str());
  const RunResult run = RunSluice({"--model", row.ModelPath(), "--input", row.DataPath("input.npy"),
                                   "--output", output, "--sessions", "3"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("3 session(s) per input row"));
  EXPECT_THAT(run.err, HasSubstr("warm-up 4 frames"));
  ASSERT_OK_AND_ASSIGN(NpyArray actual, ReadNpy(output));
  ASSERT_OK_AND_ASSIGN(NpyArray expected, ReadNpy(row.DataPath("expected.npy")));
  EXPECT_TRUE(AllClose(actual, expected));
}

TEST(SluiceRunTest, StreamsRecurrentModelWithTimeFirstLayout) {
  ASSERT_OK_AND_ASSIGN(ManifestRow row, FindManifestRow("lstm2"));
  const std::string output = TempPath("y.npy");
  const RunResult run = RunSluice({"--model", row.ModelPath(), "--input", row.DataPath("input.npy"),
                                   "--output", output, "--sessions", "2", "--max_batch", "5"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_OK_AND_ASSIGN(NpyArray actual, ReadNpy(output));
  ASSERT_OK_AND_ASSIGN(NpyArray expected, ReadNpy(row.DataPath("expected.npy")));
  EXPECT_TRUE(AllClose(actual, expected));
}

TEST(SluiceRunTest, RefusedModelExitsWithTwoNamingTheNode) {
  for (const std::string name : {"strided_conv", "bidir_lstm", "unknown_op"}) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(ManifestRow row, FindManifestRow(name));
    const std::string output = TempPath("refused.npy");
    std::remove(output.c_str());
    const RunResult run =
        RunSluice({"--model", row.ModelPath(), "--input",
                   SourcePath("tests/models/cnn_tiny/input.npy"), "--output", output});
    EXPECT_EQ(run.exit_code, 2) << run.err;
    EXPECT_THAT(run.err, HasSubstr(row.node));
    EXPECT_THAT(ReadNpy(output), StatusIs(absl::StatusCode::kNotFound))
        << "no output for a refused model";
  }
}

TEST(SluiceRunTest, DescribePrintsStateBytes) {
  ASSERT_OK_AND_ASSIGN(ManifestRow row, FindManifestRow("lstm2"));
  const RunResult run = RunSluice({"--model", row.ModelPath(), "--describe"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("state bytes per session"));
  EXPECT_THAT(run.out, HasSubstr("LSTM"));
  ASSERT_OK_AND_ASSIGN(streaming::Program program, streaming::LoadProgram(row.ModelPath(), {}));
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("state bytes per session: ", program.state_bytes)));
}

TEST(SluiceRunTest, MissingArgumentsExitWithOne) {
  RunResult run = RunSluice({});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("--model"));
  ASSERT_OK_AND_ASSIGN(ManifestRow row, FindManifestRow("lstm2"));
  run = RunSluice({"--model", row.ModelPath()});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("--input"));
}

TEST(SluiceRunTest, MissingModelFileExitsWithOne) {
  const std::string missing = TempPath("missing.onnx");
  const RunResult run = RunSluice({"--model", missing, "--describe"});
  EXPECT_EQ(run.exit_code, 1) << "a missing file is an error, not an unsupported model";
  EXPECT_THAT(run.err, HasSubstr(missing));
}

TEST(SluiceRunTest, InputOfWrongShapeExitsWithOne) {
  ASSERT_OK_AND_ASSIGN(ManifestRow row, FindManifestRow("vollo_valid_cnn"));
  // lstm2's input is [40, 8, 10]; vollo_valid_cnn needs 16 channels on axis 1.
  const std::string output = TempPath("y.npy");
  const RunResult run = RunSluice({"--model", row.ModelPath(), "--input",
                                   SourcePath("tests/models/lstm2/input.npy"), "--output", output});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, Not(HasSubstr("frames per session")));
}

}  // namespace
}  // namespace sluice
