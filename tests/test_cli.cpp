// test_cli.cpp: the programs' command lines (core/flags.h): checked numbers
// that never wrap, the same wording and exit status 2 for bad usage in every
// program and 1 for runtime failures, the shared --precision vocabulary and its
// default, and outputs that never mix with earlier ones or replace an input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/flags.h"
#include "core/paths.h"
#include "data/dataset.h"
#include "data/mesh.h"
#include "infer/sample_cli.h"
#include "nn/checkpoint.h"
#include "tests/cli_fixtures.h"
#include "tests/test_util.h"
#include "tests/training_fixtures.h"
#include "tools/dataset_builder_cli.h"
#include "tools/evaluate_cli.h"
#include "tools/render_cli.h"
#include "training/train_config.h"

using namespace iflame;
using namespace iflame::test;
namespace fs = std::filesystem;

namespace {

ProgramRun sample(const std::vector<std::string>& args) { return run_program_main(infer::sample_main, "sample", args); }
ProgramRun evaluate(const std::vector<std::string>& args) { return run_program_main(evaluate_main, "evaluate", args); }
ProgramRun render(const std::vector<std::string>& args) { return run_program_main(render_main, "render", args); }
ProgramRun build(const std::vector<std::string>& args) {
  return run_program_main([](int argc, char** argv) { return build_dataset_main(argc, argv, nullptr); },
                          "build_dataset", args);
}

TrainConfig parse_train(std::vector<std::string> args) {
  args.insert(args.begin(), "train");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  bool help = false;
  return parse_train_args(static_cast<int>(argv.size()), argv.data(), help);
}

std::string tiny_checkpoint_file(const std::string& dir) {
  const std::string path = dir + "/tiny.ckpt";
  save_checkpoint(path, tiny_model_checkpoint());
  return path;
}

}  // namespace

TEST_CASE("flags: integers are whole, in range, and never wrap when narrowed") {
  CHECK(flag_integer("--n", "42", 0, 100) == 42);
  CHECK(flag_integer("--n", "-3", -5, 5) == -3);
  for (const char* bad : {"", "4x", "x4", " 4", "4 ", "1e3", "0x10", "--"})
    CHECK(contains(error_of([&] { flag_integer("--n", bad, 0, 1000000); }), "is not an integer"));
  // strtoll saturates at INT64_MAX with ERANGE; that is out of range, not INT64_MAX.
  CHECK(contains(error_of([&] { flag_integer("--steps", "99999999999999999999", 0, INT64_MAX); }),
                 "--steps: 99999999999999999999 is outside [0, 9223372036854775807]"));
  CHECK_THROWS_AS(flag_integer("--n", "101", 0, 100), UsageError);

  // FlagReader::integer<T> caps the range at T's largest value.
  std::vector<std::string> args = {"p", "--batch", "4294967298", "--n", "4294967295", "--seed", "18446744073709551615"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  FlagReader f("p", static_cast<int>(argv.size()), argv.data());
  REQUIRE(f.next());
  CHECK(contains(error_of([&] { f.integer<int>(1); }), "--batch: 4294967298 is outside [1, 2147483647]"));
  REQUIRE(f.next());
  CHECK_THROWS_AS(f.integer<int>(1), UsageError);
  REQUIRE(f.next());
  CHECK_THROWS_AS(f.integer<uint64_t>(0), UsageError);  // above INT64_MAX
}

TEST_CASE("flags: reals are finite and in range; choices and missing values are named") {
  CHECK(flag_number("--lr", "1e-3", 0, 1) == doctest::Approx(1e-3));
  for (const char* bad : {"nan", "NaN", "inf", "-inf", "1e999", "", "0.5x", " 0.5"})
    CHECK(contains(error_of([&] { flag_number("--lr", bad, 0, 1e9); }), "is not a finite number"));
  CHECK(contains(error_of([&] { flag_number("--val-fraction", "2", 0, 0.999); }), "--val-fraction: 2 is outside"));
  CHECK_THROWS_AS(flag_number("--top-p", "0", 0, 1, true), UsageError);
  CHECK(flag_number("--top-p", "1", 0, 1, true) == 1.0);

  std::vector<std::string> args = {"p", "--format", "png", "--out"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  FlagReader f("p", static_cast<int>(argv.size()), argv.data());
  REQUIRE(f.next());
  CHECK(error_of([&] { f.choice({"obj", "ply"}); }) == "--format: expected obj or ply, got 'png'");
  REQUIRE(f.next());
  CHECK(error_of([&] { f.text(); }) == "--out needs a value (see --help)");
}

TEST_CASE("flags: run_program gives 2 for bad usage, 1 for other errors, and no source locations") {
  ProgramRun r = run_program_main(
      [](int, char**) { return run_program("prog", [] () -> int { throw UsageError("--x: bad"); }); }, "prog", {});
  CHECK(r.status == 2);
  CHECK(r.err == "prog: --x: bad\n");
  r = run_program_main(
      [](int, char**) { return run_program("prog", [] () -> int { IFLAME_REJECT("no such file: a.npy"); }); }, "prog",
      {});
  CHECK(r.status == 1);
  CHECK(r.err == "prog: error: no such file: a.npy\n");
}

TEST_CASE("flags: every program says 'unknown flag' the same way and exits 2") {
  const std::string unknown = "unknown flag '--bogus' (see --help)";
  CHECK(contains(error_of([] { parse_train({"d.npy", "--bogus"}); }), unknown));
  for (ProgramRun r : {sample({"--bogus"}), evaluate({"x", "--bogus"}), render({"x", "--bogus"}),
                       build({"-o", "x.npy", "--bogus"})}) {
    CHECK(r.status == 2);
    CHECK(contains(r.err, unknown));
  }
  for (ProgramRun r : {sample({"--help"}), evaluate({"--help"}), render({"--help"}), build({"--help"})})
    CHECK(r.status == 0);
}

TEST_CASE("flags: integer flags of every program refuse values that used to wrap") {
  // ./train: --batch 4294967298 trained at batch 2, --steps 99999999999999999999 at lr 1e-20,
  // --max-faces 4294967295 meant no limit.
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"d.npy", "--batch", "4294967298"}, {"d.npy", "--steps", "99999999999999999999"},
           {"d.npy", "--max-faces", "4294967295"}, {"d.npy", "--lr", "nan"}, {"d.npy", "--val-fraction", "1"},
           {"d.npy", "--precision", "f16"}, {"d.npy", "--recompute", "ffn:x"}, {"d.npy", "--model", "huge"}})
    CHECK_THROWS_AS(parse_train(bad), UsageError);
  CHECK(parse_train({"d.npy", "--batch", "3"}).batch_size == 3);
  CHECK(sample({"--ckpt", "x", "-n", "4294967297"}).status == 2);
  CHECK(sample({"--ckpt", "x", "--top-p", "nan"}).status == 2);
  CHECK(evaluate({"x", "--points", "4294967298"}).status == 2);
  CHECK(render({"x", "--max", "4294967297"}).status == 2);
  // build_dataset read these with atoi/atof and took all of them.
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--val-fraction", "2"}, {"--val-fraction", "nan"}, {"--max-faces", "-1"}, {"--threads", "-3"},
           {"--max-faces", "4294967295"}}) {
    std::vector<std::string> args = {"-o", "build/test_cli/never.npy", "x.obj"};
    args.insert(args.end(), bad.begin(), bad.end());
    ProgramRun r = build(args);
    CHECK_MESSAGE(r.status == 2, bad[0], " ", bad[1], ": ", r.err);
  }
  CHECK_FALSE(fs::exists("build/test_cli/never.npy"));
}

TEST_CASE("flags: --precision is one vocabulary with one default (bf16 on the GPU, f32 on the CPU)") {
  // The default both programs resolve, checked without a GPU.
  CHECK(precision_matmul("", Device::CUDA) == DType::BF16);
  CHECK(precision_matmul("", Device::CPU) == DType::F32);
  CHECK(precision_matmul("f32", Device::CUDA) == DType::F32);
  CHECK(precision_matmul("bf16-matmul", Device::CPU) == DType::BF16);
  TrainConfig c = parse_train({"d.npy"});
  CHECK(c.resolved_matmul(Device::CUDA) == DType::BF16);
  CHECK(c.resolved_matmul(Device::CPU) == DType::F32);
  CHECK(parse_train({"d.npy", "--precision", "f32"}).resolved_matmul(Device::CUDA) == DType::F32);
  // ./sample takes the same words and applies the same default (here on the CPU: f32).
  ProgramRun r = sample({"--bench", "--model", "tiny", "--tokens", "14", "--device", "cpu"});
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "cpu, f32 matmuls"));
  r = sample({"--bench", "--model", "tiny", "--tokens", "14", "--device", "cpu", "--precision", "bf16-matmul"});
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "cpu, bf16 matmuls"));
  CHECK(sample({"--bench", "--precision", "fp16"}).err == "sample: --precision: expected bf16, bf16-matmul or f32, got 'fp16'\n");
}

TEST_CASE("sample: --out refuses a folder holding earlier samples unless --overwrite, which clears them first") {
  const std::string dir = fresh_dir("build/test_cli/sample_out");
  const std::string ckpt = tiny_checkpoint_file(dir);
  const std::string out = dir + "/mix";
  const std::vector<std::string> common = {"--ckpt", ckpt, "--max-faces", "4", "--device", "cpu", "--out", out};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), common.begin(), common.end());
    return more;
  };
  REQUIRE(sample(with({"-n", "3"})).status == 0);
  auto files = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(out)) n += e.path().filename().string().rfind("sample_", 0) == 0;
    return n;
  };
  auto records = [&] {
    const std::string s = read_text(out + "/samples.jsonl");
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  };
  CHECK(files() == 3);
  CHECK(records() == 3);
  // The reproduction: a second run with -n 1 into the same folder.
  ProgramRun r = sample(with({"-n", "1", "--seed", "7"}));
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--out " + out + " already holds 4 files of an earlier ./sample run"));
  CHECK(contains(r.err, "--overwrite"));
  CHECK(files() == 3);
  CHECK(records() == 3);
  // --overwrite: only this run's files remain; files that are not samples stay.
  write_text(out + "/notes.txt", "mine");
  REQUIRE(sample(with({"-n", "1", "--seed", "7", "--overwrite"})).status == 0);
  CHECK(files() == 1);
  CHECK(records() == 1);
  CHECK(read_text(out + "/notes.txt") == "mine");
}

TEST_CASE("sample: a checkpoint that does not load creates no --out folder") {
  const std::string dir = fresh_dir("build/test_cli/sample_bad_ckpt");
  write_text(dir + "/bad.ckpt", "IFLAMECK" + random_bytes(4000, 3));
  ProgramRun r = sample({"--ckpt", dir + "/bad.ckpt", "--out", dir + "/out", "--device", "cpu"});
  CHECK(r.status == 1);
  CHECK(contains(r.err, "corrupt checkpoint"));
  CHECK_FALSE(fs::exists(dir + "/out"));
  r = sample({"--ckpt", dir + "/missing.ckpt", "--out", dir + "/out", "--device", "cpu"});
  CHECK(r.status == 1);
  CHECK(r.err == "sample: error: no such file: " + dir + "/missing.ckpt (--ckpt)\n");
  CHECK_FALSE(fs::exists(dir + "/out"));
}

TEST_CASE("outputs: no program writes over one of its inputs") {
  const std::string dir = fresh_dir("build/test_cli/over_input");
  Mesh box = box_mesh(0.5f, 0.4f, 0.3f);
  const std::string obj = dir + "/X.obj";
  write_obj(obj, box);
  const std::string before = read_text(obj);
  // ./render X.obj -o X.obj replaced the mesh with a PNG.
  ProgramRun r = render({obj, "-o", obj});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "-o " + obj + " is also an input"));
  CHECK(read_text(obj) == before);
  // build_dataset -o X.obj X.obj replaced it with an .npy.
  r = build({"-o", obj, obj, "--quiet"});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "is also an input"));
  CHECK(read_text(obj) == before);
  // ./evaluate --json onto a generated mesh.
  fs::create_directories(dir + "/gen");
  write_obj(dir + "/gen/a.obj", box);
  r = evaluate({dir + "/gen", "--reference-folder", dir + "/gen", "--json", dir + "/gen/a.obj", "--device", "cpu"});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--json"));
  // ./sample --png onto its checkpoint.
  const std::string ckpt = tiny_checkpoint_file(dir);
  const std::string ckpt_before = read_text(ckpt);
  r = sample({"--ckpt", ckpt, "--png", ckpt, "--out", dir + "/s", "--device", "cpu"});
  CHECK(r.status == 2);
  CHECK(read_text(ckpt) == ckpt_before);
  CHECK_FALSE(same_file(dir + "/gen/a.obj", dir + "/X.obj"));
  CHECK(same_file(dir + "/gen/a.obj", dir + "/gen/../gen/a.obj"));
}

TEST_CASE("evaluate: files without a ./sample record are unknown, not closed; one source of references") {
  const std::string dir = fresh_dir("build/test_cli/eval_unknown");
  fs::create_directories(dir + "/mix");
  for (int i = 0; i < 3; i++) write_obj(str(dir, "/mix/sample_000", i, ".obj"), box_mesh(0.5f, 0.3f + 0.1f * i, 0.4f));
  // One record, of a sample that did not close: 0 of 1 closed, 2 unknown (was 0.667).
  write_text(dir + "/mix/samples.jsonl",
             "{\"file\": \"sample_0000.obj\", \"faces\": 12, \"status\": \"truncated\", \"ended\": false, "
             "\"dropped_incomplete\": 0, \"dropped_invalid\": 0, \"dropped_degenerate\": 0, \"dropped_duplicate\": 0}\n");
  ProgramRun r = evaluate({dir + "/mix", "--reference-folder", dir + "/mix", "--device", "cpu", "--points", "64"});
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, " 0.0000   (of 1 files with a ./sample record; 2 without one: unknown)"));
  // --reference-folder used to win silently over --dataset.
  r = evaluate({dir + "/mix", "--reference-folder", dir + "/mix", "--dataset", dir + "/d.npy"});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--dataset and --reference-folder"));
}

TEST_CASE("build_dataset: exits 1 and writes nothing when it keeps no mesh; -o DIR leaves no .tmp") {
  const std::string dir = fresh_dir("build/test_cli/builder");
  write_text(dir + "/garbage.obj", random_bytes(20000, 9));
  write_text(dir + "/empty.obj", "# nothing\n");
  ProgramRun r = build({"-o", dir + "/out.npy", dir + "/garbage.obj", dir + "/empty.obj", "--quiet"});
  CHECK(r.status == 1);
  CHECK(contains(r.err, "not an OBJ file"));
  CHECK(contains(r.err, "no mesh of the 2 inputs was kept, so nothing was written"));
  CHECK(printable(r.err));
  CHECK_FALSE(fs::exists(dir + "/out.npy"));
  CHECK_FALSE(fs::exists(dir + "/out.npy.tmp"));
  // -o naming a folder.
  write_obj(dir + "/box.obj", box_mesh(0.5f, 0.4f, 0.3f));
  fs::create_directories(dir + "/outdir");
  r = build({"-o", dir + "/outdir", dir + "/box.obj", "--quiet"});
  CHECK(r.status == 1);
  CHECK(contains(r.err, "is a directory"));
  for (const auto& e : fs::directory_iterator(dir)) CHECK_MESSAGE(e.path().extension() != ".tmp", e.path());
  CHECK_THROWS_WITH_AS(write_dataset(dir + "/outdir", {}, 800), doctest::Contains("is a directory"), InputError);
  for (const auto& e : fs::directory_iterator(dir)) CHECK_MESSAGE(e.path().extension() != ".tmp", e.path());
  // A binary --list: a message with the byte in hex, never the raw bytes as file names.
  write_text(dir + "/list.bin", "mesh.obj\n" + random_bytes(3000, 4));
  r = build({"-o", dir + "/out.npy", "--list", dir + "/list.bin", "--quiet"});
  CHECK(r.status == 1);
  CHECK(contains(r.err, "not a text list of mesh files"));
  CHECK(printable(r.err));
  // And the good case still works (a box has 12 faces: under the default --min-faces 20).
  r = build({"-o", dir + "/ok.npy", dir + "/box.obj", "--quiet", "--no-simplify", "--min-faces", "12"});
  CHECK(r.status == 0);
  CHECK(MeshDataset(dir + "/ok.npy").size() == 1);
}
