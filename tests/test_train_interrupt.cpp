// test_train_interrupt.cpp: ./train on the CPU finishes or says why: the step-time
// estimate refuses a configuration whose step would take minutes (at once, with
// the estimate and what to do instead), and a stop request in the middle of a
// long step ends the run within two seconds with a checkpoint of the state
// before that step.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/mesh.h"
#include "nn/iflame.h"
#include "tests/test_util.h"
#include "tests/training_fixtures.h"
#include "training/step_estimate.h"
#include "training/trainer.h"

using namespace iflame;
using namespace iflame::test;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// An n x n grid of vertices in the plane y = 0.1 x, two triangles per cell: 2 (n-1)^2 faces.
Mesh grid_mesh(int n) {
  Mesh m;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) m.vertices.push_back({float(i) / (n - 1), 0.1f * i / (n - 1), float(j) / (n - 1)});
  for (int i = 0; i + 1 < n; i++)
    for (int j = 0; j + 1 < n; j++) {
      const int a = i * n + j, b = a + 1, c = a + n, d = c + 1;
      m.faces.push_back({a, b, d});
      m.faces.push_back({a, d, c});
    }
  return m;
}

// `count` copies of `mesh`, all in the training split, written to `path`.
std::string repeated_dataset(const std::string& path, const Mesh& mesh, int count) {
  std::vector<DatasetEntry> entries;
  for (int i = 0; i < count; i++) {
    DatasetEntry e;
    e.name = str("m", i);
    e.triangles = normalized_triangles(mesh);
    entries.push_back(e);
  }
  mkdir("build", 0755);
  write_dataset(path, entries, 800);
  return path;
}

}  // namespace

TEST_CASE("train: the step FLOP count agrees with the reference's 274 MFLOP per token at the published length") {
  const IFlameConfig shapenet = IFlameConfig::preset("shapenet");
  const double per_token = training_step_flops(shapenet, 1, 6921) / 6921;
  MESSAGE("published model, T = 6921: " << per_token / 1e6 << " MFLOP per token (docs/spec.md section 6: about 274)");
  CHECK(per_token > 0.9 * 274e6);
  CHECK(per_token < 1.1 * 274e6);
  // Linear in the batch; more than linear in the length (causal attention).
  CHECK(training_step_flops(shapenet, 8, 6921) == doctest::Approx(8 * training_step_flops(shapenet, 1, 6921)));
  CHECK(training_step_flops(shapenet, 1, 6921) > 2 * training_step_flops(shapenet, 1, 3456));
  // A length that is not a multiple of 9 costs what its padded length costs.
  CHECK(training_step_flops(shapenet, 1, 100) == training_step_flops(shapenet, 1, 108));
}

TEST_CASE("train: a CPU step estimated at minutes is refused at once, with the estimate, a configuration that fits and --force") {
  // 64 meshes of 722 faces (6516 tokens) for the tiny model at batch 64: 3.7 TFLOP
  // a step, most of it in the plain-loop products and attention: minutes on any CPU.
  TrainConfig c = tiny_cpu_config(repeated_dataset("build/test_train_long.npy", grid_mesh(20), 64),
                                  "build/test_runs", "too_slow", 10, 64, 0, 1);
  Trainer t(c);
  const auto start = Clock::now();
  const std::string message = error_of([&] { t.run(); });
  const double took = seconds_since(start);
  MESSAGE(message);
  MESSAGE("refused after " << took << " s; estimate " << t.step_estimate().seconds << " s per step");
  CHECK(contains(message, "one training step of 64 x 6516 tokens would take about"));
  CHECK(contains(message, "--model tiny --max-faces 100"));
  CHECK(contains(message, "--force"));
  CHECK(contains(message, "GPU"));
  CHECK(!contains(message, ".cpp:"));  // meant for users: no source location
  CHECK(t.step_estimate().seconds > kMaxStepSeconds);
  CHECK(took < kMaxStepSeconds);  // stopped before a single step's worth of time
  CHECK(t.step() == 0);

  // --force skips the estimate and goes to the loop (stopped there before any step).
  const char* argv[] = {"train", "data.npy", "--force"};
  bool help = false;
  CHECK(parse_train_args(3, const_cast<char**>(argv), help).force);
  c.force = true;
  c.name = "too_slow_forced";
  Trainer forced(c);
  forced.stop_at_step(0);
  CHECK(forced.run() == 0);
  CHECK(forced.step_estimate().batch == 0);  // none made
}

TEST_CASE("train: SIGINT in the middle of a CPU step ends the run within 2 s with the state before that step") {
  // Boxes (12 faces, 126 tokens) for the tiny model, at a batch whose step is
  // estimated at 8 s or more on this machine (the estimate errs on the slow
  // side, up to about 3x), so that a signal 1 s after the run starts (--force:
  // no estimate first) lands inside the first step.
  const Mesh box = box_mesh(0.3f, 0.5f, 0.2f);
  const int64_t length = 14 * kTokensPerFace;
  int batch = 32;
  double step_estimate = 0;
  {
    IFlame probe(IFlameConfig::preset("tiny"), Device::CPU);
    Generator g(1);
    probe.init(g);
    while (batch < 1024 && (step_estimate = estimate_step_time(probe, {}, batch, length).seconds) < 8) batch *= 2;
  }
  TrainConfig c = tiny_cpu_config(repeated_dataset("build/test_train_boxes.npy", box, batch), "build/test_runs",
                                  "sigint_mid_step", 5, batch, 7, 1);
  c.augment = false;
  c.force = true;
  std::vector<float> initial;
  {
    IFlame fresh(IFlameConfig::preset("tiny"), Device::CPU);
    Generator g(c.seed);
    fresh.init(g);
    initial = all_parameters(fresh);
  }
  install_stop_signal_handlers();
  g_stop_requested = false;
  Trainer t(c);
  Clock::time_point signalled;
  std::thread sender([&] {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    signalled = Clock::now();
    kill(getpid(), SIGINT);  // what Ctrl-C does
  });
  const auto start = Clock::now();
  const int rc = t.run();
  const auto returned = Clock::now();
  sender.join();
  g_stop_requested = false;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  const double after_signal = std::chrono::duration<double>(returned - signalled).count();
  MESSAGE("batch " << batch << ": step estimated at " << step_estimate << " s; run() returned "
                   << std::chrono::duration<double>(returned - start).count() << " s after it began, "
                   << after_signal << " s after SIGINT");
  CHECK(rc == 0);
  CHECK(t.step() == 0);  // the step in progress was dropped
  CHECK(after_signal < 2.0);
  CHECK(step_estimate >= 8.0);  // so the signal came inside the step, not after it

  // The checkpoint loads, holds the weights from before the dropped step, and
  // its data position gives the dropped batch back to the resumed run.
  TrainConfig resumed = c;
  resumed.resume = "build/test_runs/sigint_mid_step/last.ckpt";
  Trainer r(resumed);
  CHECK(r.step() == 0);
  CHECK(r.epoch() == 0);
  CHECK(r.batch_in_epoch() == 0);
  CHECK(all_parameters(r.model()) == initial);
}
