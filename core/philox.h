// philox.h: the Philox-4x32-10 counter-based generator (Salmon et al., SC'11).
// A random number is a pure function of (key, counter), so the CPU and the GPU
// produce the same stream without sharing state, and any element can be drawn
// independently of the others (what a parallel fill needs).
#pragma once
#include <cstdint>

#include "core/bf16.h"  // IFLAME_HD

namespace iflame {

struct Philox4 {
  uint32_t v[4];
};

IFLAME_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

IFLAME_HD Philox4 philox4x32(Philox4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, ctr.v[0], hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, ctr.v[2], hi1, lo1);
    Philox4 next;
    next.v[0] = hi1 ^ ctr.v[1] ^ k0;
    next.v[1] = lo1;
    next.v[2] = hi0 ^ ctr.v[3] ^ k1;
    next.v[3] = lo0;
    ctr = next;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

// Four random words for element `index` of draw number `stream` under `seed`.
IFLAME_HD Philox4 philox_draw(uint64_t seed, uint64_t stream, uint64_t index) {
  Philox4 c;
  c.v[0] = static_cast<uint32_t>(index);
  c.v[1] = static_cast<uint32_t>(index >> 32);
  c.v[2] = static_cast<uint32_t>(stream);
  c.v[3] = static_cast<uint32_t>(stream >> 32);
  return philox4x32(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A float in [0, 1) from the top 24 bits of a word: exact, identical everywhere.
IFLAME_HD float philox_unit_float(uint32_t w) { return (w >> 8) * (1.0f / 16777216.0f); }

}  // namespace iflame
