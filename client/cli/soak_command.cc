// sluice-client soak: many sessions over several models, every output checked against a local
// CPU reference, optionally with chaos (drops with resume or restart, stalls, bursts).
#include <cstdio>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli/commands.h"
#include "client/cli/common_flags.h"
#include "client/cli/load_flags.h"
#include "client/cli/soak_runner.h"

ABSL_FLAG(std::string, model_repository, "",
          "soak: the server's model repository (DIR/<model>/model.onnx and config.pbtxt), from "
          "which the local reference is built.");
ABSL_FLAG(std::string, models, "", "soak: comma-separated models; sessions go round robin.");
ABSL_FLAG(bool, chaos, false,
          "soak: drop streams mid-way (client cancel, or a TCP reset for sessions with a "
          "connection of their own) and resume or restart them, stall readers, send bursts.");
ABSL_FLAG(bool, expect_drain, false,
          "soak: the server is drained (SIGTERM) during the run. Streams it ends with "
          "UNAVAILABLE \"the server is shutting down\" must have answered a gap-free prefix of "
          "their frames; their sessions then try one new Open, which must be refused. See --help.");
ABSL_FLAG(uint64_t, seed, 1, "soak: seed of the frames, chunk sizes and chaos plans.");

namespace sluice::client {
namespace {

void PrintProgress(const SoakCounts& counts, absl::Duration elapsed, int sessions,
                   bool expect_drain) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const std::string drain = expect_drain
                                ? absl::StrFormat(", drained %d, refused %d",
                                                  counts.sessions_drained, counts.sessions_refused)
                                : "";
  std::fprintf(
      stderr,
      "[soak] %.0f s: sessions %lld/%d done (%lld failed), frames sent %lld, outputs "
      "verified %lld (mismatched %lld, lost %lld), resumed %lld, restarted %lld, "
      "errors %lld, %.0f outputs/s%s\n",
      seconds, static_cast<long long>(counts.sessions_completed), sessions,
      static_cast<long long>(counts.sessions_failed), static_cast<long long>(counts.frames_sent),
      static_cast<long long>(counts.outputs_verified),
      static_cast<long long>(counts.outputs_mismatched),
      static_cast<long long>(counts.outputs_lost), static_cast<long long>(counts.sessions_resumed),
      static_cast<long long>(counts.sessions_restarted),
      static_cast<long long>(counts.error_count()),
      seconds > 0 ? counts.outputs_verified / seconds : 0.0, drain.c_str());
}

// Every count of SoakCounts but the errors, under its field name.
constexpr std::pair<const char*, int64_t SoakCounts::*> kCountFields[] = {
    {"frames_sent", &SoakCounts::frames_sent},
    {"frames_resent", &SoakCounts::frames_resent},
    {"frames_abandoned", &SoakCounts::frames_abandoned},
    {"outputs_verified", &SoakCounts::outputs_verified},
    {"outputs_mismatched", &SoakCounts::outputs_mismatched},
    {"outputs_lost", &SoakCounts::outputs_lost},
    {"outputs_duplicated", &SoakCounts::outputs_duplicated},
    {"outputs_reordered", &SoakCounts::outputs_reordered},
    {"outputs_unexpected", &SoakCounts::outputs_unexpected},
    {"sessions_opened", &SoakCounts::sessions_opened},
    {"sessions_resumed", &SoakCounts::sessions_resumed},
    {"sessions_restarted", &SoakCounts::sessions_restarted},
    {"sessions_completed", &SoakCounts::sessions_completed},
    {"sessions_failed", &SoakCounts::sessions_failed},
    {"disconnects", &SoakCounts::disconnects},
    {"connection_resets", &SoakCounts::connection_resets},
    {"stalls", &SoakCounts::stalls},
    {"bursts", &SoakCounts::bursts},
    {"resume_retries", &SoakCounts::resume_retries},
    {"resume_ms_max", &SoakCounts::resume_ms_max},
    {"sessions_drained", &SoakCounts::sessions_drained},
    {"sessions_refused", &SoakCounts::sessions_refused},
    {"opens_cancelled", &SoakCounts::opens_cancelled},
    {"frames_answered", &SoakCounts::frames_answered},
    {"frames_unanswered", &SoakCounts::frames_unanswered},
    {"frames_refused", &SoakCounts::frames_refused},
    {"drain_violations", &SoakCounts::drain_violations},
};

std::string CountsJson(const SoakCounts& counts) {
  std::vector<std::string> parts;
  for (const auto& [name, field] : kCountFields) {
    parts.push_back(absl::StrCat("\"", name, "\": ", counts.*field));
  }
  return absl::StrJoin(parts, ", ");
}

std::string ErrorsJson(const SoakCounts& counts) {
  std::vector<std::string> parts;
  for (const auto& [code, n] : counts.errors) parts.push_back(absl::StrCat("\"", code, "\": ", n));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

std::string DrainText(const SoakCounts& c) {
  return absl::StrFormat(
      "  drain      sessions drained %d, refused %d (cancelled by the shutdown %d); frames "
      "answered %d, unanswered %d (refused %d); violations %d\n",
      c.sessions_drained, c.sessions_refused, c.opens_cancelled, c.frames_answered,
      c.frames_unanswered, c.frames_refused, c.drain_violations);
}

std::string ErrorsText(const SoakCounts& counts) {
  if (counts.errors.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& [code, n] : counts.errors) parts.push_back(absl::StrCat(code, " ", n));
  return absl::StrJoin(parts, ", ");
}

}  // namespace

const Command kSoakCommand = {
    "soak",
    "Run N sessions over several models; verify every output against a local reference.",
    "Runs --sessions concurrent sessions over --models (round robin), each streaming --frames\n"
    "seeded random frames in chunks of 1..8, and checks every output against a CPU reference\n"
    "of the same model built from --model_repository (|got - want| <= 1e-4 + 1e-4 |want|).\n"
    "--chaos also drops streams mid-way and resumes (the server needs --resume_grace_ms > 0)\n"
    "or restarts them, stalls readers for 50-500 ms and sends bursts of 32-256 frames; a\n"
    "session may have up to 512 frames in flight, so keep the server's --resume_buffer_frames\n"
    "at 512 or more. With TLS, the sessions that connect through the local TCP relay need\n"
    "--tls_server_name. Reports frames sent / verified / mismatched / lost / duplicated /\n"
    "reordered, sessions opened / resumed / restarted and errors by code (--json: one object);\n"
    "exit code 1 on any mismatch, loss, duplicate, reorder, error or unfinished session.\n"
    "--expect_drain is for a run during which the server is drained (SIGTERM; not with\n"
    "--chaos). A stream the server ends with UNAVAILABLE \"the server is shutting down\" is\n"
    "drained, not failed, if the outputs it received (each verified, once, in order) are a\n"
    "gap-free prefix of the frames sent; if the server refused frames with an UNAVAILABLE\n"
    "Error (seq = the first frame it did not accept), the prefix must end exactly there. The\n"
    "session then tries one new Open, which must be refused UNAVAILABLE (or CANCELLED: gRPC\n"
    "cancels calls that arrive while the server shuts down), and ends; an Open refused with\n"
    "the shutdown message ends its session too. Reports sessions drained / refused, frames\n"
    "answered / unanswered / refused and drain violations; exit code 1 on any violation, on\n"
    "any other stream ending, or when no stream was drained.\n"
    "  sluice-client soak [--server HOST:PORT] --model_repository DIR --models a,b,c\n"
    "      --sessions N --frames F [--chaos | --expect_drain] [--seed S] [--json]\n"
    "      [--timeout 10m]",
    "client/cli/soak_command.cc",
    &RunSoakCommand,
    "client/cli/load_flags.cc"};

int RunSoakCommand() {
  SoakOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.repository = absl::GetFlag(FLAGS_model_repository);
  options.models = absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipWhitespace());
  options.sessions = absl::GetFlag(FLAGS_sessions);
  options.frames = absl::GetFlag(FLAGS_frames);
  options.chaos = absl::GetFlag(FLAGS_chaos);
  options.expect_drain = absl::GetFlag(FLAGS_expect_drain);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.open_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  options.progress = [sessions = options.sessions, expect_drain = options.expect_drain](
                         const SoakCounts& counts, absl::Duration elapsed) {
    PrintProgress(counts, elapsed, sessions, expect_drain);
  };
  absl::StatusOr<ClientOptions> client_options =
      ClientOptionsFromFlags(absl::GetFlag(FLAGS_connections));
  if (!client_options.ok()) {
    std::cerr << "sluice-client soak: " << client_options.status() << "\n";
    return 1;
  }
  options.client_options = *client_options;
  auto client = StreamingClient::Create(options.server, *client_options);
  if (!client.ok()) {
    std::cerr << "sluice-client soak: " << client.status() << "\n";
    return 1;
  }
  absl::StatusOr<SoakResult> result = RunSoak(**client, options);
  if (!result.ok()) {
    std::cerr << "sluice-client soak: " << result.status() << "\n";
    return 1;
  }
  for (const std::string& line : result->samples) {
    std::cerr << "sluice-client soak: " << line << "\n";
  }
  const SoakCounts& c = result->counts;
  const bool ok = result->ok(options);
  const double seconds = absl::ToDoubleSeconds(result->elapsed);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat(
        "{\"sessions\": %d, \"frames_per_session\": %d, \"chaos\": %s, \"expect_drain\": %s, "
        "\"seed\": %d, \"duration_s\": %.3f, \"frames_per_s\": %.1f, \"outputs_per_s\": %.1f, "
        "%s, \"errors\": %s, \"ok\": %s}\n",
        options.sessions, options.frames, options.chaos ? "true" : "false",
        options.expect_drain ? "true" : "false", options.seed, seconds, result->frames_per_s,
        result->outputs_per_s, CountsJson(c), ErrorsJson(c), ok ? "true" : "false");
  } else {
    std::cout << absl::StrFormat(
        "sluice-client soak: %d sessions x %d frames over %s on %s, chaos %s, seed %d\n"
        "  duration   %.1f s, %.0f frames/s sent, %.0f outputs/s verified\n"
        "  frames     sent %d, resent %d, abandoned %d\n"
        "  outputs    verified %d, mismatched %d, lost %d, duplicated %d, reordered %d, "
        "unexpected %d\n"
        "  sessions   opened %d, resumed %d, restarted %d, completed %d, failed %d\n"
        "  chaos      disconnects %d, connection resets %d, stalls %d, bursts %d, "
        "resume retries %d, longest resume %d ms\n"
        "%s"
        "  errors     %s\n"
        "  result     %s\n",
        options.sessions, options.frames, absl::StrJoin(options.models, ","), options.server,
        options.chaos ? "on" : "off", options.seed, seconds, result->frames_per_s,
        result->outputs_per_s, c.frames_sent, c.frames_resent, c.frames_abandoned,
        c.outputs_verified, c.outputs_mismatched, c.outputs_lost, c.outputs_duplicated,
        c.outputs_reordered, c.outputs_unexpected, c.sessions_opened, c.sessions_resumed,
        c.sessions_restarted, c.sessions_completed, c.sessions_failed, c.disconnects,
        c.connection_resets, c.stalls, c.bursts, c.resume_retries, c.resume_ms_max,
        options.expect_drain ? DrainText(c) : "", ErrorsText(c), ok ? "PASS" : "FAIL");
  }
  return ok ? 0 : 1;
}

}  // namespace sluice::client
