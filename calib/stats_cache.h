// An on-disk cache of per-layer calibration products (Hessians, activation statistics, raw
// inputs), so that runs which would collect exactly the same statistics read them instead of
// running the model again (`calq sweep` over bits, group size, damp, ...).
//
// What may be reused is decided by the key, not by the cache: the caller folds into it everything
// the statistics depend on (model files, compute dtype, calibration windows, batch size, layer,
// subset, the request, and a fingerprint of every pass that changed the model before the
// statistics were gathered). A hit therefore returns the bytes a fresh collection would produce.
//
// One safetensors file per entry, written atomically; the folder is bounded by `max_bytes`,
// evicting the least recently used entries (a hit refreshes an entry's time).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "calib/linear_stats.h"

namespace calq::calib {

struct CacheCounters {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t stores = 0;
  int64_t bytes_read = 0;
  int64_t bytes_written = 0;
  int64_t evicted = 0;              ///< entries removed to stay under the bound
  int64_t skipped_too_large = 0;    ///< entries larger than the bound, not stored
  int64_t size_bytes = 0;           ///< the folder's size after the last store
  std::vector<std::string> reused;  ///< "layer 0 step 0" for each hit, in order
};

class StatsCache {
 public:
  /// `dir` is created on first store. `max_bytes` > 0 bounds the folder's total size.
  StatsCache(std::string dir, int64_t max_bytes);

  /// The entry under `key` on `device`, or nullopt (absent or unreadable: a damaged entry is
  /// removed with a warning and counts as a miss). `label` names the hit in counters().reused.
  std::optional<std::map<std::string, LinearStats>> load(const std::string& key,
                                                         const std::string& label,
                                                         const std::string& device);
  /// Stores `stats` under `key` (no-op when larger than the bound), then evicts down to it.
  void store(const std::string& key, const std::map<std::string, LinearStats>& stats);

  const CacheCounters& counters() const { return counters_; }
  const std::string& dir() const { return dir_; }
  int64_t max_bytes() const { return max_bytes_; }

 private:
  std::string path_of(const std::string& key) const;
  void evict(const std::string& keep);

  std::string dir_;
  int64_t max_bytes_;
  CacheCounters counters_;
};

/// How a runner uses a cache: `context` identifies the model and how it is computed (files,
/// dtype, device); the runner adds windows, batch size, layer, subset and request.
struct CacheUse {
  StatsCache* cache = nullptr;
  std::string context;
};

/// A fingerprint of the model files at `path` (a directory's regular files, or one file): names,
/// sizes and modification times, hashed. Cheap for any model size; a rewritten file changes it.
std::string model_files_fingerprint(const std::string& path);

/// Parses "512M", "2G", "1.5G", "4096" (bytes) into bytes; throws calq::Error naming `what`.
int64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace calq::calib
