// The one random source of calibration: a SplitMix64 stream from an explicit seed (never a global
// seed), with unbiased bounded integers by rejection. Same seed, same draws on every platform and
// standard library (std:: distributions differ between libstdc++ and libc++).
#pragma once

#include <cstdint>

namespace calq::calib {

class SeededRng {
 public:
  explicit SeededRng(uint64_t seed) : state_(seed) {}

  uint64_t next_u64() {
    // SplitMix64 (Steele, Lea, Flood 2014): full-period, passes BigCrush, trivially portable.
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  /// Uniform integer in [lo, hi] inclusive (as Python's randint), rejection-sampled.
  int64_t uniform_int(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    if (span == 0) return lo + static_cast<int64_t>(next_u64());  // the full 64-bit range
    const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t x = next_u64();
    while (x >= limit) x = next_u64();
    return lo + static_cast<int64_t>(x % span);
  }

 private:
  uint64_t state_;
};

}  // namespace calq::calib
