// main.cpp: doctest's runner. Every other file in tests/ adds test cases. The
// kernel choices are read from the environment first, as the programs do
// (ops/kernel_choices.h): IFLAME_FLASH_ATTENTION=0 ./iflame_tests runs the
// suite on the f32-FMA attention kernels.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "ops/kernel_choices.h"

int main(int argc, char** argv) {
  iflame::ops::read_kernel_choices_from_environment();
  doctest::Context context(argc, argv);
  return context.run();
}
