#include "core/io/sharded_writer.h"

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/atomic_file.h"

namespace calq::core {

ShardedWriter::ShardedWriter(std::string dir, int64_t n_shards)
    : dir_(std::move(dir)), n_shards_(n_shards) {
  CALQ_ASSERT(n_shards_ >= 1, "a checkpoint of {} shards", n_shards_);
}

std::string ShardedWriter::file_name(int64_t k) const {
  if (n_shards_ == 1)
    return "model.safetensors";
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, n_shards_);
}

void ShardedWriter::write(int64_t k, const NamedTensors& tensors) {
  CALQ_ASSERT(k >= 0 && k < n_shards_ && !written_[k], "shard {} of {} written twice or out of range",
              k, n_shards_);
  const std::string file = file_name(k);
  write_safetensors((std::filesystem::path(dir_) / file).string(), tensors);
  for (const auto& [name, t] : tensors) {
    CALQ_ASSERT(weight_map_.emplace(name, file).second, "tensor {} in two shards", name);
    bytes_ += static_cast<int64_t>(t.numel() * t.element_size());
  }
  written_[k] = true;
}

int64_t ShardedWriter::finish() {
  for (int64_t k = 0; k < n_shards_; ++k)
    CALQ_ASSERT(written_[k], "shard {} of {} never written", k, n_shards_);
  if (n_shards_ > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", bytes_}}},
                                  {"weight_map", weight_map_}};
    write_string_atomically((std::filesystem::path(dir_) / "model.safetensors.index.json").string(),
                            index.dump(2) + "\n");
  }
  return bytes_;
}

}  // namespace calq::core
