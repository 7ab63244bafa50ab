// The sluice-client subcommands. Each reads its flags (parsed by main) and returns the process
// exit code; each lives in <name>_command.cc next to its flags, which is how `sluice-client
// <name> --help` finds the flags to list.
#ifndef SLUICE_CLIENT_CLI_COMMANDS_H_
#define SLUICE_CLIENT_CLI_COMMANDS_H_

namespace sluice::client {

struct Command {
  const char* name;
  const char* summary;  // One line for the subcommand list.
  const char* usage;    // The usage message of `sluice-client <name> --help`.
  const char* source;   // The file defining its flags (matched against flag locations).
  int (*run)();
  const char* shared_source = nullptr;  // A file of flags it shares with other commands.
};

int RunStreamCommand();
int RunBenchCommand();
int RunHealthCommand();
int RunModelsCommand();
int RunSoakCommand();

extern const Command kStreamCommand;
extern const Command kBenchCommand;
extern const Command kHealthCommand;
extern const Command kModelsCommand;
extern const Command kSoakCommand;

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_COMMANDS_H_
