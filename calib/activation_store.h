// Where the calibration engine keeps a layer's inputs X_i [nsamples, seqlen, hidden] while it
// works on layer i (docs/architecture.md §2.3): in memory, or in a scratch file when they would
// exceed the memory budget (calibration.offload). The runner reads and writes them a batch of
// windows at a time, so with the file only one batch is resident; X_{i+1} overwrites X_i batch by
// batch when the next layer's inputs come from the processed layer (GPTQ), which is why one copy
// is enough there.
//
// The file holds the compute dtype's bytes as they are: reading back gives the bits that were
// written, so offloading never changes a result. It is unlinked as soon as it is created — a
// killed run leaves nothing behind — and reads and writes are pread/pwrite of whole windows (the
// page cache does the buffering; the resident set holds one batch, which an mmap would not
// guarantee without madvise bookkeeping).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/recipe.h"

namespace calq::calib {

using Offload = core::ActivationOffload;  ///< calibration.offload

struct OffloadPolicy {
  Offload mode = Offload::Auto;
  std::string dir;           ///< scratch folder ("" = the system's temporary folder)
  int64_t budget_bytes = 0;  ///< Auto: in memory up to this many bytes of activations (0 = none)
};

/// True when `bytes` of activations go to the scratch file under `policy` (Ram never does).
bool offloads(const OffloadPolicy& policy, int64_t bytes);

/// What the runner did with the layer activations, for report.json.
struct ActivationPlacement {
  std::string offload;      ///< the policy: auto | ram | disk
  bool on_disk = false;     ///< where they went
  std::string dir;          ///< the scratch folder ("" in memory)
  int64_t bytes = 0;        ///< one copy of X_i
  int64_t copies = 0;       ///< copies held at once (1 or 2)
  int64_t batch_windows = 0;
  int64_t stopped_forwards = 0;  ///< statistics forwards ended after their last observed linear
};

/// Where one layer's calibration time went (report.json timing.layers).
struct LayerTiming {
  int64_t layer = 0;
  double load_s = 0;           ///< materialising the layer (streamed runs read it from disk)
  double float_outputs_s = 0;  ///< the float layer's outputs (float propagation only)
  double statistics_s = 0;     ///< statistics forwards and their accumulation
  double process_s = 0;        ///< the passes (GPTQ's factorisation and column loop, AWQ's search)
  double propagate_s = 0;      ///< X_{i+1} from the processed layer
  double peak_rss_mb = 0;      ///< the process's peak resident set once the layer is done
};

class ActivationStore {
 public:
  ActivationStore() = default;
  /// Windows of [seqlen, width] in `dtype` on `device`; `on_disk` selects the scratch file in
  /// `dir` (created when missing). Contents start undefined: every window is written first.
  ActivationStore(int64_t windows, int64_t seqlen, int64_t width, at::ScalarType dtype,
                  at::Device device, bool on_disk, const std::string& dir);
  /// A store holding `all` ([windows, seqlen, width]); in memory it adopts the tensor.
  static ActivationStore holding(const at::Tensor& all, bool on_disk, const std::string& dir);
  /// An empty store of the same shape, dtype and placement.
  ActivationStore like() const;

  bool defined() const { return seqlen_ > 0; }
  int64_t windows() const { return windows_; }
  int64_t seqlen() const { return seqlen_; }
  int64_t width() const { return width_; }
  at::ScalarType dtype() const { return dtype_; }
  bool on_disk() const { return file_ != nullptr; }
  int64_t bytes() const;
  /// The scratch folder ("" in memory).
  const std::string& dir() const { return dir_; }

  /// Windows [start, start + count) as [count, seqlen, width] on the device: a view of the
  /// memory (do not write through it), or a fresh tensor read from the file.
  at::Tensor read(int64_t start, int64_t count) const;
  /// Stores `x` [count, seqlen, width] as windows [start, start + count).
  void write(int64_t start, const at::Tensor& x);
  /// Every window at once (a resumable run's checkpoint, LKD); from the file this reads all.
  at::Tensor all() const;

 private:
  struct ScratchFile;
  int64_t window_bytes() const;

  int64_t windows_ = 0, seqlen_ = 0, width_ = 0;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  at::Tensor memory_;
  std::shared_ptr<ScratchFile> file_;
  std::string dir_;
};

}  // namespace calq::calib
