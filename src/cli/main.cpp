#include <iostream>

#include "cli/app.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return hylab::cli::run(args, std::cout, std::cerr);
}
