// End to end: the sluice-client binary (bench, health, models) against sluice-echo-server, both
// started as processes. SLUICE_CLIENT_BIN and SLUICE_ECHO_SERVER_BIN come from CMake.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"

namespace {

using ::testing::HasSubstr;

struct CommandRun {
  int exit_code = -1;
  std::string out;  // stdout only.
};

CommandRun RunCommand(const std::string& command) {
  CommandRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.out.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// The numeric fields of a flat JSON object.
std::map<std::string, double> ParseFlatJson(const std::string& text) {
  std::map<std::string, double> fields;
  static const std::regex kField("\"([a-z0-9_]+)\"\\s*:\\s*(-?[0-9.eE+-]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kField);
       it != std::sregex_iterator(); ++it) {
    fields[(*it)[1]] = std::stod((*it)[2]);
  }
  return fields;
}

class EchoServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      execl(SLUICE_ECHO_SERVER_BIN, SLUICE_ECHO_SERVER_BIN, "--host", "127.0.0.1", "--port", "0",
            "--channels", "16", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    FILE* stream = fdopen(out[0], "r");
    char line[256] = {0};
    ASSERT_NE(fgets(line, sizeof(line), stream), nullptr) << "the echo server printed nothing";
    fclose(stream);
    std::smatch match;
    const std::string text(line);
    ASSERT_TRUE(std::regex_search(text, match, std::regex("127\\.0\\.0\\.1:([0-9]+)"))) << text;
    server_ = absl::StrCat("127.0.0.1:", match[1].str());
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

  std::string Client(const std::string& args) const {
    return absl::StrCat(SLUICE_CLIENT_BIN, " ", args, " --server ", server_);
  }

  pid_t pid_ = -1;
  std::string server_;
};

TEST_F(EchoServerTest, BenchJsonReportsEveryFrame) {
  const CommandRun run = RunCommand(Client("bench --model echo --sessions 8 --frames 200 --json"));
  ASSERT_EQ(run.exit_code, 0) << run.out;
  const auto fields = ParseFlatJson(run.out);
  for (const char* key : {"sessions", "frames", "frames_per_s", "p50_us", "p90_us", "p99_us",
                          "p999_us", "max_us", "errors"}) {
    EXPECT_TRUE(fields.count(key)) << key << " missing in " << run.out;
  }
  EXPECT_EQ(fields.at("sessions"), 8);
  EXPECT_EQ(fields.at("frames"), 1600);
  EXPECT_EQ(fields.at("errors"), 0);
  EXPECT_GT(fields.at("frames_per_s"), 0);
  EXPECT_GT(fields.at("p50_us"), 0);
  EXPECT_LE(fields.at("p50_us"), fields.at("p99_us"));
  EXPECT_LE(fields.at("p99_us"), fields.at("max_us"));
  // Exactly one JSON object on stdout.
  EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '{'), 1) << run.out;
}

TEST_F(EchoServerTest, PacedBenchWithWarmup) {
  const CommandRun run = RunCommand(
      Client("bench --model echo --sessions 4 --frames 50 --warmup 5 --rate 500 --json"));
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_EQ(ParseFlatJson(run.out).at("frames"), 200);
}

TEST_F(EchoServerTest, HealthAndModels) {
  CommandRun run = RunCommand(Client("health"));
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.out, "SERVING\n");
  run = RunCommand(Client("models"));
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("echo\tREADY"));
  run = RunCommand(Client("models --model echo"));
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("frame [1,16]"));
}

TEST(SluiceClient, ErrorsGiveANonZeroExitCode) {
  // Nothing listens on port 1.
  CommandRun run = RunCommand(absl::StrCat(SLUICE_CLIENT_BIN,
                                           " bench --server 127.0.0.1:1 --model echo --sessions 2 "
                                           "--frames 5 --json 2>/dev/null"));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_EQ(ParseFlatJson(run.out).at("errors"), 2);
  run = RunCommand(absl::StrCat(SLUICE_CLIENT_BIN, " health --server 127.0.0.1:1 2>/dev/null"));
  EXPECT_NE(run.exit_code, 0);
  run = RunCommand(absl::StrCat(SLUICE_CLIENT_BIN, " frobnicate 2>/dev/null"));
  EXPECT_NE(run.exit_code, 0);
}

}  // namespace
