// core/kernels/gptq.h against a naive oracle written here straight from docs/algorithms.md
// §3.1: one column at a time, no blocking, float64 error propagation, the float32 quantizer of
// core/quant (fit_params / quantize_codes / dequantize). The reference's stale group fit (§3.5-a)
// is reproduced by fitting on a snapshot of W taken at each block start, which is what the
// blocked reference's outer W holds. Float32 (kernel) vs float64 (oracle) rounding can flip a
// code whose x/s sits on a rounding boundary; GPTQ rows are independent, so a flip only changes
// the rest of its row. Codes must therefore be equal in every row, except rows whose first
// mismatch is such a tie (counted and reported with WARN).
#include "core/kernels/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/quant/quantized_tensor.h"
#include "core/quant/quantizer.h"

using namespace calq;
using core::kernels::GptqOptions;
using core::kernels::GptqResult;
using core::Grid;

namespace {

constexpr uint64_t kSeed = 20240611;
// A code flip is a tie when the oracle's x/s is this close to a rounding boundary: float32
// propagation noise on x/s is ~1e-5 at these sizes.
constexpr double kTieMargin = 1e-3;
// Losses: float32 kernel vs float64 oracle, same algorithm; summation order differs.
constexpr double kLossRelTol = 1e-4;
// With a tie row the rest of that row legitimately differs; its share of the loss is small.
constexpr double kLossRelTolWithTies = 2e-2;

struct Problem {
  at::Tensor W;  // [rows, cols] float32
  at::Tensor H;  // [cols, cols] float32, 2XᵀX/T
};

// Correlated inputs with per-channel scales (so diag(H) varies and act-order matters); the
// columns in `dead` are zero in X, so H[j, j] = 0.
Problem make_problem(int64_t rows, int64_t cols, uint64_t seed, std::vector<int64_t> dead = {}) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const int64_t tokens = 4 * cols;
  const at::Tensor mix = at::eye(cols) + 0.4 * at::randn({cols, cols}, gen) / std::sqrt(cols);
  const at::Tensor scale = at::exp(0.7 * at::randn({cols}, gen));
  at::Tensor X = at::matmul(at::randn({tokens, cols}, gen), mix) * scale;
  for (int64_t j : dead)
    X.select(1, j).zero_();
  Problem p;
  p.H = (2.0 / double(tokens)) * at::matmul(X.t(), X);
  p.H = (p.H + p.H.t()) / 2;  // exactly symmetric
  p.W = 0.1 * at::randn({rows, cols}, gen);
  return p;
}

core::QuantSpec spec_of(int bits, Grid grid, int64_t group_size) {
  return core::weight_spec(bits, grid, group_size);
}

struct Oracle {
  at::Tensor codes;   // [rows, cols] int32, original order
  at::Tensor scales;  // [rows, n_groups]
  at::Tensor zeros;
  at::Tensor margin;  // [rows, cols] distance of the rounded quantity from a .5 boundary
  std::vector<int64_t> perm;
  double reference_loss = 0;
  double proxy_loss = 0;
};

Oracle run_oracle(const Problem& p, const core::QuantSpec& spec, const GptqOptions& opts) {
  const int64_t rows = p.W.size(0), cols = p.W.size(1);
  const int64_t g = spec.granularity == core::Granularity::PerGroup ? spec.group_size : -1;
  const bool dynamic = g != -1 && !opts.static_groups;
  const int64_t n_groups = g == -1 ? 1 : (cols + g - 1) / g;
  at::Tensor W = p.W.to(at::kDouble).clone();
  at::Tensor H = p.H.to(at::kDouble).clone();
  at::Tensor scales = at::zeros({n_groups, rows}), zeros = at::zeros({n_groups, rows}, at::kInt);
  auto fit = [&](const at::Tensor& cols_of_w, int64_t group) {  // [rows, n] → params slot
    const core::QuantParams q = core::fit_params(cols_of_w.to(at::kFloat), spec);
    scales[group].copy_(q.scale);
    zeros[group].copy_(q.zero);
  };
  if (g == -1)
    fit(W, 0);                          // step 1, before dead columns are zeroed
  for (int64_t j = 0; j < cols; ++j) {  // step 2
    if (H[j][j].item<double>() == 0) {
      H[j][j] = 1.0;
      W.select(1, j).zero_();
    }
  }
  if (g != -1 && opts.static_groups) {  // step 3
    for (int64_t k = 0; k < n_groups; ++k)
      fit(W.narrow(1, k * g, std::min(g, cols - k * g)), k);
  }
  std::vector<int64_t> perm(static_cast<size_t>(cols));  // step 4, stable descending
  std::iota(perm.begin(), perm.end(), 0);
  if (opts.act_order) {
    std::vector<double> d(perm.size());
    for (int64_t j = 0; j < cols; ++j)
      d[size_t(j)] = H[j][j].item<double>();
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return d[a] > d[b]; });
  }
  const at::Tensor P = at::tensor(perm, at::kLong);
  W = W.index_select(1, P);
  H = H.index_select(0, P).index_select(1, P);
  H.diagonal().add_(opts.damp * H.diagonal().mean().item<double>());  // step 5
  const at::Tensor U =
      at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(H)), /*upper=*/true);  // 6

  Oracle o;
  at::Tensor codes = at::zeros({rows, cols}, at::kInt), Q = at::zeros({rows, cols}, at::kDouble);
  at::Tensor margin = at::zeros({rows, cols}, at::kDouble);
  at::Tensor snapshot;  // W at the start of the current block = the reference's outer W
  for (int64_t k = 0; k < cols; ++k) {  // step 7, one column at a time
    if (k % opts.block_size == 0)
      snapshot = W.clone();
    if (dynamic && k % g == 0) {
      const at::Tensor& src = opts.fit_on_updated_block ? W : snapshot;
      fit(src.narrow(1, k, std::min(g, cols - k)), k / g);
    }
    const int64_t group = g == -1 ? 0 : dynamic ? k / g : perm[size_t(k)] / g;
    const at::Tensor s = scales[group], z = zeros[group];
    const at::Tensor w = W.select(1, k);
    const at::Tensor c = core::quantize_codes(w.to(at::kFloat).unsqueeze(1), s, z, spec);
    const at::Tensor q = core::dequantize(c, s, z).flatten().to(at::kDouble);
    at::Tensor x = w.to(at::kFloat) / s;  // the value the grid rounds (ct: after adding z)
    if (spec.grid == Grid::CtSym || spec.grid == Grid::CtAsym)
      x = x + z.to(at::kFloat);
    const at::Tensor xd = x.to(at::kDouble);
    margin.select(1, k).copy_(at::abs(at::abs(xd - at::floor(xd)) - 0.5));
    codes.select(1, k).copy_(c.flatten());
    Q.select(1, k).copy_(q);
    const double d = U[k][k].item<double>();
    o.reference_loss += ((w - q).pow(2) / (d * d)).sum().item<double>() / 2;
    const at::Tensor e = (w - q) / d;
    W.narrow(1, k, cols - k) -= at::outer(e, U[k].narrow(0, k, cols - k));
  }
  const at::Tensor inv = at::argsort(P);  // step 8
  o.codes = codes.index_select(1, inv);
  o.margin = margin.index_select(1, inv);
  const at::Tensor dW = p.W.to(at::kDouble) - Q.index_select(1, inv);
  o.proxy_loss = (dW.matmul(p.H.to(at::kDouble)) * dW).sum().item<double>() / double(rows);
  o.scales = scales.t();
  o.zeros = zeros.t();
  if (opts.act_order)
    o.perm = perm;
  return o;
}

// Rows of `codes` that differ from the oracle: ties (first mismatch, in processing order, on a
// rounding boundary) and real mismatches.
struct Diff {
  int64_t tie_rows = 0;
  int64_t bad_rows = 0;
};

Diff compare_codes(const at::Tensor& codes, const at::Tensor& want, const Oracle& o) {
  Diff diff;
  const int64_t rows = codes.size(0), cols = codes.size(1);
  const auto a = codes.accessor<int32_t, 2>();
  const auto b = want.accessor<int32_t, 2>();
  const auto m = o.margin.accessor<double, 2>();
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < cols; ++k) {
      const int64_t j = o.perm.empty() ? k : o.perm[size_t(k)];
      if (a[i][j] == b[i][j])
        continue;
      (m[i][j] < kTieMargin ? diff.tie_rows : diff.bad_rows) += 1;
      if (m[i][j] >= kTieMargin)
        UNSCOPED_INFO("row " << i << " col " << j << ": " << a[i][j] << " vs " << b[i][j]);
      break;
    }
  }
  return diff;
}

void check_rel(double got, double want, double tol) {
  INFO("got " << got << " want " << want);
  CHECK(std::abs(got - want) <= tol * std::abs(want));
}

// Everything a result must satisfy against the oracle, for both implementations.
void check_against_oracle(const Problem& p, const core::QuantSpec& spec, const GptqOptions& opts) {
  const Oracle o = run_oracle(p, spec, opts);
  const GptqResult cpu = core::kernels::gptq_quantize(p.W, p.H, spec, opts);
  const GptqResult gen = core::kernels::gptq_quantize_generic(p.W, p.H, spec, opts);
  const Diff between = compare_codes(cpu.q.codes, gen.q.codes, o);
  CHECK(between.bad_rows == 0);
  if (between.tie_rows > 0) {
    WARN(between.tie_rows << " rows differ between the cpu and generic implementations after a "
                          << "tie (" << core::describe(spec) << ")");
  }
  for (const bool generic : {false, true}) {
    INFO((generic ? "generic ATen implementation" : "CPU implementation"));
    const GptqResult& r = generic ? gen : cpu;
    r.q.check();
    CHECK((r.q.codes.is_contiguous() && r.dequantized.is_contiguous()));
    CHECK(r.dequantized.equal(r.q.dequantize(at::kFloat)));  // bit for bit
    CHECK(r.perm == o.perm);
    const Diff diff = compare_codes(r.q.codes, o.codes, o);
    CHECK(diff.bad_rows == 0);
    if (diff.tie_rows > 0) {
      WARN(diff.tie_rows << " of " << r.q.codes.size(0) << " rows differ from the oracle after a "
                         << "tie (" << (generic ? "generic" : "cpu") << ", " << core::describe(spec)
                         << ", act_order " << opts.act_order << ", block " << opts.block_size
                         << ")");
    }
    const double tol = diff.tie_rows > 0 ? kLossRelTolWithTies : kLossRelTol;
    check_rel(r.reference_loss, o.reference_loss, tol);
    check_rel(r.proxy_loss, o.proxy_loss, tol);
    if (diff.tie_rows == 0) {
      CHECK(r.q.zeros.equal(o.zeros));
      CHECK(at::allclose(r.q.scales, o.scales, 1e-5, 0));
    }
    CHECK(r.damp_used == opts.damp);
  }
}

GptqOptions options(bool act_order, int64_t block_size, bool static_groups = false) {
  GptqOptions o;
  o.act_order = act_order;
  o.block_size = block_size;
  o.static_groups = static_groups;
  return o;
}

}  // namespace

TEST_CASE("gptq matches the one-column oracle per channel, asym and sym, 4 bits",
          "[algorithms][gptq]") {
  const Problem p = make_problem(48, 96, kSeed);
  const Grid grid = GENERATE(Grid::GptqAsym, Grid::GptqSym);
  check_against_oracle(p, spec_of(4, grid, -1), options(false, 128));
  check_against_oracle(p, spec_of(4, grid, -1), options(true, 32));
}

TEST_CASE("gptq matches the oracle with groups of 32, including a short last group",
          "[algorithms][gptq]") {
  const int64_t cols = GENERATE(96, 100);
  const Problem p = make_problem(40, cols, kSeed + 1);
  check_against_oracle(p, spec_of(4, Grid::GptqAsym, 32), options(false, 128));
  const GptqResult r = core::kernels::gptq_quantize(p.W, p.H, spec_of(4, Grid::GptqAsym, 32));
  CHECK(r.q.n_groups() == (cols + 31) / 32);
  CHECK(r.q.short_last_group() == (cols % 32 != 0));
  CHECK(r.q.g_idx.equal(core::sequential_g_idx(cols, 32)));
}

TEST_CASE("gptq act-order with dynamic groups gives the AutoGPTQ g_idx = invperm[j] / g",
          "[algorithms][gptq]") {
  const Problem p = make_problem(40, 100, kSeed + 2);
  const core::QuantSpec spec = spec_of(4, Grid::GptqAsym, 32);
  check_against_oracle(p, spec, options(true, 128));
  const GptqResult r = core::kernels::gptq_quantize(p.W, p.H, spec, options(true, 128));
  std::vector<int64_t> invperm(r.perm.size());
  for (size_t k = 0; k < r.perm.size(); ++k)
    invperm[size_t(r.perm[k])] = int64_t(k);
  const auto g_idx = r.q.g_idx.accessor<int32_t, 1>();
  bool monotonic = true;
  for (int64_t j = 0; j < 100; ++j) {
    CHECK(g_idx[j] == invperm[size_t(j)] / 32);
    if (j > 0 && g_idx[j] < g_idx[j - 1])
      monotonic = false;
  }
  CHECK_FALSE(monotonic);
}

TEST_CASE("gptq act-order with static groups keeps g_idx = j / g", "[algorithms][gptq]") {
  const Problem p = make_problem(40, 100, kSeed + 3);
  const core::QuantSpec spec = spec_of(4, Grid::GptqSym, 32);
  check_against_oracle(p, spec, options(true, 128, /*static_groups=*/true));
  check_against_oracle(p, spec, options(false, 24, /*static_groups=*/true));
  const GptqResult r = core::kernels::gptq_quantize(p.W, p.H, spec, options(true, 128, true));
  CHECK(r.q.g_idx.equal(core::sequential_g_idx(100, 32)));
}

TEST_CASE("gptq with blocks that do not divide cols reproduces the stale group fit",
          "[algorithms][gptq]") {
  // B = 24 and g = 32: groups straddle blocks, so the reference fits later groups on partially
  // updated weights (§3.5-a); g = 48 > B spans three blocks. The clean flavour is checked too.
  const Problem p = make_problem(40, 100, kSeed + 4);
  const int64_t g = GENERATE(32, 48);
  const bool act_order = GENERATE(false, true);
  GptqOptions opts = options(act_order, 24);
  check_against_oracle(p, spec_of(4, Grid::GptqAsym, g), opts);
  opts.fit_on_updated_block = true;
  check_against_oracle(p, spec_of(4, Grid::GptqAsym, g), opts);
}

TEST_CASE("gptq handles dead columns, and act-order ties keep the lower index first",
          "[algorithms][gptq]") {
  const Problem p = make_problem(40, 100, kSeed + 5, {3, 17, 18, 64, 99});
  const core::QuantSpec spec = spec_of(4, Grid::GptqAsym, GENERATE(int64_t{-1}, int64_t{32}));
  check_against_oracle(p, spec, options(false, 32));
  check_against_oracle(p, spec, options(true, 32));
  const GptqResult r = core::kernels::gptq_quantize(p.W, p.H, spec, options(true, 32));
  CHECK(r.dead_columns == 5);
  std::vector<int64_t> dead_order;
  for (int64_t j : r.perm) {
    if (p.H[j][j].item<float>() == 0)
      dead_order.push_back(j);
  }
  CHECK(dead_order == std::vector<int64_t>{3, 17, 18, 64, 99});
}

TEST_CASE("gptq matches the oracle at 3 and 8 bits and on the other grids", "[algorithms][gptq]") {
  const Problem p = make_problem(40, 100, kSeed + 6);
  for (const int bits : {3, 8}) {
    INFO(bits << " bits");
    check_against_oracle(p, spec_of(bits, Grid::GptqAsym, 32), options(true, 32));
  }
  for (const Grid grid : {Grid::CtSym, Grid::CtAsym, Grid::AwqAsym, Grid::Absmax}) {
    INFO(core::grid_name(grid));
    check_against_oracle(p, spec_of(4, grid, 32), options(false, 32));
  }
}

TEST_CASE("gptq beats RTN on the proxy loss for correlated inputs", "[algorithms][gptq]") {
  const Problem p = make_problem(64, 128, kSeed + 7);
  const core::QuantSpec spec = spec_of(4, Grid::GptqAsym, 32);
  const at::Tensor dW = p.W - core::fake_quantize(p.W, spec);
  const double rtn = (dW.matmul(p.H) * dW).sum().item<double>() / 64;
  const GptqResult r = core::kernels::gptq_quantize(p.W, p.H, spec);
  INFO("gptq " << r.proxy_loss << " rtn " << rtn);
  CHECK(r.proxy_loss < 0.8 * rtn);
}

TEST_CASE("gptq escalates damp on a non-positive-definite Hessian, then fails clearly",
          "[algorithms][gptq]") {
  const Problem p = make_problem(16, 48, kSeed + 8);
  const double mean = p.H.diagonal().mean().item<double>();
  for (const bool generic : {false, true}) {
    auto run = [&](const at::Tensor& H) {
      return generic ? core::kernels::gptq_quantize_generic(p.W, H, spec_of(4, Grid::GptqAsym, -1))
                     : core::kernels::gptq_quantize(p.W, H, spec_of(4, Grid::GptqAsym, -1));
    };
    at::Tensor H = p.H.clone();  // one slightly negative variance: λ = 0.01·mean is not enough
    H.select(0, 5).zero_();
    H.select(1, 5).zero_();
    H[5][5] = -0.05 * mean;
    const GptqResult r = run(H);
    CHECK(r.damp_escalations == 1);
    CHECK(r.damp_used == Approx(0.1));
    H[5][5] = -10.0 * mean;  // beyond damp 1 (2 escalations)
    CHECK_THROWS_AS(run(H), Error);
    CHECK_THROWS_WITH(run(H), Catch::Contains("not positive definite") &&
                                  Catch::Contains("damp 1 after 2 escalation"));
  }
}

TEST_CASE("gptq is deterministic and rejects bad arguments", "[algorithms][gptq]") {
  const Problem p = make_problem(300, 100, kSeed + 9);  // more rows than one tile
  const core::QuantSpec spec = spec_of(4, Grid::GptqAsym, 32);
  const GptqResult a = core::kernels::gptq_quantize(p.W, p.H, spec, options(true, 32));
  const GptqResult b = core::kernels::gptq_quantize(p.W, p.H, spec, options(true, 32));
  CHECK(a.q.codes.equal(b.q.codes));
  CHECK(a.dequantized.equal(b.dequantized));
  CHECK(a.q.scales.equal(b.q.scales));
  CHECK(a.reference_loss == b.reference_loss);
  CHECK(a.proxy_loss == b.proxy_loss);
  check_against_oracle(p, spec, options(true, 32));

  // Any float dtype and layout: a bf16 weight is quantized as its float32 values, a transposed
  // view as its values.
  const at::Tensor w_bf16 = p.W.to(at::kBFloat16);
  CHECK(core::kernels::gptq_quantize(w_bf16, p.H, spec)
            .q.codes.equal(core::kernels::gptq_quantize(w_bf16.to(at::kFloat), p.H, spec).q.codes));
  const at::Tensor w_t = p.W.t().contiguous().t();
  CHECK(core::kernels::gptq_quantize(w_t, p.H, spec)
            .q.codes.equal(core::kernels::gptq_quantize(p.W, p.H, spec).q.codes));

  CHECK_THROWS_WITH(core::kernels::gptq_quantize(p.W, p.H.narrow(0, 0, 99), spec),
                    Catch::Contains("Hessian [99, 100]"));
  GptqOptions bad;
  bad.block_size = 0;
  CHECK_THROWS_WITH(core::kernels::gptq_quantize(p.W, p.H, spec, bad),
                    Catch::Contains("gptq.block_size"));
  at::Tensor nan_w = p.W.clone();
  nan_w[0][0] = NAN;
  CHECK_THROWS_WITH(core::kernels::gptq_quantize(nan_w, p.H, spec), Catch::Contains("NaN"));
}
