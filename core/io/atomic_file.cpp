#include "core/io/atomic_file.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <streambuf>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

namespace calq::core {
namespace {

// An ostream buffer over a raw descriptor: std::ofstream cannot hand out its fd for fsync.
class FdStreamBuf : public std::streambuf {
 public:
  explicit FdStreamBuf(int fd) : fd_(fd), buffer_(kBufferBytes) { reset_put_area(); }

  int error() const { return error_; }  // errno of the first failed write, 0 if none

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer())
      return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Tensor payloads are large: write them straight through instead of copying via the buffer.
    if (n < static_cast<std::streamsize>(buffer_.size()))
      return std::streambuf::xsputn(s, n);
    if (!flush_buffer() || !write_all(s, static_cast<std::size_t>(n)))
      return 0;
    return n;
  }

  int sync() override { return flush_buffer() ? 0 : -1; }

 private:
  static constexpr std::size_t kBufferBytes = std::size_t{1} << 20;
  static constexpr std::size_t kMaxWriteBytes = std::size_t{1} << 30;  // Linux caps write() ~2 GiB

  void reset_put_area() { setp(buffer_.data(), buffer_.data() + buffer_.size()); }

  bool flush_buffer() {
    const auto n = static_cast<std::size_t>(pptr() - pbase());
    if (n > 0 && !write_all(pbase(), n))
      return false;
    reset_put_area();
    return true;
  }

  bool write_all(const char* p, std::size_t n) {
    if (error_ != 0)
      return false;
    while (n > 0) {
      const ssize_t written = ::write(fd_, p, std::min(n, kMaxWriteBytes));
      if (written < 0) {
        if (errno == EINTR)
          continue;
        error_ = errno;
        return false;
      }
      p += written;
      n -= static_cast<std::size_t>(written);
    }
    return true;
  }

  int fd_;
  int error_ = 0;
  std::vector<char> buffer_;
};

// The temporary file: closed and removed on destruction unless commit() renamed it into place.
class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target) {
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
      path_ = target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
      do {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      } while (fd_ < 0 && errno == EINTR);
      if (fd_ < 0 && errno != EEXIST)
        break;
    }
    if (fd_ < 0) {
      fail("{}: cannot create temporary file {}: {}; expected a writable directory", target, path_,
           std::strerror(errno));
    }
  }

  ~TempFile() {
    if (fd_ >= 0)
      ::close(fd_);
    if (!committed_)
      ::unlink(path_.c_str());
  }

  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return fd_; }

  void commit() {
    if (::fsync(fd_) != 0)
      fail("{}: fsync of {} failed: {}", target_, path_, std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0)
      fail("{}: close of {} failed: {}", target_, path_, std::strerror(errno));
    if (::rename(path_.c_str(), target_.c_str()) != 0) {
      fail("{}: cannot rename {} to it: {}", target_, path_, std::strerror(errno));
    }
    committed_ = true;
    sync_parent_directory();
  }

 private:
  // Makes the rename itself durable. Best effort: some file systems refuse fsync on directories.
  void sync_parent_directory() const {
    std::string dir = std::filesystem::path(target_).parent_path().string();
    if (dir.empty())
      dir = ".";
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
      return;
    ::fsync(dir_fd);
    ::close(dir_fd);
  }

  std::string target_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& writer) {
  TempFile temp(path);
  {
    FdStreamBuf buffer(temp.fd());
    std::ostream stream(&buffer);
    stream.exceptions(std::ios::badbit | std::ios::failbit);
    try {
      writer(stream);
      stream.flush();
    } catch (...) {
      // Catch-all: under GCC's dual ABI the library's ios_base::failure may not match ours.
      if (buffer.error() != 0) {
        fail("{}: write failed: {}; expected enough space and a writable file system", path,
             std::strerror(buffer.error()));
      }
      throw;
    }
  }
  temp.commit();
}

void write_string_atomically(const std::string& path, std::string_view contents) {
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  });
}

void publish_directory(const std::string& tmp, const std::string& final_path) {
  namespace fs = std::filesystem;
  const fs::path target(final_path);
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(target, ec);
  // Only a directory is ever replaced: a file or a link of the same name is someone else's.
  CALQ_CHECK(status.type() == fs::file_type::not_found || status.type() == fs::file_type::directory,
             "{}: exists and is not a directory; calq never replaces a file; expected a new "
             "directory name", final_path);
  if (status.type() == fs::file_type::directory) {
    const fs::path old = target.parent_path() / fmt::format(".{}.calq-old-{}",
                                                            target.filename().string(),
                                                            static_cast<long>(::getpid()));
    fs::remove_all(old);
    fs::rename(target, old);
    fs::rename(tmp, target);
    fs::remove_all(old);
  } else {
    fs::rename(tmp, target);
  }
}

}  // namespace calq::core
