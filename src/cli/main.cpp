#include <cstring>
#include <iostream>

#include "cli/app.h"
#include "exec/local/process.h"

int main(int argc, char** argv) {
  // The per-job shim is this binary too (exec/local/process.h); it is no user command.
  if (argc == 3 && std::strcmp(argv[1], "__shim") == 0)
    return hylab::exec::local::shim_main(argv[2]);
  std::vector<std::string> args(argv, argv + argc);
  return hylab::cli::run(args, std::cout, std::cerr);
}
