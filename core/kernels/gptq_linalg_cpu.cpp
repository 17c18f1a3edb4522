// §3.1 step 6 (the inverse Cholesky factor) on the CPU, with
// OpenBLAS/LAPACK. Internal to the GPTQ kernel.
#include "core/kernels/gptq_linalg_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <cblas.h>
#include <fmt/format.h>

#include "core/error.h"

// LAPACK through its Fortran ABI (OpenBLAS exports it; Debian's OpenBLAS is built without
// LAPACKE). The trailing size_t are gfortran's hidden lengths of the character arguments.
extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info, size_t);
void strtri_(const char* uplo,
             const char* diag,
             const int* n,
             float* a,
             const int* lda,
             int* info,
             size_t,
             size_t);
}

namespace calq::core::kernels::gptq_detail {

// Steps 5–6 for one λ: u = U, the upper Cholesky factor of (H + λI)⁻¹, row-major [c, c] with a
// zero strict lower triangle. Returns what failed, or "" on success.
// Numerics: the reference forms H⁻¹ = cholesky_inverse(chol(H)) and factors it again (4/3 c³
// flops). Here U = R⁻¹ where H + λI = R Rᵀ with R upper: then (H + λI)⁻¹ = R⁻ᵀR⁻¹ = UᵀU with U
// upper and a positive diagonal — the Cholesky factor of the inverse, by uniqueness. R is the
// ordinary Cholesky factor of J(H + λI)J read backwards (J reverses the index order), so the
// route is reverse → potrf → trtri → reverse: 2/3 c³ flops and H⁻¹ is never formed. It differs
// from the reference's U by float rounding only (the generic implementation keeps that route).
std::string inverse_factor(const float* h, int64_t c, float lambda, float* u) {
  const int64_t n2 = c * c;
  // The flat reverse of a row-major square matrix reverses both axes: u = J H J (+ λ on the
  // diagonal, which J maps onto itself). Symmetric, so its column-major view is the same matrix.
  for (int64_t i = 0; i < n2; ++i)
    u[i] = h[n2 - 1 - i];
  for (int64_t i = 0; i < c; ++i)
    u[i * c + i] += lambda;
  const int n = static_cast<int>(c);
  int info = 0;
  // Column-major upper = row-major lower: the row-major lower triangle becomes L' with
  // J H J = L' L'ᵀ, then its inverse.
  spotrf_("U", &n, u, &n, &info, 1);
  if (info > 0)
    return fmt::format("Cholesky factorization failed at leading minor {}", info);
  CALQ_ASSERT(info == 0, "spotrf: argument {} invalid", -info);
  strtri_("U", "N", &n, u, &n, &info, 1, 1);
  if (info > 0)
    return fmt::format("zero pivot {} in the Cholesky factor", info);
  CALQ_ASSERT(info == 0, "strtri: argument {} invalid", -info);
  // Reversing again maps row-major lower L'⁻¹ to row-major upper J L'⁻¹ J = R⁻¹ = U; the lower
  // triangle then holds the untouched half of J H J reversed, which is cleared.
  std::reverse(u, u + n2);
  bool finite = true;
  for (int64_t i = 0; i < c; ++i) {
    float* row = u + i * c;
    std::fill(row, row + i, 0.0f);
    for (int64_t j = i; j < c; ++j)
      finite &= std::isfinite(row[j]);
    finite &= row[i] > 0;
  }
  return finite ? std::string() : std::string("non-finite inverse factor");
}

}  // namespace calq::core::kernels::gptq_detail
