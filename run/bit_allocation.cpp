#include "run/bit_allocation.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "algorithms/mixed_precision.h"
#include "core/io/atomic_file.h"
#include "core/log.h"
#include "run/gnuplot.h"
#include "run/run_report.h"

namespace calq::run {
namespace {

namespace fs = std::filesystem;

/// A clustered bar chart of every linear's sensitivity at each candidate (log scale), the chosen
/// width marked in the label: DIR/sensitivity.{dat,gp,png,svg}.
void plot_sensitivity(const std::string& dir,
                      const std::vector<algorithms::LinearSensitivity>& sensitivities,
                      const algorithms::BitAllocation& allocation,
                      const core::MixedPrecisionSection& section) {
  std::string data;
  for (size_t l = 0; l < sensitivities.size(); ++l) {
    const auto& s = sensitivities[l];
    data += fmt::format("\"L{} {} ({}b)\"", s.layer, s.linear,
                        section.candidates[allocation.choice[l]].bits);
    for (const double p : s.proxy) data += fmt::format(" {:.6g}", std::max(p, 1e-12));
    data += "\n";
  }
  fs::create_directories(dir);
  core::write_string_atomically(dir + "/sensitivity.dat", data);
  std::string plots;
  for (size_t c = 0; c < section.candidates.size(); ++c) {
    const auto& cand = section.candidates[c];
    plots += fmt::format("{}'{}/sensitivity.dat' using {}{} title 'W{}{}'", c ? ", " : "", dir, c + 2,
                         c ? "" : ":xtic(1)", cand.bits,
                         cand.group_size > 0 ? fmt::format(" g{}", cand.group_size) : "");
  }
  draw_with_gnuplot(
      dir, "sensitivity",
      fmt::format("set title 'Sensitivity per linear: tr(dW H dW^T) of RTN at each width "
                  "(chosen width in brackets; {:.3f} of {} bits per weight used)'\n"
                  "set style data histograms\nset style histogram clustered gap 1\n"
                  "set style fill solid 0.8 border -1\nset logscale y\nset grid ytics\n"
                  "set ylabel 'proxy loss (log)'\nset xtics rotate by 90 right font ',8'\n"
                  "set bmargin 10\nset key top right\nplot {}",
                  allocation.avg_bits, section.budget_bits, plots),
      "mixed precision");
}

}  // namespace

core::Recipe allocate_mixed_precision(core::Model& model, const core::Recipe& recipe,
                                      const at::Tensor& windows, int64_t batch_size,
                                      const calib::CacheUse& cache, RunReport& report,
                                      const std::string& out_dir) {
  const auto& section = *recipe.scheme.mixed_precision;
  const auto sensitivities =
      algorithms::hessian_sensitivity(model, recipe, windows, batch_size, cache);
  const auto allocation = algorithms::allocate_bits(sensitivities, section, recipe.scheme.weights.sym);
  nlohmann::json linears = nlohmann::json::array();
  for (size_t l = 0; l < sensitivities.size(); ++l) {
    const auto& s = sensitivities[l];
    const auto& c = section.candidates[allocation.choice[l]];
    linears.push_back({{"layer", s.layer}, {"linear", s.linear}, {"proxy", s.proxy},
                       {"bits", c.bits}, {"group_size", c.group_size}});
  }
  nlohmann::json candidates = nlohmann::json::array();
  for (const auto& c : section.candidates)
    candidates.push_back({{"bits", c.bits}, {"group_size", c.group_size}});
  report.set_section("mixed_precision",
                     nlohmann::json{{"budget_bits", allocation.budget_bits},
                                    {"avg_bits", allocation.avg_bits},
                                    {"bits_accounting", "b + (16 + b)/g asym, b + 16/g sym"},
                                    {"proxy", "tr(dW H dW^T), RTN at the candidate, float Hessians"},
                                    {"proxy_total", allocation.proxy_total},
                                    {"candidates", candidates},
                                    {"linears", linears}}.dump());
  log::info("mixed precision: {:.4f} stored bits per weight within a budget of {}",
            allocation.avg_bits, allocation.budget_bits);
  plot_sensitivity(out_dir, sensitivities, allocation, section);
  return algorithms::with_allocation(recipe, allocation);
}

}  // namespace calq::run
