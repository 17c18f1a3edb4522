#include "cli/sweep_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "run/gnuplot.h"
#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/atomic_file.h"
#include "core/log.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct Cell {
  std::string method;
  std::string setting;
  double avg_bits = 16.0;
  bool is_float = false;
  std::string run;
  Json eval;  // report "eval"."perplexity"
  Json kl;     // report "eval"."kl" (null without)
  Json tasks;  // report "eval"."tasks" (null without)
};

std::string capitalized(const std::string& pass, const Json& options) {
  if (pass == "gptq") return options.value("act_order", false) ? "GPTQ (act-order)" : "GPTQ";
  if (pass == "awq") return options.value("flavor", "llm-awq") == "autoawq" ? "AWQ (AutoAWQ)" : "AWQ";
  if (pass == "smoothquant") {
    const double alpha = options.value("alpha", 0.5);
    return alpha == 0.5 ? "SmoothQuant" : fmt::format("SmoothQuant α={:g}", alpha);
  }
  if (pass == "rtn") return "RTN";
  return pass;
}

/// "AWQ+GPTQ", "SmoothQuant" (its implicit RTN left out), "RTN".
std::string method_of(const Json& recipe) {
  std::vector<std::string> names;
  const Json& passes = recipe.at("passes");
  for (size_t i = 0; i < passes.size(); ++i) {
    const auto& [name, options] = *passes[i].items().begin();
    names.push_back(capitalized(name, options));
  }
  if (names.empty()) names.push_back("RTN");
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : "+") + n;
  return out;
}

/// Stored bits per weight: codes plus a float16 scale (and a zero for asymmetric grids) per group.
double avg_bits(const Json& weights) {
  const double b = weights.at("bits").get<double>();
  const double g = weights.at("group_size").get<double>();
  if (g <= 0) return b;
  const bool sym = weights.value("sym", false);
  return b + (16.0 + (sym ? 0.0 : b)) / g;
}

/// "W4", or the format's name for FP/NF weights and activations ("Wfp4_e2m1", "Afp8_e4m3"):
/// int8 and fp8 W8A8 are different columns, not one cell overwritten by the other.
std::string width_label(char side, const Json& section) {
  const std::string format = section.value("format", std::string("int"));
  return format == "int" ? fmt::format("{}{}", side, section.at("bits").get<int>())
                         : fmt::format("{}{}", side, format);
}

std::string setting_of(const Json& scheme) {
  const Json& w = scheme.at("weights");
  const int64_t g = w.at("group_size").get<int64_t>();
  std::string s = width_label('W', w);
  const Json& a = scheme.value("activations", Json());
  s += a.is_null() ? "A16" : width_label('A', a);
  s += g > 0 ? fmt::format(" g{}", g) : "";
  return s;
}

Cell read_cell(const SweepRun& run) {
  const Json r = core::read_json_file(run.report_path, {"report", "the report.json of the run"});
  Cell c;
  c.run = run.name;
  c.eval = r.at("eval").at("perplexity");
  c.kl = r.at("eval").value("kl", Json());
  c.tasks = r.at("eval").value("tasks", Json());
  c.is_float = r.value("float", false);
  if (c.is_float) {
    c.method = fmt::format("FP ({})", r.at("recipe").at("model").value("dtype", "float32"));
    c.setting = "";
    c.avg_bits = 16.0;
    return c;
  }
  c.method = method_of(r.at("recipe"));
  c.setting = setting_of(r.at("recipe").at("scheme"));
  c.avg_bits = avg_bits(r.at("recipe").at("scheme").at("weights"));
  if (r.contains("mixed_precision")) {
    // Per-linear widths: the column is the budget, the plot point the achieved average.
    const Json& m = r.at("mixed_precision");
    const Json& scheme = r.at("recipe").at("scheme");
    const Json& a = scheme.value("activations", Json());
    c.method += " (mixed)";
    c.setting = fmt::format("W≤{}{}", m.at("budget_bits").get<double>(),
                            a.is_null() ? "A16" : fmt::format("A{}", a.at("bits").get<int>()));
    c.avg_bits = m.at("avg_bits").get<double>();
  }
  return c;
}

std::string caption(const std::vector<Cell>& cells, const Json& calibration) {
  std::set<std::string> sets;
  for (const Cell& c : cells) {
    for (const Json& e : c.eval)
      sets.insert(fmt::format("{} (join {}, {} windows of {} tokens from a {}-token text)",
                              e.at("dataset").get<std::string>(), e.value("join", "as-is"),
                              e.value("windows", int64_t{0}), e.at("seqlen").get<int64_t>(),
                              e.at("tokens").get<int64_t>()));
  }
  std::string text = "Perplexity (lower is better) on ";
  bool first = true;
  for (const auto& s : sets) {
    text += (first ? "" : "; ") + s;
    first = false;
  }
  if (!calibration.is_null())
    text += fmt::format(". Calibration: {}, {} windows of {} tokens, seed {}",
                        calibration.value("dataset", "?"), calibration.value("nsamples", 0),
                        calibration.value("seqlen", 0), calibration.value("seed", 0));
  return text + ".";
}

/// " (A8)" for a setting with quantized activations ("W8A8"), "" for weight-only ("W4A16 g128").
std::string act_suffix(const std::string& setting) {
  const size_t a = setting.find('A');
  if (a == std::string::npos) return "";
  const std::string bits = setting.substr(a + 1, setting.find(' ', a) - a - 1);
  return bits == "16" ? "" : " (A" + bits + ")";
}

void plot(const std::string& dir, const std::vector<Cell>& cells, const std::string& dataset) {
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  double fp = 0.0, lo = 1e300, hi = 0.0;
  for (const Cell& c : cells) {
    for (const Json& e : c.eval) {
      if (e.at("dataset") != dataset) continue;
      const double p = e.at("ppl").get<double>();
      lo = std::min(lo, p);
      hi = std::max(hi, p);
      if (c.is_float) fp = p;
      // Weight-only and weight+activation points of one method are different curves.
      else series[c.method + act_suffix(c.setting)].emplace_back(c.avg_bits, p);
    }
  }
  std::ostringstream data, script;
  std::vector<std::string> plots;
  int index = 0;
  for (auto& [method, points] : series) {
    std::sort(points.begin(), points.end());
    for (const auto& [x, y] : points) data << x << " " << y << "\n";
    data << "\n\n";
    plots.push_back(fmt::format("'{}/ppl_vs_bits.dat' index {} with linespoints lw 2 pt 7 title '{}'",
                                dir, index++, method));
  }
  if (fp > 0) plots.push_back(fmt::format("{} with lines dt 2 lc rgb 'black' title 'FP'", fp));
  core::write_string_atomically(dir + "/ppl_vs_bits.dat", data.str());
  std::string all;
  for (const auto& p : plots) all += (all.empty() ? "" : ", ") + p;
  // Log scale inside one decade gets no labelled ticks by default: place six, geometrically.
  std::string ytics;
  for (int k = 0; k <= 5; ++k) {
    const double y = lo * 0.9 * std::pow(hi * 1.15 / (lo * 0.9), k / 5.0);
    ytics += fmt::format("{}{:.3g}", k == 0 ? "" : ", ", y);
  }
  script << "set title 'Perplexity vs average bits per weight (" << dataset << ")'\n"
         << "set yrange [" << lo * 0.9 << ":" << hi * 1.15 << "]\nset offsets 0.1, 0.1, 0, 0\n"
         << "set xlabel 'average bits per weight (codes + scales/zeros)'\nset ylabel 'perplexity'\n"
         << "set logscale y\nset ytics (" << ytics << ")\nset grid\nset key top right\nplot "
         << all;
  run::draw_with_gnuplot(dir, "ppl_vs_bits", script.str(), "sweep");
}

/// kl_vs_bits.{png,svg}: each method's mean KL to the float model against average bits per
/// weight, one line per method as ppl_vs_bits (log scale; the float model's zero is not drawn).
void plot_kl(const std::string& dir, const std::vector<Cell>& cells) {
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  double lo = 1e300, hi = 0.0;
  for (const Cell& c : cells) {
    if (c.is_float || c.kl.is_null() || !c.kl.at("kl_mean").is_number()) continue;
    const double kl = c.kl.at("kl_mean").get<double>();
    if (kl <= 0) continue;
    lo = std::min(lo, kl);
    hi = std::max(hi, kl);
    series[c.method + act_suffix(c.setting)].emplace_back(c.avg_bits, kl);
  }
  if (series.empty()) return;
  std::ostringstream data, script;
  std::string all;
  int index = 0;
  for (auto& [method, points] : series) {
    std::sort(points.begin(), points.end());
    for (const auto& [x, y] : points) data << x << " " << y << "\n";
    data << "\n\n";
    all += fmt::format("{}'{}/kl_vs_bits.dat' index {} with linespoints lw 2 pt 7 title '{}'",
                       all.empty() ? "" : ", ", dir, index++, method);
  }
  core::write_string_atomically(dir + "/kl_vs_bits.dat", data.str());
  script << "set title 'KL divergence to the float model vs average bits per weight'\n"
         << "set yrange [" << lo * 0.5 << ":" << hi * 2 << "]\nset offsets 0.1, 0.1, 0, 0\n"
         << "set xlabel 'average bits per weight (codes + scales/zeros)'\n"
         << "set ylabel 'mean KL(P_float || P_method), nats per token'\n"
         << "set logscale y\nset grid\nset key top right\nplot " << all;
  run::draw_with_gnuplot(dir, "kl_vs_bits", script.str(), "sweep");
}

/// The second table (issue 24): per run, the first perplexity beside its KL divergence to the
/// float model on the same windows, top-1 agreement, and each task's accuracy. Empty when no
/// run measured any of them. Also writes DIR/table_eval.csv.
std::string eval_table(const std::string& dir, const std::vector<Cell>& cells) {
  std::vector<std::string> tasks;
  bool any_kl = false;
  for (const Cell& c : cells) {
    any_kl = any_kl || !c.kl.is_null();
    if (c.tasks.is_array())
      for (const Json& t : c.tasks) {
        const std::string name = t.at("task").get<std::string>();
        if (std::find(tasks.begin(), tasks.end(), name) == tasks.end()) tasks.push_back(name);
      }
  }
  if (!any_kl && tasks.empty()) return "";
  std::ostringstream md, csv;
  md << "| Method | Setting | ppl (" << (cells.front().eval.empty() ? "" : cells.front().eval.at(0).at("dataset").get<std::string>())
     << ") |";
  csv << "method,setting,avg_bits,ppl,kl_mean,kl_median,kl_p99,top1_agreement,kl_top_k";
  if (any_kl) md << " KL mean | KL p99 | top-1 agree |";
  for (const auto& t : tasks) {
    md << " " << t << " acc |";
    csv << "," << t << "_acc";
  }
  csv << ",run\n";
  md << "\n|---|---|---:|";
  for (size_t i = 0; i < (any_kl ? 3 : 0) + tasks.size(); ++i) md << "---:|";
  md << "\n";
  const auto fixed = [](const Json& j, const char* key, const char* format) {
    return j.is_null() || !j.contains(key) || !j.at(key).is_number()
               ? std::string("–")
               : fmt::format(fmt::runtime(format), j.at(key).get<double>());
  };
  for (const Cell& c : cells) {
    const Json ppl = c.eval.empty() ? Json() : c.eval.at(0);
    md << "| " << c.method << " | " << (c.setting.empty() ? "–" : c.setting) << " | "
       << fixed(ppl, "ppl", "{:.2f}") << " |";
    csv << fmt::format("\"{}\",\"{}\",{:.4f},{},{},{},{},{},{}", c.method, c.setting, c.avg_bits,
                       fixed(ppl, "ppl", "{:.6f}"), fixed(c.kl, "kl_mean", "{:.6g}"),
                       fixed(c.kl, "kl_median", "{:.6g}"), fixed(c.kl, "kl_p99", "{:.6g}"),
                       fixed(c.kl, "top1_agreement", "{:.6f}"), fixed(c.kl, "top_k", "{:.0f}"));
    if (any_kl) {
      md << " " << fixed(c.kl, "kl_mean", "{:.4f}") << " | " << fixed(c.kl, "kl_p99", "{:.4f}")
         << " | "
         << (c.kl.is_null() ? std::string("–")
                            : fmt::format("{:.1f} %", 100.0 * c.kl.at("top1_agreement").get<double>()))
         << " |";
    }
    for (const auto& t : tasks) {
      Json metrics;
      if (c.tasks.is_array())
        for (const Json& r : c.tasks)
          if (r.at("task") == t) metrics = r.at("metrics");
      md << " " << (metrics.is_null() ? std::string("–")
                                      : fmt::format("{:.1f} %", 100.0 * metrics.at("acc").get<double>()))
         << " |";
      csv << "," << fixed(metrics, "acc", "{:.6f}");
    }
    md << "\n";
    csv << "," << c.run << "\n";
  }
  core::write_string_atomically(dir + "/table_eval.csv", csv.str());
  std::string k_note;
  for (const Cell& c : cells)
    if (!c.kl.is_null()) {
      k_note = fmt::format(" KL(P_float ‖ P_method) per predicted token on the windows of the "
                           "first perplexity set, over the float model's top {} tokens and the "
                           "rest as one bucket (docs/tasks.md); top-1 agree: how often the two "
                           "argmaxes agree.", c.kl.at("top_k").get<int64_t>());
      break;
    }
  md << "\n" << "Beyond perplexity." << k_note
     << (tasks.empty() ? "" : " Task accuracy with lm-eval-harness's semantics (docs/tasks.md).")
     << "\n";
  return md.str();
}

}  // namespace

std::string write_sweep_table(const std::string& dir, const std::vector<SweepRun>& runs) {
  std::vector<Cell> cells;
  Json calibration;
  for (const SweepRun& run : runs) {
    cells.push_back(read_cell(run));
    if (calibration.is_null()) {
      const Json r =
          core::read_json_file(run.report_path, {"report", "the report.json of the run"});
      if (!r.value("float", false)) calibration = r.value("calibration", Json());
    }
  }
  // Columns: dataset × setting, in first-seen order; rows: float first, then methods as seen.
  std::vector<std::string> datasets, settings, methods;
  const auto add = [](std::vector<std::string>& v, const std::string& x) {
    if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
  };
  for (const Cell& c : cells) {
    for (const Json& e : c.eval) add(datasets, e.at("dataset").get<std::string>());
    if (!c.is_float) add(settings, c.setting);
  }
  for (const Cell& c : cells) if (c.is_float) add(methods, c.method);
  for (const Cell& c : cells) if (!c.is_float) add(methods, c.method);
  std::map<std::tuple<std::string, std::string, std::string>, double> ppl;
  std::ostringstream csv;
  csv << "method,setting,avg_bits,dataset,join,seqlen,tokens,ppl,run\n";
  for (const Cell& c : cells) {
    for (const Json& e : c.eval) {
      const std::string d = e.at("dataset").get<std::string>();
      const double p = e.at("ppl").get<double>();
      if (c.is_float) for (const auto& s : settings) ppl[{c.method, d, s}] = p;
      else ppl[{c.method, d, c.setting}] = p;
      csv << fmt::format("\"{}\",\"{}\",{:.4f},{},{},{},{},{:.6f},{}\n", c.method, c.setting,
                         c.avg_bits, d, e.value("join", "as-is"), e.at("seqlen").get<int64_t>(),
                         e.at("tokens").get<int64_t>(), p, c.run);
    }
  }
  std::ostringstream md;
  md << "| Method |";
  for (const auto& d : datasets) for (const auto& s : settings) md << " " << d << " " << s << " |";
  md << "\n|---|";
  for (size_t i = 0; i < datasets.size() * settings.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& m : methods) {
    md << "| " << m << " |";
    for (const auto& d : datasets) {
      for (const auto& s : settings) {
        const auto it = ppl.find({m, d, s});
        md << (it == ppl.end() ? " – |" : fmt::format(" {:.2f} |", it->second));
      }
    }
    md << "\n";
  }
  md << "\n" << caption(cells, calibration) << "\n";
  // Float first, then the runs in sweep order, as the first table's rows.
  std::vector<Cell> ordered;
  for (const Cell& c : cells) if (c.is_float) ordered.push_back(c);
  for (const Cell& c : cells) if (!c.is_float) ordered.push_back(c);
  if (const std::string beyond = eval_table(dir, ordered); !beyond.empty()) md << "\n" << beyond;
  core::write_string_atomically(dir + "/table.md", md.str());
  core::write_string_atomically(dir + "/table.csv", csv.str());
  if (!datasets.empty()) plot(dir, cells, datasets.front());
  plot_kl(dir, cells);
  return md.str();
}

}  // namespace calq::cli
