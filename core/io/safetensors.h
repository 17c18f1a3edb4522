// safetensors container (huggingface/safetensors "Format"): an mmap-backed reader with lazy
// per-tensor access, a sharded-checkpoint view over model.safetensors.index.json, and an atomic
// writer. Every validation failure throws calq::Error naming the file and the problem.
// Used by the model loaders, exporters and tests.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/io/dtype.h"

namespace calq::core {

class MappedFile;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< byte offset relative to the data section
  uint64_t end = 0;    ///< one past the last byte
  int64_t numel() const;
};

/// A validated safetensors header: what SafetensorsFile reads at open.
struct SafetensorsHeader {
  uint64_t data_start = 0;  ///< 8 + header length: where the data section begins
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

/// Parses and validates the header of a whole safetensors file held in memory (`size` bytes at
/// `bytes`; tensor ranges are checked against it). `path` names the file in errors. The in-memory
/// entry point serves SafetensorsFile and the fuzz target (tests/fuzz) alike.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size,
                                           const std::string& path);

/// The weight_map of a model.safetensors.index.json text: tensor name -> shard file name as
/// written, each checked to be a plain relative path (no "..", not absolute). Whether the shards
/// exist is the caller's business. `index_path` names the file in errors.
std::map<std::string, std::string> parse_safetensors_index(std::string_view text,
                                                           const std::string& index_path);

/// One .safetensors file, header parsed and validated at open, data mapped read-only.
class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws naming file and tensor
  std::vector<std::string> names() const;                 // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// A CPU tensor owning a copy of the bytes (safe after the file is closed).
  at::Tensor load(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// A model directory's weights: model.safetensors, or the shards listed by
/// model.safetensors.index.json. Shards are opened on first use.
class SafetensorsCheckpoint {
 public:
  /// `path` is a directory holding model.safetensors[.index.json], or a single .safetensors file.
  explicit SafetensorsCheckpoint(const std::string& path);
  ~SafetensorsCheckpoint();

  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted, over all shards
  const TensorInfo& info(const std::string& name) const;
  at::Tensor load(const std::string& name) const;  // throws "<dir>: no tensor "x"" when missing
  const std::string& path() const { return path_; }

 private:
  const SafetensorsFile& file_for(const std::string& name) const;

  void add_file(const std::string& file_path);
  void read_index(const std::string& index_path);

  std::string path_;
  std::string index_path_;                         // empty for a single file
  std::map<std::string, std::string> weight_map_;  // tensor name -> shard file path
  mutable std::mutex mutex_;                       // guards open_: loaders may run in threads
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> open_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Writes one file atomically (path.tmp, fsync, rename): header padded to 8 bytes, tensors
/// ordered by element size then name, "__metadata__" always containing {"format": "pt"}.
/// Tensors may live on any device and need not be contiguous.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace calq::core
