// test_bad_input.cpp: readers never take garbage and say plainly what is
// wrong: random bytes named .obj/.off, a folder or a missing path where a file
// is expected, a dataset truncated in place while it is mapped, checkpoints that
// pass their CRC but lie (huge sizes, NaN weights, text where a number belongs).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/npy.h"
#include "data/dataset.h"
#include "data/mesh.h"
#include "infer/sample_cli.h"
#include "nn/checkpoint.h"
#include "nn/state.h"
#include "tests/cli_fixtures.h"
#include "tests/test_util.h"
#include "tests/training_fixtures.h"
#include "training/trainer.h"

using namespace iflame;
using namespace iflame::test;
namespace fs = std::filesystem;

namespace {

// A user-facing message: no "file.cpp:123:" of the code that raised it.
bool has_source_location(const std::string& message) {
  return contains(message, ".cpp:") || contains(message, ".h:");
}

}  // namespace

TEST_CASE("readers: random bytes named .obj or .off are 'not an OBJ/OFF file', shown in hex") {
  const std::string dir = fresh_dir("build/test_bad_input/garbage");
  const std::string bytes = random_bytes(20000, 5);
  write_text(dir + "/x.obj", bytes);
  write_text(dir + "/x.off", "OFF\n" + bytes);
  std::string e = error_of([&] { read_mesh(dir + "/x.obj"); });
  CHECK(contains(e, dir + "/x.obj: not an OBJ file (a text format), but byte 0x"));
  CHECK(printable(e));
  CHECK_FALSE(has_source_location(e));
  e = error_of([&] { read_mesh(dir + "/x.off"); });
  CHECK(contains(e, "not an OFF file"));
  CHECK(printable(e));
  // Text files still read: an OBJ with comments only is an empty mesh (./sample writes those).
  write_text(dir + "/empty.obj", "# iflame.cpp: 0 vertices, 0 triangles\n");
  CHECK(read_mesh(dir + "/empty.obj").faces.empty());
  write_text(dir + "/utf8.obj", "# caf\xc3\xa9\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n");
  CHECK(read_mesh(dir + "/utf8.obj").faces.size() == 1);
}

TEST_CASE("readers: a folder is 'is a directory' and a missing file 'no such file', without source locations") {
  const std::string dir = fresh_dir("build/test_bad_input/paths");
  fs::create_directories(dir + "/folder.obj");
  fs::create_directories(dir + "/folder.npy");
  fs::create_directories(dir + "/folder.ckpt");
  const std::vector<std::pair<std::string, std::function<void()>>> cases = {
      {dir + "/folder.obj", [&] { read_mesh(dir + "/folder.obj"); }},
      {dir + "/folder.npy", [&] { MeshDataset d(dir + "/folder.npy"); }},
      {dir + "/folder.ckpt", [&] { load_model(dir + "/folder.ckpt", Device::CPU); }},
      {dir + "/folder.ckpt", [&] { load_checkpoint(dir + "/folder.ckpt"); }},
  };
  for (const auto& [path, f] : cases) {
    const std::string e = error_of(f);
    CHECK_MESSAGE(contains(e, path + " is a directory"), e);
    CHECK_FALSE(has_source_location(e));
  }
  for (const std::string& missing : {dir + "/none.obj", dir + "/none.npy", dir + "/none.pth"}) {
    std::string e = error_of([&] {
      if (contains(missing, ".obj")) read_mesh(missing);
      else if (contains(missing, ".npy")) MeshDataset d(missing);
      else load_model(missing, Device::CPU);  // was "neither an iflame checkpoint nor a PyTorch .pth archive"
    });
    CHECK_MESSAGE(contains(e, "no such file: " + missing), e);
    CHECK_FALSE(has_source_location(e));
  }
}

TEST_CASE("dataset: a file truncated in place while mapped stops with a message naming it, not a bare SIGBUS") {
  const std::string dir = fresh_dir("build/test_bad_input/shrinking");
  const std::string path = dir + "/d.npy";
  std::vector<DatasetEntry> entries;
  for (int i = 0; i < 200; i++) {
    DatasetEntry e;
    e.name = str("m", i);
    e.triangles = normalized_triangles(box_mesh(0.2f + 0.001f * i, 0.5f, 0.3f));
    entries.push_back(e);
  }
  write_dataset(path, entries, 800);
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the child maps the dataset, then the file shrinks under it
    ::dup2(pipe_fds[1], 2);
    float sum = 0;
    try {
      MeshDataset ds(path);
      fs::resize_file(path, 256);  // as another program rewriting it in place would
      for (int64_t i = 0; i < ds.size(); i++) sum += ds.triangles(i)[0][0];
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(sum == 12345.f ? 4 : 0);  // reaching here means the read did not fault
  }
  ::close(pipe_fds[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE_MESSAGE(WIFEXITED(status), "the child died of signal ", WTERMSIG(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(err == "error: dataset " + path +
                   " became shorter while it was being read (truncated or rewritten in place?); stopping\n");
}

TEST_CASE("checkpoints: config entries that lie are refused before the model is allocated") {
  const std::string dir = fresh_dir("build/test_bad_input/lying_ckpt");
  CheckpointData ck = tiny_model_checkpoint();
  save_checkpoint(dir + "/ok.ckpt", ck);
  CHECK(load_model(dir + "/ok.ckpt", Device::CPU)->config().dim == 64);
  // blocks_per_stage 100000 (the CRC is right: save_checkpoint computes it) made ./sample
  // allocate without bound; now the tensor table refutes it first.
  CheckpointData huge = tiny_model_checkpoint();
  set_meta(huge, "model.blocks_per_stage", "100000");
  save_checkpoint(dir + "/huge.ckpt", huge);
  std::string e = error_of([&] { load_model(dir + "/huge.ckpt", Device::CPU); });
  CHECK(contains(e, "model.blocks_per_stage 100000 disagrees with the 4 blocks of the first stage"));
  CheckpointData wide = tiny_model_checkpoint();
  set_meta(wide, "model.dim", "1048576");
  set_meta(wide, "model.heads", "32768");
  save_checkpoint(dir + "/wide.ckpt", wide);
  CHECK(contains(error_of([&] { load_model(dir + "/wide.ckpt", Device::CPU); }), "model.dim 1048576"));
  CheckpointData text = tiny_model_checkpoint();
  set_meta(text, "model.dim", "64abc");
  save_checkpoint(dir + "/text.ckpt", text);
  CHECK(contains(error_of([&] { load_model(dir + "/text.ckpt", Device::CPU); }),
                 "checkpoint entry 'model.dim' = '64abc' is not an integer"));
}

TEST_CASE("checkpoints: NaN weights are reported, not sampled into empty meshes") {
  const std::string dir = fresh_dir("build/test_bad_input/nan_ckpt");
  CheckpointData ck = tiny_model_checkpoint();
  for (auto& nt : ck.tensors)
    if (nt.first == "param/norm.weight") nt.second.fill_(NAN);
  save_checkpoint(dir + "/nan.ckpt", ck);
  const std::string e = error_of([&] { load_model(dir + "/nan.ckpt", Device::CPU); });
  CHECK(contains(e, "parameter 'norm.weight' holds 64 non-finite values (NaN or inf) of 64"));
  ProgramRun r = run_program_main(infer::sample_main, "sample",
                                  {"--ckpt", dir + "/nan.ckpt", "--out", dir + "/out", "--device", "cpu"});
  CHECK(r.status == 1);
  CHECK_FALSE(fs::exists(dir + "/out"));
}

TEST_CASE("checkpoints: random bytes after the magic are corrupt, not a newer format") {
  const std::string dir = fresh_dir("build/test_bad_input/random_after_magic");
  write_text(dir + "/r.ckpt", "IFLAMECK" + random_bytes(5000, 11));
  const std::string e = error_of([&] { load_checkpoint(dir + "/r.ckpt"); });
  CHECK(contains(e, "corrupt checkpoint: the bytes after the magic are not a checkpoint header"));
  CHECK_FALSE(contains(e, "newer"));
  // A genuinely newer file (it states its own size right) is still told to update.
  std::string newer = read_text((save_checkpoint(dir + "/v.ckpt", tiny_model_checkpoint()), dir + "/v.ckpt"));
  newer[8] = 2;
  write_text(dir + "/v2.ckpt", newer);
  CHECK(contains(error_of([&] { load_checkpoint(dir + "/v2.ckpt"); }), "format version 2 is newer"));
}

TEST_CASE("checkpoints: train.step that is not a number names the entry (was: 'stoll')") {
  const std::string dataset = shapes_dataset("build/test_bad_input_shapes.npy");
  const std::string dir = fresh_dir("build/test_bad_input/bad_step");
  TrainConfig c = tiny_cpu_config(dataset, dir, "run", 1, 2, 5, 0);
  {
    Trainer t(c);
    REQUIRE(t.run() == 0);
  }
  CheckpointData ck = load_checkpoint(dir + "/run/last.ckpt");
  set_meta(ck, "train.step", "abc");
  save_checkpoint(dir + "/run/last.ckpt", ck);
  TrainConfig resume = c;
  resume.resume = dir + "/run/last.ckpt";
  CHECK(error_of([&] { Trainer t(resume); }) ==
        dir + "/run/last.ckpt: checkpoint entry 'train.step' = 'abc' is not an integer in [0, 9223372036854775807]");
}
