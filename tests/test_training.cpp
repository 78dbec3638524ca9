// test_training.cpp: the training loop on the CPU with the tiny model: the loss
// falls on a repeated batch, an interrupted run resumes exactly, non-finite
// steps are skipped and then stop the run, and the schedule has its shape.
#include <cmath>
#include <csignal>
#include <cstdlib>

#include "core/error.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/mesh.h"
#include "nn/iflame.h"
#include "tests/training_fixtures.h"
#include "tests/test_util.h"
#include "training/benchmark.h"
#include "training/schedule.h"
#include "training/trainer.h"

using namespace iflame;
using namespace iflame::test;

namespace {

std::string small_dataset() { return shapes_dataset("build/test_train_shapes.npy"); }

TrainConfig tiny_config(const std::string& name, int64_t steps) {
  return tiny_cpu_config(small_dataset(), "build/test_runs", name, steps, 2, 5, 2);
}

}  // namespace

TEST_CASE("train: the schedule warms up linearly, then follows a cosine to the floor") {
  const int64_t total = 100;
  CHECK(learning_rate(0, total, 1e-3f, 1e-6f, 0.1f) == doctest::Approx(1e-4));
  CHECK(learning_rate(9, total, 1e-3f, 1e-6f, 0.1f) == doctest::Approx(1e-3));
  CHECK(learning_rate(10, total, 1e-3f, 1e-6f, 0.1f) == doctest::Approx(1e-3));
  float mid = learning_rate(10 + 45, total, 1e-3f, 1e-6f, 0.1f);
  CHECK(mid == doctest::Approx(0.5 * (1e-3 + 1e-6)).epsilon(0.02));
  CHECK(learning_rate(99, total, 1e-3f, 1e-6f, 0.1f) == doctest::Approx(1e-6));
  for (int64_t s = 11; s < total; s++)
    CHECK(learning_rate(s, total, 1e-3f, 1e-6f, 0.1f) <= learning_rate(s - 1, total, 1e-3f, 1e-6f, 0.1f));
}

TEST_CASE("train: the loss falls on a repeated batch (tiny model, CPU)") {
  IFlame model(IFlameConfig::preset("tiny"), Device::CPU);
  Generator gen(3);
  model.init(gen);
  OptimizerConfig oc;
  MuonAdamW opt(model.parameters(), oc);
  MeshDataset ds(small_dataset());
  LoaderOptions lo;
  lo.batch_size = 4;
  lo.augment = false;
  lo.threads = 0;
  Batch batch = build_batch(ds, {1, 2, 3, 4}, lo, 0, 0);
  float first = 0, last = 0;
  for (int step = 0; step < 30; step++) {
    model.zero_grad();
    IFlame::LossOutput out = model.loss(batch.tokens, {});
    tape().backward(out.loss);
    float loss = out.loss.value().item();
    if (step == 0) first = loss;
    last = loss;
    opt.step(3e-3f);
  }
  MESSAGE("loss on a repeated batch: " << first << " -> " << last);
  CHECK(first > 4.0f);  // about ln(132) = 4.88 at initialisation
  CHECK(last < 0.5f * first);
}

TEST_CASE("train: an interrupted run resumes exactly (tiny model, CPU)") {
  const int64_t steps = 8;
  std::vector<float> straight, resumed;
  {
    Trainer t(tiny_config("straight", steps));
    CHECK(t.run() == 0);
    CHECK(t.step() == steps);
    straight = all_parameters(t.model());
  }
  {
    Trainer t(tiny_config("interrupted", steps));
    t.stop_at_step(3);  // as if SIGINT arrived after step 3
    CHECK(t.run() == 0);
    CHECK(t.step() == 3);
  }
  {
    TrainConfig c = tiny_config("interrupted", steps);
    c.resume = "build/test_runs/interrupted/last.ckpt";
    Trainer t(c);
    CHECK(t.step() == 3);
    CHECK(t.run() == 0);
    CHECK(t.step() == steps);
    resumed = all_parameters(t.model());
  }
  REQUIRE(straight.size() == resumed.size());
  size_t differ = 0;
  for (size_t i = 0; i < straight.size(); i++) differ += straight[i] != resumed[i];
  CHECK(differ == 0);
  // The run's files are where the docs say.
  for (const char* f : {"build/test_runs/interrupted/final.ckpt", "build/test_runs/interrupted/last.ckpt",
                        "build/test_runs/interrupted/log.jsonl"}) {
    std::FILE* fp = std::fopen(f, "rb");
    CHECK_MESSAGE(fp != nullptr, f);
    if (fp) std::fclose(fp);
  }
}

TEST_CASE("train: a resumed run refuses a different model or seed") {
  TrainConfig c = tiny_config("mismatch", 2);
  {
    Trainer t(c);
    CHECK(t.run() == 0);
  }
  TrainConfig other = tiny_config("mismatch2", 4);
  other.resume = "build/test_runs/mismatch/final.ckpt";
  other.seed = 6;
  CHECK_THROWS_WITH_AS(Trainer{other}, doctest::Contains("--seed"), Error);
}

TEST_CASE("train: non-finite steps are skipped, then the run stops with the last good checkpoint") {
  TrainConfig c = tiny_config("nan", 10);
  c.max_bad_steps = 3;
  Trainer t(c);
  t.model().parameters().find("norm.weight").mutable_value().fill_(NAN);
  CHECK(t.run() == 1);
  CHECK(t.skipped_steps() == 3);
  CHECK(t.step() == 0);
}

TEST_CASE("train: validation reports loss, accuracy and perplexity") {
  Trainer t(tiny_config("val", 1));
  Trainer::ValidationResult v = t.validate();
  CHECK(v.tokens > 0);
  CHECK(v.loss > 3.0);
  CHECK(v.perplexity == doctest::Approx(std::exp(v.loss)));
  CHECK(v.accuracy >= 0.0);
  CHECK(v.accuracy <= 1.0);
}

TEST_CASE("train: bad flags are refused with the flag's name") {
  const char* argv1[] = {"train", "data.npy", "--batch", "zero"};
  bool help = false;
  CHECK_THROWS_WITH_AS(parse_train_args(4, const_cast<char**>(argv1), help), doctest::Contains("--batch"), Error);
  const char* argv2[] = {"train", "data.npy", "--frobnicate"};
  CHECK_THROWS_WITH_AS(parse_train_args(3, const_cast<char**>(argv2), help),
                       doctest::Contains("unknown flag '--frobnicate'"), Error);
  const char* argv3[] = {"train", "--help"};
  parse_train_args(2, const_cast<char**>(argv3), help);
  CHECK(help);
  TrainConfig c = tiny_config("x", 1);
  c.model = "shapenet";
  if (!cuda_available()) CHECK_THROWS_WITH_AS(Trainer{c}, doctest::Contains("--model small"), Error);
}

TEST_CASE("train: SIGINT saves a checkpoint and ends the run with exit code 0") {
  install_stop_signal_handlers();
  {  // the stopped run ends (and releases its run folder) before the resume starts
    Trainer t(tiny_config("signal", 6));
    t.stop_at_step(-1);
    std::raise(SIGINT);  // what Ctrl-C does; the handler only sets a flag
    CHECK(g_stop_requested.load());
    CHECK(t.run() == 0);
    CHECK(t.step() == 0);
  }
  g_stop_requested = false;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  TrainConfig resumed = tiny_config("signal", 6);
  resumed.resume = "build/test_runs/signal/last.ckpt";
  Trainer r(resumed);
  CHECK(r.run() == 0);
  CHECK(r.step() == 6);
}

TEST_CASE("train: without a recorded validation split, --val-fraction holds meshes out") {
  std::vector<DatasetEntry> entries;
  for (int i = 0; i < 40; i++) {
    DatasetEntry e;
    e.name = str("t", i);
    e.split = "train";
    e.triangles = normalized_triangles(tetra_mesh(0.5f + 0.01f * i));
    entries.push_back(e);
  }
  write_dataset("build/test_train_nosplit.npy", entries, 800);
  TrainConfig c = tiny_config("nosplit", 1);
  c.dataset = "build/test_train_nosplit.npy";
  c.val_fraction = 0.25f;
  Trainer t(c);
  Trainer::ValidationResult v = t.validate();
  CHECK(v.tokens > 0);  // some meshes were held out and are evaluated
}

TEST_CASE("train: --bench times whole steps on random tokens without a dataset; --profile every op") {
  const char* argv[] = {"train", "--bench", "--model", "tiny", "--batch", "1", "--bench-length", "45",
                        "--bench-steps", "2", "--device", "cpu", "--quiet", "--profile"};
  bool help = false;
  TrainConfig c = parse_train_args(14, const_cast<char**>(argv), help);
  CHECK(c.bench);
  CHECK(c.profile);
  CHECK(c.dataset.empty());
  TrainBenchmarkResult r = run_train_benchmark(c);
  CHECK(r.mean_step_s > 0);
  CHECK(r.min_step_s <= r.mean_step_s);
  CHECK(r.tokens_per_s == doctest::Approx(45.0 / r.mean_step_s));
  // The timed steps only (not the warm-up): forward, backward, clipping and both optimizers.
  auto calls = [&](const std::string& name) {
    for (const profiler::OpStats& row : r.profile)
      if (row.name == name) return row.calls;
    return int64_t(0);
  };
  CHECK(calls("embedding_forward") == 2);
  CHECK(calls("cross_entropy_backward") == 2);
  CHECK(calls("clip_grad_norm") == 2);
  CHECK(calls("linear_forward") > 0);
  CHECK(calls("linear_backward") == calls("linear_forward"));
  // Muon in groups of one shape, at most 64 each: tiny's 169 Muon weights are
  // 1 of [64, 132], 96 of [64, 64] and 72 of [64, 170] (up to transposition):
  // 1 + 2 + 2 groups per step.
  CHECK(calls("muon_update_group") == 2 * 5);
  CHECK(calls("muon_update") == 0);
  CHECK(calls("adamw_update") > 0);
  double ms = 0;
  for (const profiler::OpStats& row : r.profile) ms += row.ms;
  CHECK(ms > 0);
  CHECK(ms <= 2 * 1e3 * r.mean_step_s * 1.001);  // the ops fit in the steps' time
  CHECK_FALSE(profiler::enabled());
  const char* bad[] = {"train", "--profile", "data.npy"};
  CHECK_THROWS_AS(parse_train_args(3, const_cast<char**>(bad), help), Error);  // --profile needs --bench
}

TEST_CASE("train: --bench-kernels times the attention kernels without a dataset") {
  const char* argv[] = {"train", "--bench-kernels", "--bench-length", "300", "--bench-steps", "3", "--quiet"};
  bool help = false;
  TrainConfig c = parse_train_args(7, const_cast<char**>(argv), help);
  CHECK(c.bench_kernels);
  CHECK(c.dataset.empty());
  if (!cuda_available()) {
    CHECK(contains(error_of([&] { run_attention_benchmark(c); }), "needs a GPU"));
    return;
  }
  AttentionBenchmarkResult r = run_attention_benchmark(c);
  CHECK(r.forward_ms > 0);
  CHECK(r.forward_backward_ms > r.forward_ms);
  CHECK(r.total_tflops > 0);
  CHECK(r.linear_forward_ms > 0);
  CHECK(r.linear_forward_backward_ms > r.linear_forward_ms);
  CHECK(r.linear_total_gbps > 0);
}

TEST_CASE("train: --bench-kernels times the optimizer step alone, each Muon group with and without Newton-Schulz") {
  const char* argv[] = {"train", "--bench-kernels", "--model", "tiny", "--bench-steps", "3", "--quiet"};
  bool help = false;
  TrainConfig c = parse_train_args(7, const_cast<char**>(argv), help);
  if (!cuda_available()) {
    CHECK(contains(error_of([&] { run_optimizer_benchmark(c); }), "needs a GPU"));
    return;
  }
  OptimizerBenchmarkResult r = run_optimizer_benchmark(c);
  // tiny's 169 Muon weights: 1 of [64, 132], 96 of [64, 64], 72 of [64, 170] up to transposition.
  REQUIRE(r.groups.size() == 3);
  int members = 0;
  double muon_ms = 0;
  for (const OptimizerBenchmarkResult::Group& g : r.groups) {
    CHECK(g.rows == 64);
    CHECK(g.ms > 0);
    CHECK(g.no_ns_ms > 0);
    CHECK(g.ns_flops == doctest::Approx(g.count * 5 * (4.0 * 64 * 64 * g.cols + 2.0 * 64 * 64 * 64)));
    members += g.count;
    muon_ms += g.ms;
  }
  CHECK(members == 169);
  CHECK(r.muon_ms == doctest::Approx(muon_ms));
  CHECK(r.step_ms > 0);
}
