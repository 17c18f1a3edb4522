#include "run/run_state.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "calib/calibration_set.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/json_text.h"
#include "core/model/model.h"
#include "core/recipe.h"

namespace calq::run {

namespace fs = std::filesystem;

std::string state_dir_of(const std::string& out_dir) { return (fs::path(out_dir) / "resume").string(); }

void write_run_request(const core::Recipe& recipe, const RunOptions& options,
                       const std::string& state_dir) {
  const nlohmann::json request = {{"recipe", fs::absolute(recipe.file).lexically_normal().string()},
                                  {"overrides", recipe.overrides},
                                  {"batch_size", options.batch_size},
                                  {"stream", options.stream},
                                  {"cache_dir", options.cache_dir},
                                  {"cache_max_bytes", options.cache_max_bytes},
                                  {"no_cache", options.no_cache},
                                  {"overwrite", options.overwrite}};
  fs::create_directories(state_dir);
  core::write_string_atomically((fs::path(state_dir) / "run.json").string(), request.dump(2) + "\n");
}

ResumedRun resumed_run(const std::string& dir) {
  const fs::path request_path = fs::path(state_dir_of(dir)) / "run.json";
  if (!fs::exists(request_path)) {
    CALQ_CHECK(!fs::exists(fs::path(dir) / "report.json"),
               "--resume {}: the run there finished (report.json is written); nothing to resume",
               dir);
    fail("--resume {}: no resumable run; expected {} (written when `calq run` starts, unless "
         "--no-resume-state)", dir, request_path.string());
  }
  try {
    const nlohmann::json j = core::read_json_file(
        request_path.string(), {"run request", "the run.json `calq run` wrote"});
    ResumedRun run;
    run.recipe = j.at("recipe").get<std::string>();
    run.overrides = j.at("overrides").get<std::vector<std::string>>();
    run.options.batch_size = j.at("batch_size").get<int64_t>();
    run.options.stream = j.at("stream").get<bool>();
    run.options.cache_dir = j.at("cache_dir").get<std::string>();
    run.options.cache_max_bytes = j.at("cache_max_bytes").get<int64_t>();
    run.options.no_cache = j.at("no_cache").get<bool>();
    run.options.overwrite = j.value("overwrite", false);
    run.options.out = dir;
    run.options.resuming = true;
    return run;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}; expected the run.json `calq run` wrote", request_path.string(), e.what());
  }
}

std::string state_fingerprint(const core::Recipe& recipe, const RunOptions& options,
                              const calib::CalibrationSet* calibration, const core::Model& model) {
  return fmt::format("recipe {} | windows {} | batch {} | {} {}", recipe.hash_hex(),
                     calibration ? fmt::format("{:016x} {}x{}", calibration->hash,
                                               calibration->windows.size(0),
                                               calibration->windows.size(1))
                                 : std::string("none"),
                     options.batch_size, model.device(), c10::toString(model.compute_dtype()));
}

StateFolder::~StateFolder() {
  if (!armed_) return;
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

}  // namespace calq::run
