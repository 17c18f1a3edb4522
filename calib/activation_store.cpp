#include "calib/activation_store.h"

#include <ATen/ATen.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "core/error.h"

namespace calq::calib {

namespace fs = std::filesystem;

bool offloads(const OffloadPolicy& policy, int64_t bytes) {
  switch (policy.mode) {
    case Offload::Ram: return false;
    case Offload::Disk: return true;
    case Offload::Auto: return policy.budget_bytes > 0 && bytes > policy.budget_bytes;
  }
  return false;
}

/// An unlinked file: it exists while the descriptor is open and vanishes with the process.
struct ActivationStore::ScratchFile {
  int fd = -1;
  std::string dir;
  ~ScratchFile() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

std::string scratch_dir_or_default(const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

}  // namespace

ActivationStore::ActivationStore(int64_t windows, int64_t seqlen, int64_t width,
                                 at::ScalarType dtype, at::Device device, bool on_disk,
                                 const std::string& dir)
    : windows_(windows), seqlen_(seqlen), width_(width), dtype_(dtype), device_(device) {
  // No window is legal: a rank whose share of the calibration windows is empty (core/dist).
  CALQ_ASSERT(windows >= 0 && seqlen > 0 && width > 0, "activation store of {} x {} x {}", windows,
              seqlen, width);
  if (!on_disk) {
    memory_ = at::empty({windows, seqlen, width}, at::TensorOptions().dtype(dtype).device(device));
    return;
  }
  dir_ = scratch_dir_or_default(dir);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  std::string name = (fs::path(dir_) / "calq-activations-XXXXXX").string();
  std::vector<char> buffer(name.begin(), name.end());
  buffer.push_back('\0');
  const int fd = ::mkstemp(buffer.data());
  CALQ_CHECK(fd >= 0, "calibration.offload_dir {}: cannot create a scratch file ({}); expected a "
             "writable folder", dir_, std::strerror(errno));
  ::unlink(buffer.data());  // nothing is left behind, whatever ends the run
  file_ = std::make_shared<ScratchFile>();
  file_->fd = fd;
  file_->dir = dir_;
}

ActivationStore ActivationStore::holding(const at::Tensor& all, bool on_disk,
                                         const std::string& dir) {
  CALQ_ASSERT(all.dim() == 3, "activation store holds [windows, seqlen, width], got {}-D",
              all.dim());
  if (!on_disk) {
    ActivationStore store;
    store.windows_ = all.size(0);
    store.seqlen_ = all.size(1);
    store.width_ = all.size(2);
    store.dtype_ = all.scalar_type();
    store.device_ = all.device();
    store.memory_ = all;
    return store;
  }
  ActivationStore store(all.size(0), all.size(1), all.size(2), all.scalar_type(), all.device(),
                        true, dir);
  store.write(0, all);
  return store;
}

ActivationStore ActivationStore::like() const {
  return ActivationStore(windows_, seqlen_, width_, dtype_, device_, on_disk(), dir_);
}

int64_t ActivationStore::window_bytes() const {
  return seqlen_ * width_ * static_cast<int64_t>(c10::elementSize(dtype_));
}

int64_t ActivationStore::bytes() const { return windows_ * window_bytes(); }

at::Tensor ActivationStore::read(int64_t start, int64_t count) const {
  CALQ_ASSERT(start >= 0 && count > 0 && start + count <= windows_,
              "activation store: windows [{}, {}) of {}", start, start + count, windows_);
  if (!on_disk()) return memory_.narrow(0, start, count);
  at::Tensor host = at::empty({count, seqlen_, width_}, at::TensorOptions().dtype(dtype_));
  auto* p = static_cast<char*>(host.data_ptr());
  int64_t left = count * window_bytes();
  off_t offset = static_cast<off_t>(start * window_bytes());
  while (left > 0) {
    const ssize_t n = ::pread(file_->fd, p, static_cast<size_t>(left), offset);
    CALQ_CHECK(n > 0, "calibration.offload_dir {}: reading the scratch file failed ({})", dir_,
               n == 0 ? "unexpected end of file" : std::strerror(errno));
    p += n;
    left -= n;
    offset += n;
  }
  return device_.is_cpu() ? host : host.to(device_);
}

void ActivationStore::write(int64_t start, const at::Tensor& x) {
  const int64_t count = x.size(0);
  CALQ_ASSERT(x.dim() == 3 && x.size(1) == seqlen_ && x.size(2) == width_ &&
                  x.scalar_type() == dtype_ && start >= 0 && start + count <= windows_,
              "activation store: writing {} windows at {} of {}", count, start, windows_);
  if (!on_disk()) {
    memory_.narrow(0, start, count).copy_(x);
    return;
  }
  const at::Tensor host = x.to(at::kCPU).contiguous();
  const auto* p = static_cast<const char*>(host.data_ptr());
  int64_t left = count * window_bytes();
  off_t offset = static_cast<off_t>(start * window_bytes());
  while (left > 0) {
    const ssize_t n = ::pwrite(file_->fd, p, static_cast<size_t>(left), offset);
    CALQ_CHECK(n > 0, "calibration.offload_dir {}: writing {} MiB of layer activations to the "
               "scratch file failed ({}); expected free space there (calibration.offload_dir) or "
               "calibration.offload: ram", dir_, bytes() >> 20, std::strerror(errno));
    p += n;
    left -= n;
    offset += n;
  }
}

at::Tensor ActivationStore::all() const {
  if (!on_disk()) return memory_;
  if (windows_ == 0)
    return at::empty({0, seqlen_, width_}, at::TensorOptions().dtype(dtype_).device(device_));
  return read(0, windows_);
}

}  // namespace calq::calib
