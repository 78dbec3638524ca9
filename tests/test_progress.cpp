// test_progress.cpp: what the programs tell a user while they work and when the
// GPU is missing: ./evaluate's phases and Chamfer progress, and the reason a GPU
// is not usable, which names the cause and --device cpu.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/random.h"
#include "data/mesh.h"
#include "tests/test_util.h"
#include "tests/training_fixtures.h"
#include "tools/eval_metrics.h"
#include "tools/evaluate_cli.h"
#include "training/train_config.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// Everything f writes to stderr (file descriptor 2), which is restored afterwards.
std::string capture_stderr(const std::function<void()>& f) {
  std::fflush(stderr);
  std::FILE* tmp = std::tmpfile();
  REQUIRE(tmp != nullptr);
  const int saved = dup(2);
  dup2(fileno(tmp), 2);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string text;
  std::rewind(tmp);
  for (int c; (c = std::fgetc(tmp)) != EOF;) text += char(c);
  std::fclose(tmp);
  return text;
}

int run_evaluate(std::vector<std::string> args) {
  args.insert(args.begin(), "evaluate");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return evaluate_main(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("eval: on the CPU each Chamfer matrix reports its rows as it fills, with the same numbers") {
  const Tensor samples = random_tensor({23, 32, 3}, 1, -0.5f, 0.5f);
  const Tensor references = random_tensor({17, 40, 3}, 2, -0.5f, 0.5f);
  std::vector<std::string> names;
  std::vector<std::pair<int64_t, int64_t>> reports;
  const DistributionMetrics reported = compare_point_clouds(
      samples, references, Device::CPU, [&](const std::string& matrix, int64_t done, int64_t rows) {
        names.push_back(matrix);
        reports.push_back({done, rows});
      });
  const DistributionMetrics plain = compare_point_clouds(samples, references, Device::CPU);
  CHECK(reported.cov == plain.cov);
  CHECK(reported.mmd == plain.mmd);
  CHECK(reported.one_nna == plain.one_nna);
  // Three matrices in order, each reported in up to ten blocks, rows rising to the total.
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"samples x references", 23}, {"samples x samples", 23}, {"references x references", 17}};
  size_t k = 0;
  for (const auto& [name, rows] : expected) {
    int64_t last = 0, count = 0;
    while (k < names.size() && names[k] == name) {
      CHECK(reports[k].second == rows);
      CHECK(reports[k].first > last);
      last = reports[k].first;
      count++;
      k++;
    }
    CAPTURE(name);
    CHECK(last == rows);
    CHECK(count > 1);
    CHECK(count <= 10);
  }
  CHECK(k == names.size());
}

TEST_CASE("eval: ./evaluate says on stderr what it is doing, phase by phase") {
  namespace fs = std::filesystem;
  const std::string root = "build/test_eval_progress";
  fs::remove_all(root);
  fs::create_directories(root + "/gen");
  fs::create_directories(root + "/ref");
  for (int i = 0; i < 3; i++) {
    write_mesh(str(root, "/gen/g", i, ".obj"), box_mesh(0.2f + 0.1f * i, 0.5f, 0.3f));
    write_mesh(str(root, "/ref/r", i, ".obj"), box_mesh(0.5f, 0.2f + 0.1f * i, 0.3f));
  }
  int rc = -1;
  const std::string err = capture_stderr([&] {
    rc = run_evaluate({root + "/gen", "--reference-folder", root + "/ref", "--device", "cpu", "--points", "64"});
  });
  MESSAGE(err);
  CHECK(rc == 0);
  const std::vector<std::string> phases = {
      "evaluate: reading 3 generated meshes from " + root + "/gen",
      "evaluate: reading 3 reference meshes from " + root + "/ref",
      "evaluate: sampling point clouds: 64 points on each of 3 generated and 3 reference meshes",
      "evaluate: Chamfer matrices on cpu: 3 x 3, 3 x 3, 3 x 3",
      "Chamfer matrix samples x references on cpu: 3/3 rows",
      "Chamfer matrix samples x samples on cpu: 3/3 rows",
      "Chamfer matrix references x references on cpu: 3/3 rows",
      "evaluate: occupancy JSD"};
  size_t at = 0;
  for (const std::string& phase : phases) {
    CAPTURE(phase);
    const size_t found = err.find(phase, at);
    CHECK(found != std::string::npos);  // present, and after the phase before it
    if (found != std::string::npos) at = found;
  }
}

TEST_CASE("gpu: without a usable GPU the reason names the cause, and --device cuda points to --device cpu") {
  if (cuda_available()) {
    CHECK(cuda_unavailable_reason().empty());
    return;
  }
  const std::string reason = cuda_unavailable_reason();
  MESSAGE(reason);
  CHECK(reason.rfind("no usable NVIDIA GPU: ", 0) == 0);
  CHECK(!contains(reason, "insufficient"));
  void* driver = dlopen("libcuda.so.1", RTLD_LAZY);
  if (driver) dlclose(driver);
  if (!driver && !contains(reason, "built without CUDA")) CHECK(reason == "no usable NVIDIA GPU: driver not found");

  TrainConfig c;
  c.device = "cuda";
  const std::string train_error = error_of([&] { c.resolved_device(); });
  CHECK(contains(train_error, "--device cuda: " + reason));
  CHECK(contains(train_error, "--device cpu"));
  int rc = -1;
  const std::string evaluate_error =
      capture_stderr([&] { rc = run_evaluate({"build", "--reference-folder", "build", "--device", "cuda"}); });
  CHECK(rc == 1);
  CHECK(contains(evaluate_error, reason));
  CHECK(contains(evaluate_error, "--device cpu"));
}
