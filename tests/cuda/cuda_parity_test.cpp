// CPU/CUDA parity of the kernels in core/kernels (docs/kernels.md §5): GPTQ codes, Hessians,
// activation fake-quant, and the sotu-llama-6L perplexity run on CUDA. Built only with
// CALQ_CUDA=ON (binary calq_cuda_tests); every case returns early with a WARN when no CUDA device
// is present (Catch2 v2 has no SKIP), so CI can build it on a machine without a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/eval/eval_text.h"
#include "core/eval/perplexity.h"
#include "core/kernels/device.h"
#include "core/kernels/fake_quant.h"
#include "core/kernels/gptq.h"
#include "core/kernels/hessian.h"
#include "core/model/model.h"
#include "core/quant/activation_quant.h"
#include "core/quant/quantizer.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/test_data.h"

using namespace calq;
using core::Grid;

namespace {

constexpr uint64_t kSeed = 20240611;
// GPTQ: cuBLAS and OpenBLAS sum the lazy-update GEMMs in different orders, so an x/s within a
// rounding of a code boundary can flip, and a flipped code changes the rest of its row's error
// feedback. At these sizes (float32, well-conditioned H) that touches well under 1 % of codes.
constexpr double kMinCodeAgreement = 0.99;
constexpr double kLossRelTol = 1e-3;  // the same flips, seen in the summed losses
// Hessian: float32 products summed in another order (cuBLAS vs ATen's CPU GEMM), then float64.
constexpr double kHessianRelTol = 1e-5;
// sotu-llama-6L on its held-out text, seqlen 512, all 490 windows: transformers' figure
// (tests/core/perplexity_test.cpp), and the same tolerance.
constexpr double kSotuValidPpl512 = 34.1207;
constexpr double kPplRelTol = 5e-4;

#define CALQ_REQUIRE_CUDA()                              \
  if (!at::hasCUDA()) {                                  \
    WARN("SKIPPED: no CUDA device");                     \
    return;                                              \
  }

const at::Device kCuda(at::kCUDA, 0);

struct Problem {
  at::Tensor W;  // [rows, cols] float32
  at::Tensor H;  // [cols, cols] float32, 2XᵀX/T
};

// Correlated inputs with per-channel scales, as tests/core/gptq_kernel_test.cpp.
Problem make_problem(int64_t rows, int64_t cols, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const int64_t tokens = 4 * cols;
  const at::Tensor mix = at::eye(cols) + 0.4 * at::randn({cols, cols}, gen) / std::sqrt(cols);
  const at::Tensor scale = at::exp(0.7 * at::randn({cols}, gen));
  const at::Tensor X = at::matmul(at::randn({tokens, cols}, gen), mix) * scale;
  Problem p;
  p.H = (2.0 / double(tokens)) * at::matmul(X.t(), X);
  p.H = (p.H + p.H.t()) / 2;
  p.W = 0.1 * at::randn({rows, cols}, gen);
  return p;
}

double rel(double got, double want) {
  return std::abs(got - want) / std::abs(want);
}

}  // namespace

TEST_CASE("cuda gptq codes agree with the cpu kernel", "[cuda][gptq]") {
  CALQ_REQUIRE_CUDA();
  struct Config {
    int bits;
    Grid grid;
    int64_t group_size;
    bool act_order;
    bool static_groups;
    bool fit_updated;
    int64_t block_size;
  };
  const Config c = GENERATE(Config{4, Grid::GptqAsym, 128, false, false, false, 128},
                            Config{4, Grid::GptqAsym, 32, true, false, false, 128},
                            Config{3, Grid::GptqSym, 64, true, true, false, 32},
                            Config{4, Grid::GptqAsym, 32, false, false, true, 48},
                            Config{8, Grid::CtAsym, -1, true, false, false, 128},
                            Config{4, Grid::CtSym, 128, false, false, false, 128});
  const Problem p = make_problem(256, 512, kSeed);
  const core::QuantSpec spec = core::weight_spec(c.bits, c.grid, c.group_size);
  core::kernels::GptqOptions opts;
  opts.act_order = c.act_order;
  opts.static_groups = c.static_groups;
  opts.fit_on_updated_block = c.fit_updated;
  opts.block_size = c.block_size;
  INFO(core::describe(spec) << ", act_order " << c.act_order << ", static " << c.static_groups
                            << ", fit updated " << c.fit_updated << ", block " << c.block_size);
  const auto cpu = core::kernels::gptq_quantize(p.W, p.H, spec, opts);
  const auto gpu = core::kernels::gptq_quantize(p.W.to(kCuda), p.H.to(kCuda), spec, opts);
  REQUIRE(gpu.q.codes.device().is_cuda());
  gpu.q.check();
  const at::Tensor codes = gpu.q.codes.cpu();
  const double agree = codes.eq(cpu.q.codes).to(at::kDouble).mean().item<double>();
  CHECK(agree >= kMinCodeAgreement);
  CHECK(gpu.q.g_idx.cpu().equal(cpu.q.g_idx));
  CHECK(gpu.perm == cpu.perm);
  CHECK(gpu.dequantized.cpu().equal(gpu.q.dequantize(at::kFloat).cpu()));  // bit for bit
  CHECK(rel(gpu.reference_loss, cpu.reference_loss) < kLossRelTol);
  CHECK(rel(gpu.proxy_loss, cpu.proxy_loss) < kLossRelTol);
  CHECK(gpu.damp_used == cpu.damp_used);
}

TEST_CASE("cuda hessian accumulation matches the cpu one", "[cuda][hessian]") {
  CALQ_REQUIRE_CUDA();
  at::Generator gen = at::detail::createCPUGenerator(kSeed);
  const int64_t in = GENERATE(int64_t{96}, int64_t{300}, int64_t{640});  // one, two, three blocks
  std::vector<at::Tensor> cpu_sum, gpu_sum;
  int64_t n_samples = 0;
  for (int batch = 0; batch < 3; ++batch) {
    const at::Tensor x = at::randn({2 * 64, in}, gen) * at::exp(at::randn({in}, gen));
    core::kernels::accumulate_xtx(cpu_sum, x);
    core::kernels::accumulate_xtx(gpu_sum, x.to(kCuda));
    n_samples += 2;
  }
  const at::Tensor h_cpu = core::kernels::hessian_from_xtx(cpu_sum, n_samples);
  const at::Tensor h_gpu = core::kernels::hessian_from_xtx(gpu_sum, n_samples).cpu();
  CHECK(h_gpu.equal(h_gpu.t()));  // exactly symmetric, as the CPU's
  const double err = ((h_gpu - h_cpu).abs().max() / h_cpu.abs().max()).item<double>();
  CHECK(err < kHessianRelTol);
  CHECK(cpu_sum.empty());
  CHECK(gpu_sum.empty());
}

TEST_CASE("cuda activation fake-quant equals the cpu bit for bit", "[cuda][act]") {
  CALQ_REQUIRE_CUDA();
  at::Generator gen = at::detail::createCPUGenerator(kSeed);
  const at::Tensor x = at::randn({3, 37, 200}, gen) * 4;
  const int bits = GENERATE(4, 8);
  const bool sym = GENERATE(true, false);
  const auto gran = GENERATE(core::ActGranularity::PerToken, core::ActGranularity::PerTensor);
  const core::ActQuantSpec spec(bits, sym, gran);
  INFO("bits " << bits << ", sym " << sym);
  const at::Tensor cpu = core::fake_quantize_activations(x, spec);
  const at::Tensor gpu = core::fake_quantize_activations(x.to(kCuda), spec).cpu();
  CHECK(gpu.equal(cpu));
  // bf16 activations (computed in float32, returned in bf16).
  const at::Tensor xb = x.to(at::kBFloat16);
  CHECK(core::fake_quantize_activations(xb.to(kCuda), spec).cpu().equal(
      core::fake_quantize_activations(xb, spec)));
  if (gran == core::ActGranularity::PerTensor) {  // a static scale (and zero for asym)
    const at::Tensor s = at::full({1}, 0.05, at::kFloat);
    const at::Tensor z = at::full({1}, sym ? 0 : (1 << (bits - 1)), at::kInt);
    CHECK(core::fake_quantize_activations(x.to(kCuda), spec, s.to(kCuda), z.to(kCuda))
              .cpu()
              .equal(core::fake_quantize_activations(x, spec, s, z)));
  }
}

TEST_CASE("cuda kernels refuse mixed devices", "[cuda][kernel]") {
  CALQ_REQUIRE_CUDA();
  CHECK(core::kernels::built_with_cuda());
  const Problem p = make_problem(16, 32, kSeed);
  CHECK_THROWS_WITH(core::kernels::gptq_quantize(p.W.to(kCuda), p.H,
                                                 core::weight_spec(4, Grid::GptqAsym, -1)),
                    Catch::Contains("one device"));
}

TEST_CASE("sotu-llama-6L perplexity on cuda matches transformers", "[cuda][eval][data]") {
  CALQ_REQUIRE_CUDA();
  CALQ_REQUIRE_DATA(dir, "sotu-llama-6L");
  core::LoadOptions load;
  load.path = dir.string();
  load.device = "cuda";
  auto model = core::load_model(load);
  REQUIRE(model->tokenizer() != nullptr);
  const core::EvalText text = core::read_eval_text((dir / "sotu_valid.txt").string());
  const std::vector<int32_t> tokens = model->tokenizer()->encode(text.text, true);
  core::PerplexityOptions options;
  options.seqlen = 512;
  options.show_progress = false;
  const core::PerplexityResult r = core::evaluate_perplexity(*model, tokens, options);
  CHECK(r.windows == 490);
  CHECK(rel(r.ppl, kSotuValidPpl512) < kPplRelTol);
}
