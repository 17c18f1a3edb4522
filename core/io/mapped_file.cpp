#include "core/io/mapped_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/small_file.h"

namespace calq::core {
namespace {

// Closes the descriptor on every path out of the constructor; the mapping outlives it.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd;
  do {
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer; here it returns, and
    // fstat below refuses it. No effect on a regular file.
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0)
    fail("{}: cannot open: {}; expected a readable file", path, std::strerror(errno));
  const FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0)
    fail("{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail("{}: {}; expected a regular file to read", path, describe_non_regular(path));
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ == 0)
    return;  // mmap rejects a zero length

  void* addr = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED) {
    fail("{}: cannot map {} bytes into memory: {}", path, size_, std::strerror(errno));
  }
  data_ = static_cast<const uint8_t*>(addr);
}

void MappedFile::drop_pages(std::size_t offset, std::size_t length) const {
  if (data_ == nullptr || length == 0 || offset >= size_)
    return;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t first = (offset + page - 1) / page * page;
  const std::size_t end = std::min(size_, offset + length) / page * page;
  if (end > first)  // advice only: a failure leaves the pages resident, nothing else
    ::madvise(const_cast<uint8_t*>(data_) + first, end - first, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr)
    ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace calq::core
