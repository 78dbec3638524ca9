// main.cpp: doctest's runner. Every other file in tests/ adds test cases.
// Training runs refuse a run folder that already holds a run (training/
// run_folder.h), so the folders the training tests write are cleared once
// here, before any test runs: each run of the suite starts from none.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <filesystem>

int main(int argc, char** argv) {
  for (const char* runs : {"build/test_runs", "build/test_dist_runs"}) std::filesystem::remove_all(runs);
  return doctest::Context(argc, argv).run();
}
