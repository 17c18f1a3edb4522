// `calq sweep RECIPE|SWEEP_FILE... [--grid key.path=v1,v2]... [--set key.path=v]... --out DIR`:
// every recipe × the cross product of its group's grids (cli/sweep_plan.h), each a `calq run`
// into DIR/runs/<name>/, plus the float model's row once per model and evaluation; then
// DIR/table.md, table.csv and ppl_vs_bits.png/.svg (sweep_table.h). A run whose report.json already holds the same recipe hash is skipped, so a killed sweep resumes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "algorithms/resolved_recipe.h"
#include "cli/bounds.h"
#include "cli/commands.h"
#include "cli/local_launch.h"
#include "cli/run_recipe.h"
#include "cli/sweep_plan.h"
#include "cli/sweep_table.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/io/json_text.h"
#include "core/io/output_dir.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/recipe.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;

struct SweepArgs {
  std::vector<std::string> recipes;
  std::vector<std::string> grids;
  std::vector<std::string> sets;  ///< --set: applied to every run, not part of its name
  std::string out;
  int64_t batch_size = 8;
  bool no_float = false;
  bool dry_run = false;  ///< --dry-run: plan and resolve every run, list them, run nothing
  bool overwrite = false;  ///< --overwrite: for the sweep folder and every run's outputs
  RunRequest cache;  ///< only the cache fields: --cache (default OUT/calib-cache), limit, --no-cache
};

/// A report.json a finished cell wrote, or null when it is absent or unreadable (a cell with a
/// damaged report is simply run again).
nlohmann::json read_cell_report(const fs::path& report) {
  try {
    return core::read_json_file(report.string(), {"report", "a report.json calq wrote"});
  } catch (const calq::Error&) {
    return nullptr;
  }
}

/// One line per run on what the calibration cache gave it (from its report.json).
void log_cache_use(const std::string& name, const fs::path& report) {
  const nlohmann::json r = read_cell_report(report);
  if (!r.is_object() || !r.contains("calibration_cache") || !r["calibration_cache"].is_object())
    return;
  const nlohmann::json& c = r["calibration_cache"];
  try {
    const int64_t hits = c.value("hits", int64_t{0});
    const int64_t total = hits + c.value("misses", int64_t{0});
    log::info("sweep: {} reused {} of {} calibration steps from the cache{}", name, hits, total,
              hits > 0 ? " (" + fmt::format("{}", fmt::join(c["reused"].get<std::vector<std::string>>(), ", ")) + ")"
                       : std::string());
  } catch (const nlohmann::json::exception&) {
    log::warn("sweep: {}: report.json has an unreadable calibration_cache section", name);
  }
}

struct Planned {
  std::string name;
  RunRequest request;
};

std::string short_key(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

/// The command line's recipes form one group with its --grid and --set; each sweep file adds its
/// own groups, the command line's --set after the file's and its --grid crossed with the file's.
std::vector<SweepGroup> groups_of(const SweepArgs& args) {
  std::vector<SweepGrid> grids;
  for (const auto& g : args.grids) grids.push_back(parse_grid_option(g));
  SweepGroup plain{{}, grids, args.sets};
  std::vector<SweepGroup> groups;
  for (const std::string& input : args.recipes) {
    if (!is_sweep_file(input)) {
      plain.recipes.push_back(input);
      continue;
    }
    for (SweepGroup g : load_sweep_file(input)) {
      g.sets.insert(g.sets.end(), args.sets.begin(), args.sets.end());
      g.grids.insert(g.grids.end(), grids.begin(), grids.end());
      groups.push_back(std::move(g));
    }
  }
  if (!plain.recipes.empty()) groups.insert(groups.begin(), std::move(plain));
  return groups;
}

std::vector<Planned> plan(const SweepArgs& args) {
  std::vector<Planned> out;
  std::map<std::string, std::string> seen;  // run name -> its recipe, for the duplicate check
  for (const SweepGroup& group : groups_of(args)) {
    std::vector<std::vector<std::string>> combos = {{}};
    for (const SweepGrid& g : group.grids) {
      std::vector<std::vector<std::string>> next;
      for (const auto& c : combos) {
        for (const auto& v : g.values) {
          auto with = c;
          with.push_back(v);
          next.push_back(with);
        }
      }
      combos = next;
    }
    for (const std::string& recipe : group.recipes) {
      for (const auto& combo : combos) {
        Planned p;
        p.name = fs::path(recipe).stem().string();
        p.request.overrides = group.sets;
        for (size_t i = 0; i < group.grids.size(); ++i) {
          p.name += fmt::format("__{}-{}", short_key(group.grids[i].key), combo[i]);
          p.request.overrides.push_back(group.grids[i].key + "=" + combo[i]);
        }
        CALQ_CHECK(seen.emplace(p.name, recipe).second,
                   "sweep: run {} comes twice (from {}); expected each recipe and grid value once",
                   p.name, recipe);
        p.request.recipe = recipe;
        run::RunOptions& o = p.request.options;
        o.batch_size = args.batch_size;
        o.cache_dir = args.cache.options.cache_dir.empty()
                          ? (fs::path(args.out) / "calib-cache").string()
                          : args.cache.options.cache_dir;
        o.cache_max_bytes = args.cache.options.cache_max_bytes;
        o.no_cache = args.cache.options.no_cache;
        o.overwrite = args.overwrite;
        out.push_back(std::move(p));
      }
    }
  }
  return out;
}

std::string stored_hash(const fs::path& report) {
  const nlohmann::json r = read_cell_report(report);
  if (!r.is_object() || !r.contains("recipe_hash") || !r["recipe_hash"].is_string()) return "";
  const bool float_only = r.contains("float") && r["float"].is_boolean() && r["float"].get<bool>();
  return r["recipe_hash"].get<std::string>() + (float_only ? "-fp" : "");
}

int run_sweep(const SweepArgs& args) {
  std::vector<Planned> runs = plan(args);
  // Every recipe is loaded and resolved (its passes built) once, before any work: errors come
  // first.
  std::map<std::string, algorithms::ResolvedRecipe> resolved;  // by run name
  std::map<std::string, Planned> float_rows;  // one per model and eval protocol
  for (Planned& p : runs) {
    const core::Recipe& recipe =
        resolved.emplace(p.name, algorithms::load_resolved_recipe(p.request.recipe,
                                                                  p.request.overrides))
            .first->second.recipe;
    if (args.no_float) continue;
    const std::string key = fmt::format("{}|{}|{}", recipe.model.path.resolved,
                                        compute_dtype_name(recipe.model.dtype),
                                        nlohmann::json::parse(recipe.resolved_json())["eval"].dump());
    if (float_rows.count(key)) continue;
    Planned f = p;
    f.name = fmt::format("fp_{}", fs::path(recipe.model.path.resolved).stem().string());
    if (!float_rows.empty()) f.name += fmt::format("_{}", float_rows.size());
    f.request.options.float_only = true;
    resolved.emplace(f.name, resolved.at(p.name));
    float_rows.emplace(key, f);
  }
  std::vector<Planned> all;
  for (auto& [key, f] : float_rows) all.push_back(f);
  all.insert(all.end(), runs.begin(), runs.end());
  if (args.dry_run) {
    for (const Planned& p : all)
      std::printf("%s\t%s\t%s\n", p.name.c_str(), resolved.at(p.name).hash.c_str(),
                  p.request.recipe.c_str());
    std::fflush(stdout);
    log::info("sweep: {} runs planned (--dry-run: none run)", all.size());
    return 0;
  }

  // The sweep folder follows the run folders' rules (core/io/output_dir.h): new, empty, calq's
  // own (an earlier sweep, resumed) or --overwrite; claimed (locked) for the whole sweep.
  // With ranks (core/dist) every rank runs every cell together; rank 0 alone claims and writes.
  dist::Communicator& ranks = dist::Communicator::world();
  const fs::path out = core::output_dir_path(args.out, "--out");
  std::optional<core::OutputClaim> claim;  // locked for the whole sweep
  if (ranks.is_root()) {
    core::check_output_dir(out, "--out", args.overwrite);
    claim.emplace(out, "--out", /*create_dir=*/true);
    fs::create_directories(out / "runs");
    claim->keep();  // from here on the folder holds calq's runs: a failed sweep is resumed in it
  }
  ranks.barrier("sweep folder claimed by rank 0");
  Progress progress("sweep runs", static_cast<int64_t>(all.size()));
  std::vector<SweepRun> done;
  int resumed = 0;
  for (Planned& p : all) {
    const fs::path dir = out / "runs" / p.name;
    const fs::path report = dir / "report.json";
    // What report.json records (a float row's hash gets "-fp"): equal means already done.
    const std::string hash =
        resolved.at(p.name).hash + (p.request.options.float_only ? "-fp" : "");
    if (stored_hash(report) == hash) {
      log::info("sweep: {} already done (same recipe hash): skipped", p.name);
      ++resumed;
    } else {
      log::info("sweep: run {}/{}: {}", done.size() + 1, all.size(), p.name);
      p.request.options.out = dir.string();
      run_resolved(resolved.at(p.name), p.request.options);
      log_cache_use(p.name, report);
    }
    done.push_back({p.name, report.string()});
    progress.step();
  }
  progress.finish();
  if (!ranks.is_root()) return 0;
  const std::string table = write_sweep_table(out.string(), done);
  std::printf("%s", table.c_str());
  std::fflush(stdout);
  log::info("sweep: {} runs ({} resumed from earlier reports); table in {}, plot {}", all.size(),
            resumed, (out / "table.md").string(), (out / "ppl_vs_bits.png").string());
  return 0;
}

}  // namespace

CommandRunner add_sweep_command(CLI::App& app) {
  auto args = std::make_shared<SweepArgs>();
  CLI::App* cmd = app.add_subcommand("sweep", "Run recipes x grids, then a paper-style table and plot");
  cmd->add_option("recipes", args->recipes,
                  "Recipe YAML files and sweep files (configs/sweeps/*.yaml)")->required();
  cmd->add_option("--grid", args->grids, "key.path=v1,v2,... (repeatable: the cross product runs)");
  cmd->add_option("--set", args->sets, "key.path=value for every run (repeatable; not in run names)");
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--batch-size", args->batch_size, "Windows per forward")->capture_default_str()
      ->check(at_least(1));
  cmd->add_flag("--no-float", args->no_float, "Skip the float model's row");
  cmd->add_flag("--dry-run", args->dry_run,
                "Load and resolve every run, print name, recipe hash and recipe; run nothing");
  cmd->add_flag("--overwrite", args->overwrite,
                "Replace the sweep folder and the runs' outputs even if calq did not write them");
  add_cache_options(*cmd, args->cache);
  auto nproc = std::make_shared<int>(1);
  cmd->add_option("--nproc", *nproc, "Run every cell as N ranks on this machine (as calq run --nproc)")
      ->check(at_least(1));
  return [args, nproc] {
    if (const std::optional<int> code = launch_if_asked(*nproc)) return *code;
    return run_sweep(*args);
  };
}

}  // namespace calq::cli
