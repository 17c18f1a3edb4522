// An HF sharded checkpoint written one shard at a time (model-0000k-of-0000n.safetensors plus
// model.safetensors.index.json), so a writer holds one shard's tensors at a time, not the model.
// Files go into a directory the caller renames into place when everything is written.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/io/safetensors.h"

namespace calq::core {

class ShardedWriter {
 public:
  /// `n_shards` >= 1 fixes the file names; with one shard the file is model.safetensors and no
  /// index is written.
  ShardedWriter(std::string dir, int64_t n_shards);

  /// Writes shard k (0-based, each once) and records its tensors in the index.
  void write(int64_t k, const NamedTensors& tensors);

  /// Writes the index after every shard is written; returns the tensor bytes written.
  int64_t finish();

  std::string file_name(int64_t k) const;

 private:
  std::string dir_;
  int64_t n_shards_;
  int64_t bytes_ = 0;
  std::map<int64_t, bool> written_;
  std::map<std::string, std::string> weight_map_;
};

}  // namespace calq::core
