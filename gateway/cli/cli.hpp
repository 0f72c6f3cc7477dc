// The command line (README.md, "Command line"). main() hands argv here.
#pragma once

namespace tokengate::cli {

// Returns the exit code: 0 ok, 1 user error (one line on stderr), 2 usage.
int run(int argc, char** argv);

}  // namespace tokengate::cli
