// test_core.cpp: Tensor views and copies, bf16 rounding, the RNG, .npy files, the allocator.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/allocator.h"
#include "core/error.h"
#include "core/npy.h"
#include "core/philox.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

TEST_CASE("tensor: views share storage, copies do not") {
  Tensor t = Tensor::from_floats({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tr = t.transpose(0, 1);
  CHECK(tr.shape() == Shape{3, 2});
  CHECK_FALSE(tr.is_contiguous());
  CHECK(tr.contiguous().to_floats() == std::vector<float>{0, 3, 1, 4, 2, 5});
  Tensor row = t.select(0, 1);
  CHECK(row.to_floats() == std::vector<float>{3, 4, 5});
  Tensor col = t.slice(1, 1, 3);
  CHECK(col.to_floats() == std::vector<float>{1, 2, 4, 5});
  row.copy_from(Tensor::from_floats({7, 8, 9}, {3}));  // writes through the view
  CHECK(t.to_floats() == std::vector<float>{0, 1, 2, 7, 8, 9});
  Tensor c = t.clone();
  c.fill_(1);
  CHECK(t.to_floats()[0] == 0);
  CHECK(t.view({3, -1}).shape() == Shape{3, 2});
  CHECK_THROWS_AS(t.view({4, 2}), Error);
  CHECK_THROWS_AS(tr.view({6}), Error);
  CHECK(tr.reshape({6}).to_floats() == std::vector<float>{0, 7, 1, 8, 2, 9});
}

TEST_CASE("tensor: dtype conversion rounds to nearest even") {
  // 1 + 2^-8 is halfway between two bf16 values; ties go to the even one (1.0).
  float halfway = 1.0f + 1.0f / 256;
  CHECK(round_to_bf16(halfway) == 1.0f);
  CHECK(round_to_bf16(1.0f + 3.0f / 256) == 1.0f + 4.0f / 256);
  CHECK(std::isnan(round_to_bf16(NAN)));
  Tensor t = Tensor::from_floats({halfway, -2.5f, 3.0f}, {3});
  CHECK(t.to(DType::BF16).to_floats() == std::vector<float>{1.0f, -2.5f, 3.0f});
  CHECK(t.to(DType::I32).to_ints() == std::vector<int32_t>{1, -2, 3});
}

TEST_CASE("rng: philox matches the published known-answer vector") {
  // Philox4x32-10 test vector from the Random123 distribution (all-ones input).
  Philox4 c{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}};
  Philox4 r = philox4x32(c, 0xffffffffu, 0xffffffffu);
  CHECK(r.v[0] == 0x408f276du);
  CHECK(r.v[1] == 0x41c83b0eu);
  CHECK(r.v[2] == 0xa20bc7c6u);
  CHECK(r.v[3] == 0x6d5451fdu);
}

TEST_CASE("rng: seeded fills are repeatable and have the right moments") {
  Tensor a = random_tensor({10000}, 42, -2, 3), b = random_tensor({10000}, 42, -2, 3);
  CHECK(a.to_floats() == b.to_floats());
  CHECK(a.to_floats() != random_tensor({10000}, 43, -2, 3).to_floats());
  double mean = 0, lo = 1e9, hi = -1e9;
  for (float v : a.to_floats()) { mean += v; lo = std::min<double>(lo, v); hi = std::max<double>(hi, v); }
  mean /= 10000;
  CHECK(mean == doctest::Approx(0.5).epsilon(0.05));
  CHECK(lo >= -2);
  CHECK(hi < 3);
  Tensor n = Tensor::empty({20000});
  Generator g(7);
  fill_normal(n, g, 1.0f, 2.0f);
  double m = 0, s = 0;
  for (float v : n.to_floats()) m += v;
  m /= 20000;
  for (float v : n.to_floats()) s += (v - m) * (v - m);
  s = std::sqrt(s / 20000);
  CHECK(std::fabs(m - 1.0) < 0.05);
  CHECK(std::fabs(s - 2.0) < 0.05);
}

TEST_CASE("npy: write then read round-trips f32 and i32") {
  Tensor f = random_tensor({3, 5, 2}, 1);
  write_npy("build/test_rt_f32.npy", f);
  CHECK(read_npy("build/test_rt_f32.npy").to_floats() == f.to_floats());
  CHECK(read_npy("build/test_rt_f32.npy").shape() == Shape{3, 5, 2});
  Tensor i = Tensor::from_ints({1, -2, 3}, {3});
  write_npy("build/test_rt_i32.npy", i);
  Tensor back = read_npy("build/test_rt_i32.npy");
  CHECK(back.dtype() == DType::I32);
  CHECK(back.to_ints() == i.to_ints());
}

TEST_CASE("npy: bad files are refused with the file's name") {
  { std::ofstream("build/test_bad_magic.npy") << "hello world, not numpy"; }
  CHECK_THROWS_WITH_AS(read_npy("build/test_bad_magic.npy"),
                       doctest::Contains("test_bad_magic.npy: not a .npy file"), Error);
  CHECK_THROWS_WITH_AS(read_npy("build/does_not_exist.npy"), doctest::Contains("cannot open"), Error);
  // Truncate a valid file: the header promises more data than there is.
  write_npy("build/test_trunc.npy", random_tensor({100}, 2));
  {
    std::ifstream in("build/test_trunc.npy", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out("build/test_trunc.npy", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), bytes.size() - 10);
  }
  CHECK_THROWS_WITH_AS(read_npy("build/test_trunc.npy"), doctest::Contains("truncated"), Error);
  // A dtype we do not read.
  {
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
    header += std::string(127 - 10 - header.size(), ' ') + "\n";  // 128 bytes in all
    std::ofstream out("build/test_f8.npy", std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    char len[2] = {static_cast<char>(header.size()), 0};
    out.write(len, 2);
    out << header << std::string(8, '\0');
  }
  CHECK_THROWS_WITH_AS(read_npy("build/test_f8.npy"), doctest::Contains("unsupported .npy dtype '<f8'"),
                       Error);
}

TEST_CASE("npy: reads the golden token files") {
  Tensor t = read_npy(golden("tokens_tetra.npy"));
  CHECK(t.dtype() == DType::I32);
  auto v = t.to_ints();
  REQUIRE(v.size() >= 18);
  for (int i = 0; i < 9; i++) CHECK(v[i] == 130);
  for (int i = 0; i < 9; i++) CHECK(v[v.size() - 1 - i] == 131);
}

TEST_CASE("gpu: copies, conversions, fills and random numbers match the CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  Tensor h = random_tensor({37, 13}, 5);
  Tensor d = h.to(Device::CUDA);
  CHECK(d.to_floats() == h.to_floats());
  CHECK(d.transpose(0, 1).contiguous().to_floats() == h.transpose(0, 1).contiguous().to_floats());
  CHECK(d.to(DType::BF16).to_floats() == h.to(DType::BF16).to_floats());
  CHECK(d.slice(0, 3, 20).to(DType::BF16).to(DType::F32).to_floats() ==
        h.slice(0, 3, 20).to(DType::BF16).to(DType::F32).to_floats());
  Tensor gu = Tensor::empty({1001}, DType::F32, Device::CUDA), cu = Tensor::empty({1001});
  Generator g1(9), g2(9);
  fill_uniform(gu, g1, -1, 1);
  fill_uniform(cu, g2, -1, 1);
  CHECK(gu.to_floats() == cu.to_floats());  // bit for bit
  Tensor gn = Tensor::empty({1001}, DType::F32, Device::CUDA), cn = Tensor::empty({1001});
  fill_normal(gn, g1, 0, 1);
  fill_normal(cn, g2, 0, 1);
  CHECK(max_abs_diff(gn, cn) < 1e-5);
  Tensor z = Tensor::full({5}, 2.5f, DType::BF16, Device::CUDA);
  CHECK(z.to_floats() == std::vector<float>(5, 2.5f));
}

TEST_CASE("gpu: contiguous f32 <-> bf16 conversions equal the CPU's bit for bit" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // The vectorized kernels take 8 elements at a time: lengths around multiples
  // of 8 exercise the tail; a view one element in is not 16-byte aligned and
  // takes the general strided kernel. Values: random, rounding ties (the bf16
  // midpoint of two neighbours, whose low bits are 0x8000), inf, NaN, -0.
  auto bits_of = [](const Tensor& t) {
    const Tensor c = t.to(Device::CPU).contiguous();
    const size_t bytes = size_t(c.nbytes());
    std::vector<unsigned char> out(bytes);
    std::memcpy(out.data(), c.raw_data(), bytes);
    return out;
  };
  for (const int64_t n : {int64_t(1), int64_t(7), int64_t(8), int64_t(9), int64_t(1003), int64_t(8 * 1001 + 5)}) {
    CAPTURE(n);
    std::vector<float> v = random_tensor({n + 1}, 40 + int(n), -3.0f, 3.0f).to_floats();
    const float specials[] = {INFINITY, -INFINITY, NAN, -0.0f, 0x1.018p0f /* 1 + 2^-8 + 2^-9: odd tie */,
                              0x1.008p0f /* 1 + 2^-9: even tie */};
    for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]) && i < v.size(); i++) v[i * 3 % v.size()] = specials[i];
    const Tensor h = Tensor::from_floats(v, {n + 1});
    const Tensor d = h.to(Device::CUDA);
    for (const int64_t start : {int64_t(0), int64_t(1)}) {
      CAPTURE(start);
      const Tensor hv = h.slice(0, start, start + n), dv = d.slice(0, start, start + n);
      const Tensor hb = hv.to(DType::BF16), db = dv.to(DType::BF16);
      CHECK(bits_of(db) == bits_of(hb));
      // Back to f32: exact, from the bf16 values just made.
      CHECK(bits_of(db.to(DType::F32)) == bits_of(hb.to(DType::F32)));
      // bf16 -> f32 from a view that starts `start` elements into its storage.
      CHECK(bits_of(d.to(DType::BF16).slice(0, start, start + n).to(DType::F32)) ==
            bits_of(h.to(DType::BF16).slice(0, start, start + n).to(DType::F32)));
    }
  }
}

TEST_CASE("gpu: the caching allocator reuses freed blocks" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  { Tensor warm = Tensor::empty({1 << 20}, DType::F32, Device::CUDA); }
  size_t before = device_memory_stats().cuda_mallocs;
  for (int i = 0; i < 50; i++) Tensor t = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);
  CHECK(device_memory_stats().cuda_mallocs == before);
}
