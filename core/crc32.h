// crc32.h: CRC-32 (IEEE 802.3, the polynomial zip and zlib use), computed
// incrementally. Native checkpoints end with one; zip entries carry one.
// crc32_update(0, "123456789", 9) == 0xCBF43926 (the standard check value).
#pragma once
#include <cstddef>
#include <cstdint>

namespace iflame {

// Continues a CRC over `n` more bytes; start with crc = 0.
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32(const void* data, size_t n) { return crc32_update(0, data, n); }

}  // namespace iflame
