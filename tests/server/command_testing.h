// Helpers for integration tests that drive real command-line tools (curl, openssl, the sluice
// binaries) as subprocesses: run a shell command and collect its output, check that a tool is
// installed, make temporary paths, call the admin HTTP endpoint with curl (any method, headers and
// body; the status code, headers and body come back), and read Prometheus samples.
#ifndef SLUICE_TESTS_SERVER_COMMAND_TESTING_H_
#define SLUICE_TESTS_SERVER_COMMAND_TESTING_H_

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace sluice::command_testing {

struct CommandResult {
  int exit_code = -1;  // -1 when the command did not exit normally.
  std::string output;  // stdout (and stderr when the command line redirects it).
};

// Runs `command` with /bin/sh and collects its stdout.
inline CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

// True when `tool` runs from PATH. The tools the tests use are Debian packages that
// scripts/setup.sh installs, so a missing one is a test failure, not a skip.
inline bool HaveTool(const std::string& tool, const std::string& version_flag) {
  return RunCommand(absl::StrCat(tool, " ", version_flag, " >/dev/null 2>&1")).exit_code == 0;
}

// A fresh path under the test temp dir (nothing is created).
inline std::string TempPath(const std::string& stem) {
  static std::atomic<int> counter{0};
  return absl::StrCat(::testing::TempDir(), "/", stem, "-", getpid(), "-", counter.fetch_add(1));
}

// A new empty directory under the test temp dir.
inline std::string MakeTempDir(const std::string& stem) {
  const std::string dir = TempPath(stem);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

struct HttpRequestSpec {
  std::string method = "GET";
  std::string url;                   // e.g. "http://127.0.0.1:8000/healthz"
  std::vector<std::string> headers;  // "Name: value" (no single quotes)
  std::optional<std::string> body;   // sent with --data-binary when set
};

struct HttpResult {
  int code = 0;        // 0 when curl could not talk HTTP to the server.
  int curl_exit = -1;  // curl's exit code (7 = could not connect).
  std::string body;
  std::string raw_headers;  // The response header block as received.

  // The value of the first response header named `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const {
    for (absl::string_view line : absl::StrSplit(raw_headers, '\n')) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), name)) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
    return "";
  }
};

// One HTTP request with curl. Does not fail the test by itself: check code / curl_exit.
inline HttpResult Curl(const HttpRequestSpec& request) {
  const std::string body_file = TempPath("curl-body");
  const std::string header_file = TempPath("curl-headers");
  std::string command = absl::StrCat("curl -sS --max-time 20 -o '", body_file, "' -D '",
                                     header_file, "' -w '%{http_code}' -X '", request.method, "'");
  for (const std::string& header : request.headers) absl::StrAppend(&command, " -H '", header, "'");
  std::string data_file;
  if (request.body.has_value()) {
    data_file = TempPath("curl-data");
    WriteFile(data_file, *request.body);
    absl::StrAppend(&command, " --data-binary '@", data_file, "'");
  }
  absl::StrAppend(&command, " '", request.url, "' 2>/dev/null");
  const CommandResult run = RunCommand(command);
  HttpResult result;
  result.curl_exit = run.exit_code;
  result.code = std::atoi(run.output.c_str());
  result.body = ReadFile(body_file);
  result.raw_headers = ReadFile(header_file);
  std::filesystem::remove(body_file);
  std::filesystem::remove(header_file);
  if (!data_file.empty()) std::filesystem::remove(data_file);
  return result;
}

// GET http://<host>:<port><path>, with an optional "Authorization: Bearer <token>".
inline HttpResult CurlGet(int port, const std::string& path, const std::string& token = "",
                          const std::string& host = "127.0.0.1") {
  HttpRequestSpec request;
  request.url = absl::StrCat("http://", host, ":", port, path);
  if (!token.empty()) request.headers.push_back(absl::StrCat("Authorization: Bearer ", token));
  return Curl(request);
}

// The value of the Prometheus sample whose name-and-labels part is exactly `series`, or -1.
inline double SampleValue(const std::string& metrics, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    if (line.substr(0, space) == series) {
      return std::strtod(std::string(line.substr(space + 1)).c_str(), nullptr);
    }
  }
  return -1;
}

}  // namespace sluice::command_testing

#endif  // SLUICE_TESTS_SERVER_COMMAND_TESTING_H_
