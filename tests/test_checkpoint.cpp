// test_checkpoint.cpp: the zip reader, the safe unpickler, PyTorch checkpoint
// import (tiny_checkpoint.pth and small archives built here), the native
// checkpoint format, and a bounded fuzz of both loaders.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/crc32.h"
#include "core/error.h"
#include "core/pickle.h"
#include "core/zip_reader.h"
#include "nn/checkpoint.h"
#include "nn/torch_checkpoint.h"
#include "tests/test_util.h"
#include "training/optimizer.h"

using namespace iflame;
using namespace iflame::test;

namespace {

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
void write_file_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

void put16(std::string& s, uint32_t v) {
  for (int i = 0; i < 2; i++) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; i++) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; i++) s.push_back(char((v >> (8 * i)) & 0xff));
}

// A minimal zip writer: stored entries, optionally with zip64 records the way
// PyTorch writes them (offsets in a zip64 extra field, zip64 end record + locator).
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& files, bool zip64,
                     uint16_t method = 0) {
  std::string out, cd;
  for (const auto& f : files) {
    uint32_t crc = crc32(f.second.data(), f.second.size());
    uint64_t local = out.size();
    put32(out, 0x04034b50);
    put16(out, 20), put16(out, 0), put16(out, method), put16(out, 0), put16(out, 0);
    put32(out, crc), put32(out, uint32_t(f.second.size())), put32(out, uint32_t(f.second.size()));
    put16(out, uint32_t(f.first.size())), put16(out, 0);
    out += f.first + f.second;
    put32(cd, 0x02014b50);
    put16(cd, 45), put16(cd, 45), put16(cd, 0), put16(cd, method), put16(cd, 0), put16(cd, 0);
    put32(cd, crc), put32(cd, uint32_t(f.second.size())), put32(cd, uint32_t(f.second.size()));
    put16(cd, uint32_t(f.first.size())), put16(cd, zip64 ? 12 : 0), put16(cd, 0);
    put16(cd, 0), put16(cd, 0), put32(cd, 0);
    put32(cd, zip64 ? 0xffffffffu : uint32_t(local));
    cd += f.first;
    if (zip64) put16(cd, 1), put16(cd, 8), put64(cd, local);
  }
  uint64_t cd_offset = out.size();
  out += cd;
  if (zip64) {
    uint64_t rec = out.size();
    put32(out, 0x06064b50), put64(out, 44), put16(out, 45), put16(out, 45), put32(out, 0), put32(out, 0);
    put64(out, files.size()), put64(out, files.size()), put64(out, cd.size()), put64(out, cd_offset);
    put32(out, 0x07064b50), put32(out, 0), put64(out, rec), put32(out, 1);
  }
  put32(out, 0x06054b50), put16(out, 0), put16(out, 0);
  put16(out, zip64 ? 0xffff : uint32_t(files.size())), put16(out, zip64 ? 0xffff : uint32_t(files.size()));
  put32(out, uint32_t(cd.size())), put32(out, zip64 ? 0xffffffffu : uint32_t(cd_offset)), put16(out, 0);
  return out;
}

// Emits protocol-2 pickle opcodes.
struct PickleWriter {
  std::string b = "\x80\x02";
  void op(char c) { b += c; }
  void str(const std::string& s) { b += 'X', put32(b, uint32_t(s.size())), b += s; }
  void integer(int32_t v) { b += 'J', put32(b, uint32_t(v)); }
  void real(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    b += 'G';
    for (int i = 7; i >= 0; i--) b.push_back(char((u >> (8 * i)) & 0xff));
  }
  void global(const std::string& module, const std::string& name) { b += "c" + module + "\n" + name + "\n"; }
  void ints(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(int32_t(x));
    op('t');
  }
  // _rebuild_tensor_v2(('storage', <storage>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
  void tensor(const std::string& storage, const std::string& key, int64_t numel, int64_t offset, const Shape& size,
              const Shape& stride) {
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    op('(');
    str("storage"), global("torch", storage), str(key), str("cpu"), integer(int32_t(numel));
    op('t');
    op('Q');
    integer(int32_t(offset)), ints(size), ints(stride);
    op('\x89');
    global("collections", "OrderedDict"), op(')'), op('R');
    op('t');
    op('R');
  }
  std::string done() { return b + "."; }
};

std::string floats_bytes(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

// A small checkpoint in the published layout: prefixes, an OrderedDict with
// _metadata (BUILD), a transposed view, bf16 and f16 storages, Muon + AdamW state.
std::string make_small_torch_checkpoint(bool zip64, const std::string& pickle_override = "") {
  PickleWriter p;
  p.op('}');
  p.op('(');
  p.str("epoch"), p.integer(3);
  p.str("model_state_dict");
  p.global("collections", "OrderedDict"), p.op(')'), p.op('R'), p.op('q'), p.b += char(1);
  p.op('(');
  p.str("_orig_mod.w"), p.tensor("FloatStorage", "0", 6, 0, {2, 3}, {3, 1});
  p.str("module._orig_mod.wt"), p.tensor("FloatStorage", "0", 6, 0, {3, 2}, {1, 3});
  p.str("_orig_mod.b"), p.tensor("BFloat16Storage", "1", 4, 1, {3}, {1});
  p.str("h"), p.tensor("HalfStorage", "2", 3, 0, {3}, {1});
  p.op('u');
  p.op('}'), p.str("_metadata"), p.op('}'), p.op('s'), p.op('b');  // state_dict._metadata, dropped
  p.str("optimizer_state_dict"), p.op('}'), p.op('(');
  p.str("state"), p.op('}'), p.op('(');
  p.integer(0), p.op('}'), p.op('('), p.str("use_muon"), p.op('\x88'), p.str("momentum_buffer"),
      p.tensor("FloatStorage", "3", 6, 0, {2, 3}, {3, 1}), p.op('u');
  p.integer(1), p.op('}'), p.op('('), p.str("use_muon"), p.op('\x89'), p.str("step"), p.integer(7),
      p.str("moment1"), p.tensor("FloatStorage", "3", 6, 3, {3}, {1}), p.str("moment2"),
      p.tensor("FloatStorage", "3", 6, 0, {3}, {2}), p.op('u');
  p.op('u');
  p.str("param_groups"), p.op(']'), p.op('}'), p.op('(');
  p.str("lr"), p.real(0.02), p.str("nesterov"), p.op('\x88'), p.str("adamw_betas"), p.real(0.9), p.real(0.95),
      p.op('\x86'), p.str("foreach"), p.op('N'), p.str("params"), p.op(']'), p.op('('), p.integer(0),
      p.integer(1), p.op('e');
  p.op('u'), p.op('a');
  p.op('u');
  p.str("loss"), p.real(1.5);
  p.str("data_iter_step"), p.integer(70000);
  p.op('u');
  std::string pkl = pickle_override.empty() ? p.done() : pickle_override;

  std::string bf;  // bf16 storage: 4 values, the tensor starts at element 1
  for (float f : {9.0f, 1.0f, -2.5f, 0.15625f}) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    put16(bf, u >> 16);
  }
  std::string half;  // 1.0, -2.0, 2^-24 (the smallest subnormal)
  put16(half, 0x3c00), put16(half, 0xc000), put16(half, 0x0001);
  return make_zip({{"arch/data.pkl", pkl},
                   {"arch/byteorder", "little"},
                   {"arch/data/0", floats_bytes({0, 1, 2, 3, 4, 5})},
                   {"arch/data/1", bf},
                   {"arch/data/2", half},
                   {"arch/data/3", floats_bytes({10, 11, 12, 13, 14, 15})},
                   {"arch/version", "3\n"}},
                  zip64);
}

TorchCheckpoint load_torch_bytes(const std::string& bytes) {
  return load_torch_checkpoint(std::make_unique<MemorySource>(bytes, "memory.pth"));
}

std::vector<std::pair<std::string, Shape>> read_param_order() {
  std::ifstream in(golden("tiny_param_order.txt"));
  REQUIRE(in.good());
  std::vector<std::pair<std::string, Shape>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t sp = line.find(' '), lb = line.find('['), rb = line.find(']');
    REQUIRE(lb != std::string::npos);
    Shape s;
    std::stringstream dims(line.substr(lb + 1, rb - lb - 1));
    std::string d;
    while (std::getline(dims, d, ',')) s.push_back(std::stoll(d));
    out.emplace_back(line.substr(0, sp), s);
  }
  return out;
}

}  // namespace

TEST_CASE("ckpt: crc32 matches the standard check value, incrementally too") {
  CHECK(crc32("123456789", 9) == 0xCBF43926u);
  CHECK(crc32("", 0) == 0u);
  std::string s(1000, '\0');
  for (size_t i = 0; i < s.size(); i++) s[i] = char(i * 7 + 3);
  uint32_t whole = crc32(s.data(), s.size());
  CHECK(crc32_update(crc32_update(0, s.data(), 13), s.data() + 13, s.size() - 13) == whole);
}

TEST_CASE("ckpt: tiny_checkpoint.pth loads in the published layout") {
  TorchCheckpoint ck = load_torch_checkpoint(golden("tiny_checkpoint.pth"));
  auto order = read_param_order();
  REQUIRE(order.size() == 311);
  REQUIRE(ck.model.size() == 311);
  for (size_t i = 0; i < order.size(); i++) {
    CHECK(ck.model[i].first == order[i].first);
    CHECK(ck.model[i].second.shape() == order[i].second);
    CHECK(ck.model[i].second.dtype() == DType::F32);
  }
  CHECK(ck.model[0].first == "skip_weights2");
  for (float v : ck.model[0].second.to_floats()) CHECK(std::isfinite(v));
  REQUIRE(ck.find_param("embedding.weight"));
  CHECK(ck.find_param("embedding.weight")->shape() == Shape{132, 64});
  // A parameter equals its storage's raw bytes (the key -> zip entry mapping).
  {
    ZipReader zip(golden("tiny_checkpoint.pth"));
    std::string raw = zip.read("tiny_checkpoint/data/1");  // storage '1' is embedding.weight
    REQUIRE(raw.size() == 132 * 64 * 4);
    CHECK(std::memcmp(raw.data(), ck.find_param("embedding.weight")->raw_data(), raw.size()) == 0);
  }
  CHECK(ck.epoch == 1);
  CHECK(ck.data_iter_step == 1);
  CHECK(ck.loss.has_value());

  REQUIRE(ck.has_optimizer);
  REQUIRE(ck.param_groups.size() == 1);
  const TorchParamGroup& g = ck.param_groups[0];
  CHECK(g.hyper.at("lr") == 0.001);
  CHECK(g.hyper.at("wd") == 0.1);
  CHECK(g.hyper.at("momentum") == 0.95);
  CHECK(g.hyper.at("nesterov") == 1);
  CHECK(g.hyper.at("ns_steps") == 5);
  CHECK(g.hyper.at("adamw_betas.0") == 0.95);
  CHECK(g.hyper.at("adamw_betas.1") == 0.95);
  CHECK(g.hyper.at("adamw_eps") == 1e-8);
  REQUIRE(g.params.size() == 311);
  for (int64_t i = 0; i < 311; i++) CHECK(g.params[i] == i);

  std::vector<std::string> names = optimizer_param_order(order);
  REQUIRE(names.size() == 311);
  REQUIRE(ck.optimizer_state.size() == 311);
  for (int64_t i = 0; i < 311; i++) {
    const TorchOptimizerEntry& e = ck.optimizer_state[i];
    CHECK(e.index == i);
    const Shape& shape = ck.find_param(names[i])->shape();
    if (i <= 168) {
      CHECK(e.use_muon);
      CHECK(e.momentum_buffer.shape() == shape);
      CHECK(shape.size() == 2);
    } else {
      CHECK_FALSE(e.use_muon);
      CHECK(e.step == 1);
      CHECK(e.moment1.shape() == shape);
      CHECK(e.moment2.shape() == shape);
      for (float v : e.moment2.to_floats()) CHECK(v >= 0);
    }
  }
}

TEST_CASE("ckpt: optimizer_param_order puts Muon weights first") {
  std::vector<std::pair<std::string, Shape>> params = {{"skip_weights2", {2}},
                                                       {"embedding.weight", {132, 64}},
                                                       {"a.norm1.weight", {64}},
                                                       {"a.q_proj.weight", {64, 64}},
                                                       {"a.proj1.bias", {170}},
                                                       {"output_proj.weight", {132, 64}},
                                                       {"output_proj.bias", {132}}};
  std::vector<std::string> expect = {"embedding.weight", "a.q_proj.weight", "skip_weights2", "a.norm1.weight",
                                     "a.proj1.bias",     "output_proj.weight", "output_proj.bias"};
  CHECK(optimizer_param_order(params) == expect);
  auto tiny = optimizer_param_order(read_param_order());
  CHECK(tiny[0] == "embedding.weight");
  CHECK(tiny[169] == "skip_weights2");
  CHECK(tiny[168] == "decoder_blocks.1.3.feed_forward.proj3.weight");
  CHECK(tiny[310] == "norm.weight");  // the last parameter in state-dict order
}

TEST_CASE("ckpt: a small torch checkpoint built here loads (views, bf16, f16, zip64, optimizer)") {
  for (bool zip64 : {false, true}) {
    CAPTURE(zip64);
    TorchCheckpoint ck = load_torch_bytes(make_small_torch_checkpoint(zip64));
    REQUIRE(ck.model.size() == 4);
    CHECK(ck.model[0].first == "w");
    CHECK(ck.model[0].second.to_floats() == std::vector<float>{0, 1, 2, 3, 4, 5});
    CHECK(ck.model[1].first == "wt");  // module._orig_mod. stripped; transposed view
    CHECK(ck.model[1].second.shape() == Shape{3, 2});
    CHECK(ck.model[1].second.to_floats() == std::vector<float>{0, 3, 1, 4, 2, 5});
    CHECK(ck.model[2].first == "b");  // bf16 storage from offset 1, converted
    CHECK(ck.model[2].second.to_floats() == std::vector<float>{1.0f, -2.5f, 0.15625f});
    CHECK(ck.model[3].second.to_floats() == std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24)});
    CHECK(ck.epoch == 3);
    CHECK(ck.loss == 1.5);
    CHECK(ck.data_iter_step == 70000);
    REQUIRE(ck.optimizer_state.size() == 2);
    CHECK(ck.optimizer_state[0].use_muon);
    CHECK(ck.optimizer_state[0].momentum_buffer.to_floats() == std::vector<float>{10, 11, 12, 13, 14, 15});
    CHECK_FALSE(ck.optimizer_state[1].use_muon);
    CHECK(ck.optimizer_state[1].step == 7);
    CHECK(ck.optimizer_state[1].moment1.to_floats() == std::vector<float>{13, 14, 15});
    CHECK(ck.optimizer_state[1].moment2.to_floats() == std::vector<float>{10, 12, 14});
    REQUIRE(ck.param_groups.size() == 1);
    CHECK(ck.param_groups[0].hyper.at("lr") == 0.02);
    CHECK(ck.param_groups[0].hyper.at("adamw_betas.1") == 0.95);
    CHECK(ck.param_groups[0].hyper.count("foreach") == 0);
    CHECK(ck.param_groups[0].params == std::vector<int64_t>{0, 1});
  }
}

TEST_CASE("ckpt: bad torch checkpoints are refused with the reason") {
  // A pickle naming a forbidden global: refused by name, nothing is called.
  PickleWriter evil;
  evil.global("os", "system"), evil.str("echo pwned"), evil.op('\x85'), evil.op('R');
  std::string zip = make_small_torch_checkpoint(false, evil.done());
  CHECK_THROWS_WITH_AS(load_torch_bytes(zip), doctest::Contains("unsupported pickle global 'os.system'"), Error);
  CHECK_THROWS_WITH_AS(load_torch_bytes(zip), doctest::Contains("memory.pth:arch/data.pkl"), Error);
  // An allowed but non-callable global.
  PickleWriter storage_call;
  storage_call.global("torch", "FloatStorage"), storage_call.op(')'), storage_call.op('R');
  CHECK_THROWS_WITH_AS(unpickle(storage_call.done(), "x"), doctest::Contains("cannot be called"), Error);
  // Malformed pickles.
  CHECK_THROWS_WITH_AS(unpickle("\x80\x02\xff.", "p"), doctest::Contains("unsupported pickle opcode 0xff at offset 2"),
                       Error);
  CHECK_THROWS_WITH_AS(unpickle("\x80\x02t.", "p"), doctest::Contains("no MARK"), Error);
  CHECK_THROWS_WITH_AS(unpickle("\x80\x02\x85.", "p"), doctest::Contains("stack underflow"), Error);
  CHECK_THROWS_WITH_AS(unpickle("\x80\x02(\x85.", "p"), doctest::Contains("stack underflow"), Error);  // below a MARK
  CHECK_THROWS_WITH_AS(unpickle("\x80\x02h\x05.", "p"), doctest::Contains("memo index 5"), Error);
  CHECK_THROWS_WITH_AS(unpickle(std::string("\x80\x02X\xff\x00\x00\x00" "ab.", 10), "p"),
                       doctest::Contains("truncated pickle"), Error);
  CHECK_THROWS_WITH_AS(unpickle("\x80\x02N", "p"), doctest::Contains("no STOP"), Error);
  CHECK(unpickle(std::string("\x80\x02]q\x00h\x00" "a.", 9), "p").root->items.size() == 1);  // a list holding itself is fine
  // A compressed entry names the archive and the entry.
  std::string deflated = make_zip({{"arch/data.pkl", "xx"}}, false, 8);
  CHECK_THROWS_WITH_AS(load_torch_bytes(deflated), doctest::Contains("zip entry 'arch/data.pkl' is compressed"),
                       Error);
  // Not a zip; a truncated zip; a tensor reaching past its storage.
  CHECK_THROWS_WITH_AS(load_torch_bytes("hello"), doctest::Contains("memory.pth: not a zip archive"), Error);
  std::string good = make_small_torch_checkpoint(false);
  CHECK_THROWS_AS(load_torch_bytes(good.substr(0, good.size() - 30)), Error);
  PickleWriter past;
  past.op('}'), past.str("model_state_dict"), past.op('}'), past.str("x");
  past.tensor("FloatStorage", "0", 6, 2, {2, 3}, {3, 1});
  past.op('s'), past.op('s');
  CHECK_THROWS_WITH_AS(load_torch_bytes(make_small_torch_checkpoint(false, past.done())),
                       doctest::Contains("reaches past its storage"), Error);
  CHECK_THROWS_WITH_AS(load_torch_checkpoint("build/no_such_file.pth"), doctest::Contains("cannot open"), Error);
}

TEST_CASE("ckpt: native save then load is bit-exact") {
  CheckpointData d;
  d.meta = {{"config", "d=64\nheads=2\n"}, {"step", "1234"}, {"empty", ""}, {"binary", std::string("a\0b\xff", 4)}};
  Tensor f = random_tensor({5, 7}, 11);
  Tensor b = random_tensor({3, 33}, 12).to(DType::BF16);
  Tensor i = Tensor::from_ints({1, -2, 2147483647, -2147483647 - 1}, {2, 2});
  d.tensors = {{"param/f", f}, {"adamw.m/b", b}, {"i", i}, {"view", f.transpose(0, 1)},
               {"empty", Tensor::zeros({0, 3})}, {"scalar", Tensor::full({}, 3.5f)}};
  if (cuda_available()) d.tensors.push_back({"gpu", f.to(Device::CUDA)});
  const std::string path = "build/test_ckpt_roundtrip.ck";
  std::remove(path.c_str());
  save_checkpoint(path, d);
  CHECK_FALSE(file_exists(path + ".tmp"));
  CHECK(looks_like_native_checkpoint(path));
  CHECK_FALSE(looks_like_torch_checkpoint(path));
  CHECK(looks_like_torch_checkpoint(golden("tiny_checkpoint.pth")));
  CHECK_FALSE(looks_like_native_checkpoint(golden("tiny_checkpoint.pth")));

  CheckpointData back = load_checkpoint(path);
  CHECK(back.meta == d.meta);
  REQUIRE(back.tensors.size() == d.tensors.size());
  for (size_t k = 0; k < d.tensors.size(); k++) {
    const Tensor& a = d.tensors[k].second;
    const Tensor& t = back.tensors[k].second;
    CAPTURE(d.tensors[k].first);
    CHECK(back.tensors[k].first == d.tensors[k].first);
    CHECK(t.dtype() == a.dtype());
    CHECK(t.shape() == a.shape());
    CHECK(t.device() == Device::CPU);
    Tensor ah = a.to(Device::CPU).contiguous();
    CHECK(std::memcmp(ah.raw_data(), t.raw_data(), t.nbytes()) == 0);
  }
  CHECK(back.meta_at("step") == "1234");
  CHECK_THROWS_WITH_AS(back.tensor_at("nope"), doctest::Contains("no tensor 'nope'"), Error);
  // Overwriting an existing checkpoint works the same way.
  d.meta[1].second = "1235";
  save_checkpoint(path, d);
  CHECK(load_checkpoint(path).meta_at("step") == "1235");
  // Invalid input is refused before anything is written.
  CheckpointData dup;
  dup.tensors = {{"a", f}, {"a", f}};
  CHECK_THROWS_WITH_AS(save_checkpoint("build/test_ckpt_dup.ck", dup), doctest::Contains("'a' appears twice"), Error);
  CHECK_FALSE(file_exists("build/test_ckpt_dup.ck.tmp"));
  CHECK_THROWS_WITH_AS(save_checkpoint("build/no_such_dir/x.ck", d), doctest::Contains("cannot create"), Error);
}

TEST_CASE("ckpt: native loading refuses damaged, foreign and newer files") {
  CheckpointData d;
  d.meta = {{"step", "7"}};
  d.tensors = {{"param/w", random_tensor({100}, 3)}};
  const std::string path = "build/test_ckpt_bad.ck";
  save_checkpoint(path, d);
  const std::string good = read_file_bytes(path);

  write_file_bytes(path, good.substr(0, good.size() - 100));
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("test_ckpt_bad.ck: truncated checkpoint"), Error);
  write_file_bytes(path, good.substr(0, 20));
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("truncated checkpoint"), Error);

  std::string flipped = good;
  flipped[good.size() - 50] ^= 0x10;  // inside the tensor data
  write_file_bytes(path, flipped);
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("CRC-32 mismatch"), Error);
  flipped = good;
  flipped[40] ^= 0x01;  // inside the header
  write_file_bytes(path, flipped);
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("CRC-32 mismatch"), Error);

  write_file_bytes(path, "#!/bin/sh\necho this is not a checkpoint\n");
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("not an iflame checkpoint (bad magic)"), Error);
  CHECK_THROWS_WITH_AS(load_checkpoint(golden("tiny_checkpoint.pth")), doctest::Contains("bad magic"), Error);

  std::string newer = good;
  newer[8] = 2;
  write_file_bytes(path, newer);
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("format version 2 is newer"), Error);

  write_file_bytes(path, good + "x");
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("trailing data"), Error);
  write_file_bytes(path, good);
  CHECK(load_checkpoint(path).meta_at("step") == "7");
  CHECK_THROWS_WITH_AS(load_checkpoint("build/no_such_file.ck"), doctest::Contains("cannot open"), Error);
}

namespace {

// Applies 1..4 random mutations: byte flips, interesting values, truncation,
// insertion, deletion, 32-bit field overwrites.
std::string mutate(const std::string& in, std::mt19937_64& rng) {
  std::string s = in;
  auto pick = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  int n = 1 + int(pick(4));
  for (int k = 0; k < n && !s.empty(); k++) {
    switch (pick(7)) {
      case 0: s[pick(s.size())] ^= char(1 << pick(8)); break;
      case 1: s[pick(s.size())] = char(rng()); break;
      case 2: s.resize(pick(s.size())); break;
      case 3: s.insert(pick(s.size() + 1), std::string(1 + pick(16), char(rng()))); break;
      case 4: {
        size_t at = pick(s.size());
        s.erase(at, 1 + pick(16));
        break;
      }
      case 5:
      case 6: {
        if (s.size() < 4) break;
        static const uint32_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000u,
                                               0xffffffffu, 64, 1000};
        uint32_t v = interesting[pick(sizeof interesting / sizeof interesting[0])];
        std::memcpy(&s[pick(s.size() - 3)], &v, 4);
        break;
      }
    }
  }
  return s;
}

double fuzz_seconds() {
  const char* env = std::getenv("IFLAME_FUZZ_SECONDS");
  return env ? std::atof(env) : 3.0;
}

// Runs `load` on mutations of `seed_input` for `seconds`; every call must
// succeed or throw iflame::Error. Returns the number of inputs tried.
template <typename Load>
int fuzz(const char* what, const std::string& seed_input, double seconds, uint64_t seed, Load load) {
  std::mt19937_64 rng(seed);
  auto start = std::chrono::steady_clock::now();
  int tried = 0, accepted = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds || tried < 20) {
    std::string input = mutate(seed_input, rng);
    try {
      load(input);
      accepted++;
    } catch (const Error&) {
    } catch (const std::exception& e) {
      FAIL(what, ": input ", tried, " threw a non-iflame exception: ", e.what());
    }
    tried++;
  }
  MESSAGE(std::string(what) << ": " << tried << " mutated inputs, " << accepted << " loaded");
  return tried;
}

}  // namespace

TEST_CASE("ckpt: fuzz the torch and native loaders (IFLAME_FUZZ_SECONDS, default 3)") {
  const double budget = fuzz_seconds() / 5;
  const std::string torch_ok = make_small_torch_checkpoint(true);
  REQUIRE_NOTHROW(load_torch_bytes(torch_ok));
  // (a) the archive as bytes: zip structure, CRCs, then the rest
  fuzz("torch archive", torch_ok, budget, 1, [](const std::string& s) { load_torch_bytes(s); });
  // (b) the pickle only, re-wrapped in a valid zip: reaches the unpickler and the tensor checks
  ZipReader z(std::make_unique<MemorySource>(torch_ok, "seed"));
  const std::string small_pkl = z.read("arch/data.pkl");
  fuzz("torch pickle", small_pkl, budget, 2, [](const std::string& s) {
    load_torch_bytes(make_small_torch_checkpoint(false, s.empty() ? "." : s));
  });
  // (c) the real checkpoint's 83 KB pickle through the unpickler alone
  ZipReader tiny(golden("tiny_checkpoint.pth"));
  const std::string tiny_pkl = tiny.read("tiny_checkpoint/data.pkl");
  fuzz("tiny data.pkl", tiny_pkl, budget, 3, [](const std::string& s) { unpickle(s, "tiny"); });

  // (d) native checkpoints as bytes, and (e) with the CRC fixed up so the parser sees the damage
  CheckpointData d;
  d.meta = {{"step", "7"}, {"config", "x=1"}};
  d.tensors = {{"param/a", random_tensor({3, 5}, 1)}, {"param/b", random_tensor({7}, 2).to(DType::BF16)},
               {"i", Tensor::from_ints({1, 2, 3}, {3})}};
  save_checkpoint("build/test_ckpt_fuzz.ck", d);
  const std::string native_ok = read_file_bytes("build/test_ckpt_fuzz.ck");
  auto load_native = [](const std::string& s) { load_checkpoint(std::make_unique<MemorySource>(s, "memory.ck")); };
  fuzz("native", native_ok, budget, 4, load_native);
  fuzz("native, CRC fixed", native_ok, budget, 5, [&](const std::string& s) {
    std::string t = s;
    if (t.size() >= 12) {
      uint32_t c = crc32(t.data() + 8, t.size() - 12);
      std::memcpy(&t[t.size() - 4], &c, 4);
    }
    load_native(t);
  });
}
