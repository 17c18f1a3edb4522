// Internal to the GPTQ kernel: the dense linear algebra of the CPU implementation (OpenBLAS and
// LAPACK through gptq_linalg.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace calq::core::kernels::gptq_detail {

/// §3.1 steps 5–6 for one λ: writes U, the upper Cholesky factor of (H + λI)⁻¹, to u (row-major
/// [c, c], strict lower triangle zero). h: [c, c] row-major, symmetric. Returns what failed
/// ("Cholesky factorization failed at leading minor 17", ...) or "" on success.
std::string inverse_factor(const float* h, int64_t c, float lambda, float* u);

}  // namespace calq::core::kernels::gptq_detail
