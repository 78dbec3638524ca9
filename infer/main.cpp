// main.cpp: the ./sample program (infer/sample_cli.cpp does the work).
#include "infer/sample_cli.h"
#include "ops/kernel_choices.h"

int main(int argc, char** argv) {
  iflame::ops::read_kernel_choices_from_environment();  // once, before any kernel runs
  return iflame::infer::sample_main(argc, argv);
}
