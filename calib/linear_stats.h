// What passes ask the runner to observe on a linear's input, and the accumulators that gather it
// in one forward sweep (imatrix-style "ask, then collect"):
//   hessian   H = 2 Σ xᵀx / N, N = number of calibration sequences (IST-DASLab/gptq add_batch),
//   absmax    max |x| per input channel (SmoothQuant act_scales),
//   mean_abs  mean |x| per input channel over tokens (AWQ's activation salience),
//   inputs    the raw inputs [tokens, in] (AWQ scale/clip search, LKD).
// Accumulation: each batch's xᵀx is one float32 GEMM, summed into a float64 accumulator and
// normalised once at the end. Why: float32 GEMMs keep the O(tokens·in²) work fast, the float64
// sum keeps the result independent of how many batches there were (to ~1e-7) and avoids the
// reference's running rescale H·N/(N+n), whose rounding depends on the batch order.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace calq::calib {

struct StatRequest {
  bool hessian = false;
  bool absmax = false;
  bool mean_abs = false;
  bool inputs = false;
  bool any() const { return hessian || absmax || mean_abs || inputs; }
  void merge(const StatRequest& other);
};

/// Uniform linear name ("attn.q", ...) -> what to collect for it.
using Requirements = std::map<std::string, StatRequest>;

struct LinearStats {
  at::Tensor hessian;   ///< [in, in] float32, 2 Σ xᵀx / n_samples
  at::Tensor absmax;    ///< [in] float32
  at::Tensor mean_abs;  ///< [in] float32
  at::Tensor inputs;    ///< [n_tokens, in] in the compute dtype
  int64_t n_samples = 0;  ///< calibration sequences seen
  int64_t n_tokens = 0;
  int64_t non_finite_inputs = 0;  ///< NaN/Inf entries seen in the inputs (require_finite refuses)
};

/// Refuses statistics computed from non-finite inputs, or a Hessian that is not finite although
/// its inputs were (2XᵀX/N overflowed float32): calq::Error naming the layer, the linear and the
/// stage "calibration statistics". Checked before a pass or the calibration cache sees them.
void require_finite(const LinearStats& stats, int64_t layer, const std::string& linear);

/// The statistics of x' = x / s (per input channel), exactly as if collected on x': what a pass
/// that folds 1/s into the op feeding the linear (SmoothQuant, AWQ) hands the passes after it.
/// H' = H / (s sᵀ), absmax' = absmax / s, mean|x'| = mean|x| / s, inputs' = inputs / s.
void rescale_inputs(LinearStats& stats, const at::Tensor& s);

class LinearStatsAccumulator {
 public:
  explicit LinearStatsAccumulator(StatRequest request) : request_(request) {}
  /// x: [batch, seq, in] (or [tokens, in] with batch = 1): the linear's input.
  void add(const at::Tensor& x);
  /// The statistics; the sums are given up as they are converted (call once).
  LinearStats finish();
  /// Adds the other ranks' partial statistics of the same linear (core/dist; nothing on one
  /// rank), before finish(): Σxᵀx and Σ|x| summed in rank order in float64, absmax max-reduced,
  /// counts summed, raw inputs gathered in rank (= window) order. `in` and `inputs_dtype` shape
  /// what a rank that saw no token contributes. `step` names the collective in a fault message.
  void reduce_across_ranks(int64_t in, at::ScalarType inputs_dtype, const std::string& step);

 private:
  StatRequest request_;
  // float64 Σ xᵀx as core/kernels/hessian.h keeps it: on the CPU the upper triangle in row
  // blocks (half the bytes of the full double matrix: a 7B down_proj 0.46 GB, not 0.92), on
  // CUDA the whole matrix. The layout is the kernel's (hessian_cpu.cpp, hessian_cuda.cu); this
  // class only hands the vector over.
  std::vector<at::Tensor> xtx_blocks_;
  at::Tensor absmax_;    // float32
  at::Tensor abs_sum_;   // float64 Σ |x|
  std::vector<at::Tensor> inputs_;
  int64_t n_samples_ = 0;
  int64_t n_tokens_ = 0;
  int64_t non_finite_ = 0;
};

}  // namespace calq::calib
