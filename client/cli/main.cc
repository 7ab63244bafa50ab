// sluice-client: command-line client of a sluice server (stream a file, bench, soak, health,
// models).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cli/commands.h"

namespace {

const sluice::client::Command* const kCommands[] = {
    &sluice::client::kStreamCommand, &sluice::client::kBenchCommand, &sluice::client::kSoakCommand,
    &sluice::client::kHealthCommand, &sluice::client::kModelsCommand};

const sluice::client::Command* current = nullptr;

std::string Overview() {
  std::string text =
      "Client of a sluice streaming inference server.\n"
      "  sluice-client <command> [flags]      sluice-client <command> --help\n"
      "Commands:\n";
  for (const auto* command : kCommands) {
    absl::StrAppend(&text, "  ", command->name, std::string(8 - std::strlen(command->name), ' '),
                    command->summary, "\n");
  }
  return text;
}

// `--help` lists the flags of the current subcommand's file and the shared ones.
bool IsHelpFlagFile(absl::string_view file) {
  if (absl::StrContains(file, "client/cli/common_flags.cc")) return true;
  if (current == nullptr) return false;
  return absl::StrContains(file, current->source) ||
         (current->shared_source != nullptr && absl::StrContains(file, current->shared_source));
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built with Mutex deadlock detection on, which costs a graph update per
  // lock (a few % of the bench's CPU); the library's lock order is fixed and tested.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::cout << Overview();
    return argc < 2 ? 1 : 0;
  }
  for (const auto* command : kCommands) {
    if (std::strcmp(argv[1], command->name) == 0) current = command;
  }
  if (current == nullptr) {
    std::cerr << "sluice-client: unknown command '" << argv[1] << "'\n" << Overview();
    return 1;
  }
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsHelpFlagFile;
  config.contains_helpshort_flags = IsHelpFlagFile;
  config.normalize_filename = [](absl::string_view file) { return std::string(file); };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(current->usage);
  // Parse the flags after the subcommand, as if the subcommand were the program.
  std::vector<char*> args;
  std::string program = std::string(argv[0]) + " " + current->name;
  args.push_back(program.data());
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (positional.size() > 1) {
    std::cerr << "sluice-client " << current->name << ": unexpected argument '" << positional[1]
              << "' (see --help)\n";
    return 1;
  }
  return current->run();
}
