// test_run_folder.cpp: a training run never overwrites or mixes with another
// (training/run_folder.h): the same command twice, two runs at once, and a
// resume after a killed save (no duplicate log rows, no stale .tmp files).
#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/flags.h"
#include "nn/checkpoint.h"
#include "tests/cli_fixtures.h"
#include "tests/test_util.h"
#include "tests/training_fixtures.h"
#include "training/run_folder.h"
#include "training/trainer.h"

using namespace iflame;
using namespace iflame::test;
namespace fs = std::filesystem;

namespace {

std::string dataset() { return shapes_dataset("build/test_run_folder_shapes.npy"); }

TrainConfig config(const std::string& out, const std::string& name, int64_t steps) {
  TrainConfig c = tiny_cpu_config(dataset(), out, name, steps, 2, 5, 0);
  c.log_interval = 1;
  return c;
}

int64_t saved_step(const std::string& ckpt) { return load_checkpoint(ckpt).meta_integer("train.step", ckpt); }

// The steps of the training rows of a log (rows with a "loss" and an "epoch").
std::vector<int64_t> training_rows(const std::string& log) {
  std::vector<int64_t> steps;
  std::istringstream in(read_text(log));
  for (std::string line; std::getline(in, line);)
    if (contains(line, "\"epoch\"")) steps.push_back(log_row_step(line));
  return steps;
}

}  // namespace

TEST_CASE("run folder: the same ./train command twice refuses the second, and the first run is intact") {
  const std::string out = fresh_dir("build/test_run_folder/twice");
  TrainConfig first = config(out, "r", 4);
  first.ckpt_interval = 2;
  {
    Trainer t(first);
    REQUIRE(t.run() == 0);
  }
  REQUIRE(saved_step(out + "/r/last.ckpt") == 4);
  const std::string log_before = read_text(out + "/r/log.jsonl");
  TrainConfig second = config(out, "r", 1);
  const std::string e = error_of([&] { Trainer t(second); });
  CHECK(e == "run folder " + out + "/r already holds a run; continue it with --resume " + out +
                 "/r/last.ckpt, or choose another --name (nothing was written)");
  CHECK_THROWS_AS(Trainer{second}, UsageError);  // exit status 2 in ./train
  CHECK(saved_step(out + "/r/last.ckpt") == 4);
  CHECK(saved_step(out + "/r/final.ckpt") == 4);
  CHECK(read_text(out + "/r/log.jsonl") == log_before);
}

TEST_CASE("run folder: with the default name a second run takes <name>-2 and says so") {
  const std::string out = fresh_dir("build/test_run_folder/default_name");
  std::string first_dir, second_dir;
  for (std::string* dir : {&first_dir, &second_dir}) {
    Trainer t(config(out, "", 1));
    REQUIRE(t.run() == 0);
    *dir = fs::path(t.last_checkpoint()).parent_path().string();
  }
  CHECK(first_dir == out + "/test_run_folder_shapes-tiny");
  CHECK(second_dir == out + "/test_run_folder_shapes-tiny-2");
  CHECK(training_rows(first_dir + "/log.jsonl") == std::vector<int64_t>{1});
  CHECK(training_rows(second_dir + "/log.jsonl") == std::vector<int64_t>{1});
}

TEST_CASE("run folder: two live runs never share a folder (lock file)") {
  const std::string out = fresh_dir("build/test_run_folder/two_at_once");
  RunFolder live(out + "/r", false, false);  // a ./train running now
  CHECK(fs::exists(out + "/r/.lock"));
  std::string e = error_of([&] { RunFolder other(out + "/r", false, false); });
  CHECK(contains(e, "run folder " + out + "/r is in use by process "));
  // Not even --resume may enter it while the other run lives.
  CHECK(contains(error_of([&] { RunFolder other(out + "/r", false, true); }), "is in use"));
  e = error_of([&] { Trainer t(config(out, "r", 1)); });
  CHECK(contains(e, "is in use"));
  // With the default name the second run moves on to a free folder.
  RunFolder moved(out + "/r", true, false);
  CHECK(moved.path() == out + "/r-2");
  CHECK(moved.renamed());
}

TEST_CASE("run folder: --resume after a killed save drops later log rows and stale .tmp files") {
  const std::string out = fresh_dir("build/test_run_folder/killed");
  TrainConfig c = config(out, "r", 6);
  c.ckpt_interval = 2;
  {
    Trainer t(c);
    t.stop_at_step(4);
    REQUIRE(t.run() == 0);
  }
  REQUIRE(saved_step(out + "/r/last.ckpt") == 4);
  // What a run killed (SIGKILL) during the save of step 6 leaves: rows of steps
  // 5 and 6 in the log, and the half-written checkpoint.
  {
    std::ofstream log(out + "/r/log.jsonl", std::ios::app);
    log << "{\"step\": 5, \"epoch\": 0, \"loss\": 1}\n{\"step\": 6, \"epoch\": 0, \"loss\": 1}\n";
  }
  write_text(out + "/r/step-6.ckpt.tmp", std::string(10000, 'x'));
  write_text(out + "/r/last.ckpt.tmp", std::string(100, 'x'));
  TrainConfig resume = c;
  resume.name = "";  // --resume alone continues in the checkpoint's folder
  resume.resume = out + "/r/last.ckpt";
  {
    Trainer t(resume);
    CHECK(t.step() == 4);
    CHECK_FALSE(fs::exists(out + "/r/step-6.ckpt.tmp"));
    CHECK_FALSE(fs::exists(out + "/r/last.ckpt.tmp"));
    REQUIRE(t.run() == 0);
    CHECK(t.last_checkpoint() == out + "/r/last.ckpt");
  }
  CHECK(training_rows(out + "/r/log.jsonl") == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  CHECK(saved_step(out + "/r/final.ckpt") == 6);
  for (const auto& e : fs::directory_iterator(out + "/r")) CHECK_MESSAGE(e.path().extension() != ".tmp", e.path());
}

TEST_CASE("run folder: log rows are cut by their step") {
  CHECK(log_row_step("{\"step\": 12, \"loss\": 1}") == 12);
  CHECK(log_row_step("{\"step\":7}") == 7);
  CHECK(log_row_step("{\"loss\": 1}") == -1);
  CHECK(log_row_step("{\"step\": \"x\"}") == -1);
}
