// main.cpp: doctest's runner. Every other file in tests/ adds test cases.
//
// The kernel choices are read from the environment first, as the programs do
// (ops/kernel_choices.h): IFLAME_FLASH_ATTENTION=0 ./iflame_tests runs the
// suite on the f32-FMA attention kernels.
//
// Test cases that need a GPU carry the decorator needs_gpu() (test suite "gpu",
// tests/test_util.h). Where no GPU is usable the runner leaves that suite out, so
// doctest's summary counts those cases as skipped rather than passed, and says
// so on one line first; with a GPU every case runs.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

#include "core/device.h"
#include "ops/kernel_choices.h"

int main(int argc, char** argv) {
  iflame::ops::read_kernel_choices_from_environment();
  doctest::Context context(argc, argv);
  if (!iflame::cuda_available()) {
    int gpu_cases = 0;
    for (const doctest::detail::TestCase& tc : doctest::detail::getRegisteredTests())
      gpu_cases += std::strcmp(tc.m_test_suite, "gpu") == 0;
    context.addFilter("test-suite-exclude", "gpu");
    std::printf("[iflame] skipped (needs a GPU): the %d test cases of suite \"gpu\" (%s)\n", gpu_cases,
                iflame::cuda_unavailable_reason().c_str());
    std::fflush(stdout);
  }
  return context.run();
}
