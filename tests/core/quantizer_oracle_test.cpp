// A loop-based, scalar-float oracle for core/quant/quantizer.h + quantized_tensor.h: every grid
// of docs/algorithms.md §1.1 written out element by element from the reference formulas, compared
// with the vectorised ATen implementation bit for bit on seeded random weights (plus the edge
// rows: all zero, all positive, all negative, constant, one outlier) at 2/3/4/8 bits, per
// tensor, per channel and per group (short last groups included). The mse search (§1.4) is
// checked against the same oracle's candidate set, with the argmin taken in double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/quant/grid.h"
#include "core/quant/quantized_tensor.h"
#include "core/quant/quantizer.h"

using namespace calq;
using core::Grid;

namespace {

constexpr uint64_t kSeed = 20240611;
// The vectorised mse search sums |err|^2.4 in float32, the oracle in double: near-ties may pick
// different candidates, whose errors then agree to float32 summation accuracy.
constexpr double kMseRelTol = 1e-4;

struct Ref {
  float s;
  float z;
};

float rne(float v) {
  return std::nearbyint(v);  // default rounding mode: half to even (never std::round)
}

float clampf(float v, float lo, float hi) {
  return std::min(std::max(v, lo), hi);
}

// (lo, hi) of one row/group, §1.1 "range source".
std::pair<float, float> ref_range(const std::vector<float>& x, Grid g) {
  float mn = x[0];
  float mx = x[0];
  for (float v : x) {
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  switch (g) {
    case Grid::GptqAsym:
    case Grid::GptqSym: {
      float lo = std::min(mn, 0.0f);
      float hi = std::max(mx, 0.0f);
      if (g == Grid::GptqSym) {
        hi = std::max(std::fabs(lo), hi);
        if (lo < 0)
          lo = -hi;
      }
      if (lo == 0 && hi == 0) {
        lo = -1;
        hi = 1;
      }
      return {lo, hi};
    }
    case Grid::CtSym: {
      const float a = std::max(std::fabs(std::min(mn, 0.0f)), std::max(mx, 0.0f));
      return {-a, a};
    }
    case Grid::CtAsym:
      return {std::min(mn, 0.0f), std::max(mx, 0.0f)};
    case Grid::AwqAsym:
      return {mn, mx};
    case Grid::Absmax: {
      const float a = std::max(std::fabs(mn), std::fabs(mx));
      return {-a, a};
    }
  }
  return {0, 0};
}

Ref ref_params(float lo, float hi, Grid g, int bits) {
  const core::CodeRange cr = core::code_range(g, bits);
  const float qmax_u = static_cast<float>((1 << bits) - 1);
  const float eps = std::numeric_limits<float>::epsilon();
  switch (g) {
    case Grid::GptqAsym: {
      const float s = (hi - lo) / qmax_u;
      return {s, rne(-lo / s)};
    }
    case Grid::GptqSym:
      return {(hi - lo) / qmax_u, static_cast<float>(1 << (bits - 1))};
    case Grid::CtSym:
      return {std::max(hi / (static_cast<float>(cr.qmax - cr.qmin) / 2), eps), 0.0f};
    case Grid::CtAsym: {
      const float s = std::max((hi - lo) / static_cast<float>(cr.qmax - cr.qmin), eps);
      const float qmin = static_cast<float>(cr.qmin);
      return {s, rne(clampf(qmin - lo / s, qmin, static_cast<float>(cr.qmax)))};
    }
    case Grid::AwqAsym: {
      const float s = std::max(hi - lo, 1e-5f) / qmax_u;
      return {s, clampf(-rne(lo / s), 0.0f, qmax_u)};
    }
    case Grid::Absmax:
      return {std::max(hi, 1e-5f) / static_cast<float>(cr.qmax), 0.0f};
  }
  return {0, 0};
}

int32_t ref_code(float x, Ref p, Grid g, int bits) {
  const core::CodeRange cr = core::code_range(g, bits);
  const auto qmin = static_cast<float>(cr.qmin);
  const auto qmax = static_cast<float>(cr.qmax);
  if (g == Grid::CtSym || g == Grid::CtAsym)
    return static_cast<int32_t>(rne(clampf(x / p.s + p.z, qmin, qmax)));
  return static_cast<int32_t>(clampf(rne(x / p.s) + p.z, qmin, qmax));
}

float ref_dequant(int32_t q, Ref p) {
  return p.s * (static_cast<float>(q) - p.z);
}

// Seeded weights with rows of different magnitude and the edge rows.
at::Tensor test_weight(int64_t rows, int64_t cols) {
  at::Generator gen = at::detail::createCPUGenerator(kSeed);
  at::Tensor w = at::randn({rows, cols}, gen) * at::rand({rows, 1}, gen) * 0.1;
  w[0].zero_();                 // lo = hi = 0
  w[1] = at::abs(w[1]) + 0.01;  // all positive (gptq_sym keeps lo = 0, awq z = 0)
  w[2] = -at::abs(w[2]);        // all negative
  w[3].fill_(0.3);              // constant
  w[4][17] = 2.5;               // one outlier
  return w;
}

std::vector<float> row_slice(const at::Tensor& w, int64_t r, int64_t c0, int64_t n) {
  const at::Tensor s = w[r].narrow(0, c0, n).contiguous();
  return std::vector<float>(s.data_ptr<float>(), s.data_ptr<float>() + n);
}

}  // namespace

TEST_CASE("vectorised fit and codes match the loop oracle bit for bit", "[core][quant]") {
  const int64_t rows = 7;
  const int64_t cols = 172;
  const at::Tensor w = test_weight(rows, cols);
  const int64_t per_tensor = 0;  // marker in the list below
  for (Grid grid :
       {Grid::GptqAsym, Grid::GptqSym, Grid::CtSym, Grid::CtAsym, Grid::AwqAsym, Grid::Absmax}) {
    for (int bits : {2, 3, 4, 8}) {
      for (int64_t g : {per_tensor, int64_t{-1}, int64_t{32}, int64_t{64}, int64_t{128},
                        int64_t{172}, int64_t{200}}) {
        core::QuantSpec spec = core::weight_spec(bits, grid, g == per_tensor ? -1 : g);
        if (g == per_tensor)
          spec.granularity = core::Granularity::PerTensor;
        INFO(core::describe(spec));
        const core::QuantizedTensor q = core::quantize_weight(w, spec);
        const int64_t width = g > 0 ? g : cols;
        const int64_t n_groups = (cols + width - 1) / width;
        REQUIRE(q.n_groups() == n_groups);
        const at::Tensor deq_t = q.dequantize();
        const auto codes = q.codes.accessor<int32_t, 2>();
        const auto scales = q.scales.accessor<float, 2>();
        const auto zeros = q.zeros.accessor<int32_t, 2>();
        const auto g_idx = q.g_idx.accessor<int32_t, 1>();
        const auto deq = deq_t.accessor<float, 2>();
        // Per tensor: one oracle fit over every element.
        Ref tensor_params{0, 0};
        if (g == per_tensor) {
          const at::Tensor flat = w.reshape({-1}).contiguous();
          const std::vector<float> all(flat.data_ptr<float>(), flat.data_ptr<float>() + w.numel());
          const auto [lo, hi] = ref_range(all, grid);
          tensor_params = ref_params(lo, hi, grid, bits);
        }
        int64_t mismatches = 0;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t k = 0; k < n_groups; ++k) {
            const int64_t c0 = k * width;
            const int64_t n = std::min(width, cols - c0);
            const std::vector<float> xs = row_slice(w, r, c0, n);
            Ref p = tensor_params;
            if (g != per_tensor) {
              const auto [lo, hi] = ref_range(xs, grid);
              p = ref_params(lo, hi, grid, bits);
            }
            mismatches += scales[r][k] != p.s;
            mismatches += zeros[r][k] != static_cast<int32_t>(p.z);
            for (int64_t j = 0; j < n; ++j) {
              const int32_t code = ref_code(xs[j], p, grid, bits);
              mismatches += codes[r][c0 + j] != code;
              mismatches += g_idx[c0 + j] != (g > 0 ? k : 0);
              mismatches += deq[r][c0 + j] != ref_dequant(code, p);
            }
          }
        }
        CHECK(mismatches == 0);
      }
    }
  }
}

TEST_CASE("mse search picks the oracle's best candidate, p = 1 first", "[core][quant]") {
  const int64_t rows = 6;
  const int64_t cols = 172;
  const at::Tensor w = test_weight(rows, cols);
  for (Grid grid : {Grid::GptqAsym, Grid::GptqSym, Grid::CtSym, Grid::AwqAsym}) {
    for (int bits : {3, 4}) {
      for (int64_t g : {int64_t{-1}, int64_t{64}}) {
        core::QuantSpec spec = core::weight_spec(bits, grid, g);
        spec.range = core::RangeSearch::Mse;
        INFO(core::describe(spec));
        const core::QuantizedTensor q = core::quantize_weight(w, spec);
        const int64_t width = g > 0 ? g : cols;
        const auto codes = q.codes.accessor<int32_t, 2>();
        int64_t failures = 0;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t k = 0; k < q.n_groups(); ++k) {
            const int64_t c0 = k * width;
            const std::vector<float> xs = row_slice(w, r, c0, std::min(width, cols - c0));
            const auto [lo, hi] = ref_range(xs, grid);
            // gptq quant.py: p = 1 - i/grid (double), cast to float32, times lo/hi in float32.
            std::vector<Ref> cands;
            std::vector<double> errs;
            for (int i = 0; i < 80; ++i) {
              const auto p = static_cast<float>(1.0 - i / 100.0);
              const Ref c = ref_params(lo * p, hi * p, grid, bits);
              double err = 0;
              for (float x : xs) {
                const float xq = ref_dequant(ref_code(x, c, grid, bits), c);
                err += std::pow(std::fabs(static_cast<double>(xq) - x), 2.4);
              }
              cands.push_back(c);
              errs.push_back(err);
            }
            const double best = *std::min_element(errs.begin(), errs.end());
            const float s = q.scales[r][k].item<float>();
            const auto z = static_cast<float>(q.zeros[r][k].item<int32_t>());
            std::size_t chosen = cands.size();
            for (std::size_t i = 0; i < cands.size() && chosen == cands.size(); ++i) {
              if (cands[i].s == s && cands[i].z == z)
                chosen = i;
            }
            if (chosen == cands.size() || errs[chosen] > best * (1 + kMseRelTol)) {
              ++failures;
              continue;
            }
            // Exact ties resolve to the earliest candidate (strict <).
            for (std::size_t i = 0; i < chosen; ++i)
              failures += errs[i] == errs[chosen];
            for (std::size_t j = 0; j < xs.size(); ++j)
              failures += codes[r][c0 + j] != ref_code(xs[j], {s, z}, grid, bits);
          }
        }
        CHECK(failures == 0);
      }
    }
  }
}
