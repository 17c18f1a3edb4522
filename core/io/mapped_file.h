// A whole file mapped read-only into memory (POSIX mmap), unmapped when the object dies.
// The safetensors reader keeps one per open file so tensors are read lazily, without copying the
// file up front.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace calq::core {

class MappedFile {
 public:
  /// Throws calq::Error naming `path` when it cannot be opened, is not a regular file, or
  /// cannot be mapped. An empty file is fine: size() is 0 and data() is nullptr.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  std::size_t size() const { return size_; }
  const uint8_t* data() const { return data_; }

  /// Gives back the resident pages wholly inside [offset, offset + length) once their bytes have
  /// been copied out: a mapped page counts in the process's RSS until then, so a model read
  /// layer by layer would otherwise keep every layer it ever read resident. Later reads fault the
  /// pages in again from the page cache (same bytes: the mapping is read-only).
  void drop_pages(std::size_t offset, std::size_t length) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace calq::core
