// tokengate: hands the command line to the CLI.
#include "gateway/cli/cli.hpp"

int main(int argc, char** argv) { return tokengate::cli::run(argc, argv); }
