// FNV-1a 64: the one stable hash calq uses for cache keys, recipe hashes and report fields
// (http://www.isthe.com/chongo/tech/comp/fnv/): byte order fixed, same value on every platform.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace calq::core {

inline constexpr uint64_t kFnv1a64OffsetBasis = 0xcbf29ce484222325ULL;

/// FNV-1a 64 over raw bytes, continuing from `seed` (the offset basis for a fresh hash).
uint64_t fnv1a64(const void* data, size_t bytes, uint64_t seed = kFnv1a64OffsetBasis);

inline uint64_t fnv1a64(std::string_view text) { return fnv1a64(text.data(), text.size()); }

}  // namespace calq::core
