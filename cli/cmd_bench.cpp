// `calq bench gptq`: the GPTQ kernel alone on a random layer (docs/architecture.md §7). W and the
// inputs X [tokens, cols] are seeded random, H = 2XᵀX/tokens is built untimed, then
// gptq_quantize is timed over --repeat runs and the median reported; --json writes the figures
// bench/run.sh turns into BENCHMARKS.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/kernels/gptq.h"
#include "cli/bounds.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"
#include "core/log.h"
#include "core/quant/quantizer.h"

namespace calq::cli {
namespace {

struct BenchGptqArgs {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t tokens = 0;
  int bits = 4;
  int64_t group_size = 128;
  bool sym = false;
  bool act_order = false;
  bool static_groups = false;
  int64_t block_size = 128;
  double damp = 0.01;
  std::string device = "cpu";
  int repeat = 3;
  uint64_t seed = 0;
  std::string json;
};

at::Device parse_device(const std::string& name) {
  if (name == "cpu")
    return at::Device(at::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    CALQ_CHECK(at::hasCUDA(), "--device {}: this LibTorch build has no CUDA; expected cpu", name);
    return at::Device(name);
  }
  fail("--device: unknown device \"{}\"; expected cpu or cuda", name);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int run_bench_gptq(const BenchGptqArgs& a) {
  if (!a.json.empty()) core::check_output_file(a.json, "--json");
  const at::Device device = parse_device(a.device);
  const core::QuantSpec spec =
      core::weight_spec(a.bits, a.sym ? core::Grid::GptqSym : core::Grid::GptqAsym, a.group_size);
  core::kernels::GptqOptions opts;
  opts.act_order = a.act_order;
  opts.static_groups = a.static_groups;
  opts.block_size = a.block_size;
  opts.damp = a.damp;

  // Inputs: normal, each input channel scaled by exp(N(0, 0.5²)) so diag(H) varies (act-order has
  // something to sort, the Cholesky something to do). Not timed.
  log::info("bench gptq: random {}x{} layer, H = 2XᵀX/T from {} tokens (seed {}, not timed)",
            a.rows, a.cols, a.tokens, a.seed);
  at::Generator gen = at::detail::createCPUGenerator(a.seed);
  const at::Tensor channel_scale = at::exp(0.5 * at::randn({a.cols}, gen));
  const at::Tensor W = (0.02 * at::randn({a.rows, a.cols}, gen)).to(device);
  at::Tensor H;
  {
    const at::Tensor X = (at::randn({a.tokens, a.cols}, gen) * channel_scale).to(device);
    H = at::mm(X.t(), X).mul_(2.0 / double(a.tokens));
  }

  std::vector<double> seconds, proxy_seconds;
  core::kernels::GptqResult result;
  // As the GPTQ pass runs same-shape linears: the buffers of one run serve the next.
  core::kernels::GptqWorkspace workspace;
  for (int i = 0; i < a.repeat; ++i) {
    const auto start = std::chrono::steady_clock::now();
    // Ends with host reads: synchronized.
    result = core::kernels::gptq_quantize(W, H, spec, opts, false, &workspace);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    proxy_seconds.push_back(result.proxy_seconds);
    log::info("bench gptq: run {}/{}: {:.3f} s ({:.3f} s of it the proxy loss)", i + 1, a.repeat,
              seconds.back(), result.proxy_seconds);
  }
  const double med = median(seconds);
  const int threads = at::get_num_threads();
  std::printf(
      "gptq %lldx%lld, %lld tokens, %s w%d g%lld%s block %lld: %.3f s (median of %d; %.3f s of "
      "it the proxy loss), proxy loss %.6g, %d thread(s), %s\n",
      static_cast<long long>(a.rows), static_cast<long long>(a.cols),
      static_cast<long long>(a.tokens), a.sym ? "sym" : "asym", a.bits,
      static_cast<long long>(a.group_size), a.act_order ? " act-order" : "",
      static_cast<long long>(a.block_size), med, a.repeat, median(proxy_seconds), result.proxy_loss,
      threads, a.device.c_str());
  std::fflush(stdout);
  if (!a.json.empty()) {
    const nlohmann::json doc = {{core::kWrittenByKey, "calq bench gptq"},
                                {"seconds", med},
                                {"proxy_loss", result.proxy_loss},
                                {"rows", a.rows},
                                {"cols", a.cols},
                                {"tokens", a.tokens},
                                {"bits", a.bits},
                                {"group_size", a.group_size},
                                {"device", a.device},
                                {"threads", threads},
                                {"sym", a.sym},
                                {"act_order", a.act_order},
                                {"static_groups", a.static_groups},
                                {"block_size", a.block_size},
                                {"damp", a.damp},
                                {"damp_used", result.damp_used},
                                {"reference_loss", result.reference_loss},
                                {"repeat", a.repeat},
                                {"seconds_all", seconds},
                                {"seconds_min", *std::min_element(seconds.begin(), seconds.end())},
                                {"seconds_max", *std::max_element(seconds.begin(), seconds.end())},
                                {"proxy_seconds", median(proxy_seconds)},
                                {"seed", a.seed}};
    core::write_string_atomically(a.json, doc.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

CommandRunner add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchGptqArgs>();
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks of calq's kernels");
  bench->require_subcommand(1);
  CLI::App* gptq =
      bench->add_subcommand("gptq", "Time the GPTQ kernel on a random layer (Hessian given)");
  gptq->add_option("--rows", args->rows, "Output features of the layer")
      ->required()
      ->check(at_least(1));
  gptq->add_option("--cols", args->cols, "Input features of the layer")
      ->required()
      ->check(at_least(1));
  gptq->add_option("--tokens", args->tokens, "Calibration tokens behind H = 2XᵀX/T")
      ->required()
      ->check(at_least(1));
  gptq->add_option("--bits", args->bits, "Weight bits: 2, 3, 4 or 8")->capture_default_str();
  gptq->add_option("--group-size", args->group_size, "Group size, -1 = per channel")
      ->capture_default_str();
  gptq->add_flag("--sym", args->sym, "Symmetric grid (gptq_sym) instead of gptq_asym");
  gptq->add_flag("--act-order", args->act_order, "Process columns by descending diag(H)");
  gptq->add_flag("--static-groups", args->static_groups, "Fit group params up front");
  gptq->add_option("--block-size", args->block_size, "Columns per lazy batch")
      ->capture_default_str()
      ->check(at_least(1));
  gptq->add_option("--damp", args->damp, "Relative damp")->capture_default_str();
  gptq->add_option("--device", args->device, "cpu | cuda")->capture_default_str();
  gptq->add_option("--repeat", args->repeat, "Timed runs; the median is reported")
      ->capture_default_str()
      ->check(at_least(1));
  gptq->add_option("--seed", args->seed, "Seed of the random layer and inputs")
      ->capture_default_str();
  gptq->add_option("--json", args->json, "Write the figures to this JSON file");
  return [args, gptq] {
    if (gptq->parsed())
      return run_bench_gptq(*args);
    return 1;
  };
}

}  // namespace calq::cli
