// The uniform integer grids of docs/algorithms.md §1.1: which reference convention chooses the
// scale and zero point, and which integer code range it uses. Every quantizing pass (RTN, GPTQ,
// AWQ, SmoothQuant) and every exporter records the Grid it used, because a "4-bit symmetric" model
// from one tool is not the same grid as from another.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace calq::core {

// compressed-tensors has a symmetric and an asymmetric flavour with different formulas, so §1.1's
// one "ct" row is two grids here; the others are one flavour each.
enum class Grid {
  GptqAsym,  ///< IST-DASLab/gptq quant.py, sym=False: range includes 0, zero = round(-lo/s)
  GptqSym,   ///< same file, sym=True: step 2·amax/qmax_u, zero fixed at 2^(b-1)
  CtSym,     ///< compressed-tensors calculate_qparams, symmetric: s = amax/(2^(b-1) - 1/2)
  CtAsym,    ///< compressed-tensors, asymmetric: s = (max-min)/qmax_u, signed zero
  AwqAsym,   ///< llm-awq / AutoAWQ pseudo_quantize_tensor: raw min/max, 0 not forced in
  Absmax,    ///< smoothquant fake_quant.py / LLM.int8: s = amax/(2^(b-1) - 1), zero 0
};

/// Inclusive integer code range of a grid at a bit width (§1.1 last column).
struct CodeRange {
  int32_t qmin = 0;
  int32_t qmax = 0;
};

/// "gptq_asym", "gptq_sym", "ct_sym", "ct_asym", "awq_asym", "absmax".
std::string_view grid_name(Grid grid);

/// Inverse of grid_name; throws calq::Error listing the valid names for anything else.
Grid parse_grid(std::string_view name);

/// The YAML form `{grid: gptq|ct|awq|absmax, sym: bool}` → Grid. Throws calq::Error for an
/// unknown family and for the combinations no reference implements (awq + sym, absmax + asym).
Grid resolve_grid(std::string_view family, bool sym);

/// "gptq", "ct", "awq" or "absmax".
std::string_view grid_family(Grid grid);

/// Whether the grid is a symmetric one (its zero point does not depend on the data).
bool is_symmetric(Grid grid);

/// Unsigned [0, 2^b - 1] for gptq_* and awq_asym; [-2^(b-1), 2^(b-1) - 1] for ct_*;
/// [-(2^(b-1) - 1), 2^(b-1) - 1] for absmax. `bits` in 1..16 (CALQ_ASSERT otherwise).
CodeRange code_range(Grid grid, int bits);

}  // namespace calq::core
