// Unit tests of the model configuration (server/repository/config.h): defaults without a
// config.pbtxt, a full config, syntax errors with their position, and range validation.
#include "server/repository/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace sluice::server {
namespace {

// A temporary model repository folder, removed at the end of the test.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sluice-config-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Creates <root>/<folder>, with config.pbtxt = `config` unless it is null.
  std::string ModelDir(const std::string& folder, const char* config) {
    const std::filesystem::path dir = root_ / folder;
    std::filesystem::create_directories(dir);
    if (config != nullptr) std::ofstream(dir / "config.pbtxt") << config;
    return dir.string();
  }

  std::filesystem::path root_;
};

void ExpectDefaults(const v1::ModelConfig& config) {
  EXPECT_EQ(config.max_batch(), 256);
  EXPECT_EQ(config.max_batch(), kDefaultMaxBatch);
  EXPECT_EQ(config.instance_count(), 1);
  EXPECT_EQ(config.session_idle_timeout_ms(), 300'000);
  EXPECT_EQ(config.session_queue_frames(), 64);
  EXPECT_EQ(config.max_queue_delay_us(), 0);
  EXPECT_EQ(config.max_sessions(), 0);
  EXPECT_EQ(config.backend(), v1::ModelConfig::BACKEND_AUTO);
  EXPECT_EQ(config.precision(), v1::ModelConfig::PRECISION_FP32);
  EXPECT_FALSE(config.has_time_axis());
  EXPECT_EQ(config.opencl_binary(), "");
}

TEST_F(ConfigTest, NoConfigFileGivesDefaultsAndTheFolderName) {
  const auto config = LoadModelConfig(ModelDir("kws_small", nullptr));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "kws_small");
  ExpectDefaults(*config);
}

TEST_F(ConfigTest, EmptyConfigFileGivesDefaults) {
  const auto config = LoadModelConfig(ModelDir("empty", ""));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "empty");
  ExpectDefaults(*config);
}

TEST_F(ConfigTest, PartialConfigKeepsItsValuesAndDefaultsTheRest) {
  const auto config = LoadModelConfig(ModelDir("partial", "max_batch: 8\n# a comment\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "partial");
  EXPECT_EQ(config->max_batch(), 8);
  EXPECT_EQ(config->instance_count(), 1);
  EXPECT_EQ(config->session_queue_frames(), 64);
  EXPECT_EQ(config->session_idle_timeout_ms(), 300'000);
}

TEST_F(ConfigTest, FullConfigParses) {
  const char* text = R"pb(
    name: "kws"
    backend: BACKEND_CPU
    precision: PRECISION_FP32
    max_batch: 64
    max_queue_delay_us: 250
    instance_count: 3
    time_axis: 2
    max_sessions: 100
    session_idle_timeout_ms: 1500
    session_queue_frames: 16
    opencl_binary: "kws.aocx"
  )pb";
  const auto config = LoadModelConfig(ModelDir("folder_name", text));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "kws");  // An explicit name wins over the folder name.
  EXPECT_EQ(config->backend(), v1::ModelConfig::BACKEND_CPU);
  EXPECT_EQ(config->precision(), v1::ModelConfig::PRECISION_FP32);
  EXPECT_EQ(config->max_batch(), 64);
  EXPECT_EQ(config->max_queue_delay_us(), 250);
  EXPECT_EQ(config->instance_count(), 3);
  ASSERT_TRUE(config->has_time_axis());
  EXPECT_EQ(config->time_axis(), 2);
  EXPECT_EQ(config->max_sessions(), 100);
  EXPECT_EQ(config->session_idle_timeout_ms(), 1500);
  EXPECT_EQ(config->session_queue_frames(), 16);
  EXPECT_EQ(config->opencl_binary(), "kws.aocx");

  // ParseModelConfig alone applies no defaults.
  const auto parsed = ParseModelConfig("max_batch: 5", "inline");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->max_batch(), 5);
  EXPECT_EQ(parsed->instance_count(), 0);
}

TEST_F(ConfigTest, TimeAxisZeroIsPresentNotDefaulted) {
  const auto config = LoadModelConfig(ModelDir("t0", "time_axis: 0\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->has_time_axis());
  EXPECT_EQ(config->time_axis(), 0);
}

TEST_F(ConfigTest, SyntaxErrorReportsLineAndColumn) {
  // Line 3, column 12: the value of max_batch is not an integer.
  const std::string dir = ModelDir("bad", "name: \"x\"\n# comment\nmax_batch: abc\n");
  const auto config = LoadModelConfig(dir);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  const std::string message(config.status().message());
  EXPECT_NE(message.find("line 3, column 12"), std::string::npos) << message;
  EXPECT_NE(message.find("config.pbtxt"), std::string::npos) << message;

  const auto direct = ParseModelConfig("max_batch: 4\n  no_such_field: 1\n", "inline.pbtxt");
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m2(direct.status().message());
  EXPECT_NE(m2.find("inline.pbtxt"), std::string::npos) << m2;
  // protobuf reports an unknown field after its name (column 16 here); the line is what matters.
  EXPECT_NE(m2.find("line 2, column "), std::string::npos) << m2;
  EXPECT_NE(m2.find("no_such_field"), std::string::npos) << m2;

  const auto unterminated = ParseModelConfig("name: \"x\n", "u");
  ASSERT_FALSE(unterminated.ok());
  EXPECT_NE(unterminated.status().message().find("line 1"), std::string::npos)
      << unterminated.status();
}

struct RangeCase {
  const char* config;
  const char* field;
};

TEST_F(ConfigTest, OutOfRangeValuesNameTheField) {
  const RangeCase cases[] = {
      {"max_batch: -3", "max_batch"},
      {"max_batch: 4097", "max_batch"},
      {"max_queue_delay_us: -1", "max_queue_delay_us"},
      {"max_queue_delay_us: 1000001", "max_queue_delay_us"},
      {"instance_count: -1", "instance_count"},
      {"instance_count: 65", "instance_count"},
      {"max_sessions: -1", "max_sessions"},
      {"session_idle_timeout_ms: -5", "session_idle_timeout_ms"},
      {"session_queue_frames: -1", "session_queue_frames"},
      {"session_queue_frames: 65537", "session_queue_frames"},
      {"time_axis: -1", "time_axis"},
  };
  int i = 0;
  for (const RangeCase& c : cases) {
    const std::string dir = ModelDir(absl::StrCat("m", i++), c.config);
    const auto config = LoadModelConfig(dir);
    ASSERT_FALSE(config.ok()) << c.config << " was accepted";
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << c.config;
    EXPECT_NE(config.status().message().find(c.field), std::string::npos)
        << c.config << ": " << config.status();
  }
  // The bounds themselves are accepted.
  for (const char* ok :
       {"max_batch: 1", "max_batch: 4096", "max_queue_delay_us: 1000000", "instance_count: 64",
        "session_queue_frames: 1", "session_queue_frames: 65536", "max_sessions: 0"}) {
    const auto config = LoadModelConfig(ModelDir(absl::StrCat("m", i++), ok));
    EXPECT_TRUE(config.ok()) << ok << ": " << config.status();
  }
}

TEST_F(ConfigTest, ValidateNamesTheModel) {
  v1::ModelConfig config;
  config.set_name("kws");
  ApplyDefaults(&config);
  EXPECT_TRUE(ValidateModelConfig(config).ok());
  config.set_max_batch(0);
  const absl::Status status = ValidateModelConfig(config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("kws"), std::string::npos) << status;
  EXPECT_NE(status.message().find("max_batch"), std::string::npos) << status;
}

}  // namespace
}  // namespace sluice::server
