#include "cli/sweep_plan.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace calq::cli {
namespace {

namespace fs = std::filesystem;

// A sweep file names a few recipes and values; these bounds keep a hostile one (aliases that
// expand to billions of nodes, deep nesting) from exhausting memory, as the recipe loader's do.
constexpr int64_t kMaxFileBytes = 1 << 20;
constexpr int kMaxDepth = 16;
constexpr int64_t kMaxNodes = 10000;

void check_size(const YAML::Node& node, const std::string& where, int depth, int64_t& budget) {
  CALQ_CHECK(depth <= kMaxDepth && --budget >= 0,
             "{}: nests deeper than {} levels or holds more than {} values; expected a sweep file",
             where, kMaxDepth, kMaxNodes);
  if (node.IsSequence() || node.IsMap()) {
    for (const auto& item : node) {
      check_size(node.IsMap() ? item.second : item, where, depth + 1, budget);
    }
  }
}

/// A value as `--set key=value` takes it: a scalar as written, a list or map in YAML flow style.
std::string value_text(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

YAML::Node load_yaml(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  CALQ_CHECK(!ec, "{}: cannot read ({}); expected a sweep file or a recipe", path, ec.message());
  CALQ_CHECK(size <= static_cast<uintmax_t>(kMaxFileBytes),
             "{}: {} bytes; expected a sweep file of at most {} bytes", path, size, kMaxFileBytes);
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    fail("{}: line {}, column {}: {}; expected valid YAML", path, e.mark.line + 1,
         e.mark.column + 1, e.msg);
  }
}

}  // namespace

SweepGrid parse_grid_option(const std::string& text) {
  const size_t eq = text.find('=');
  CALQ_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < text.size(),
             "--grid \"{}\": expected key.path=v1,v2,...", text);
  SweepGrid g{text.substr(0, eq), {}};
  const std::string rest = text.substr(eq + 1);
  size_t start = 0;
  while (true) {
    const size_t comma = rest.find(',', start);
    std::string v = rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    CALQ_CHECK(!v.empty(), "--grid \"{}\": an empty value; expected key.path=v1,v2,...", text);
    g.values.push_back(std::move(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return g;
}

bool is_sweep_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;  // the recipe loader says what is wrong
  if (fs::file_size(path, ec) > static_cast<uintmax_t>(kMaxFileBytes) || ec) return false;
  try {
    const YAML::Node root = load_yaml(path);
    return root.IsMap() && root["sweep"];
  } catch (const calq::Error&) {
    return false;  // not YAML: left to the recipe loader's error
  }
}

std::vector<SweepGroup> load_sweep_file(const std::string& path) {
  const YAML::Node root = load_yaml(path);
  int64_t budget = kMaxNodes;
  check_size(root, path, 0, budget);
  CALQ_CHECK(root.IsMap() && root.size() == 1 && root["sweep"] && root["sweep"].IsSequence() &&
                 root["sweep"].size() > 0,
             "{}: expected one top-level key `sweep:` holding a list of groups "
             "({{recipes: [...], grid: {{...}}, set: {{...}}}})", path);
  const fs::path folder = fs::absolute(path).parent_path();
  std::vector<SweepGroup> groups;
  for (size_t i = 0; i < root["sweep"].size(); ++i) {
    const YAML::Node entry = root["sweep"][i];
    const std::string where = path + ": sweep." + std::to_string(i);
    CALQ_CHECK(entry.IsMap(), "{}: expected a mapping with recipes, grid, set", where);
    SweepGroup group;
    for (const auto& item : entry) {
      const std::string key = item.first.IsScalar() ? item.first.Scalar() : "<key>";
      const YAML::Node& value = item.second;
      if (key == "recipes") {
        CALQ_CHECK(value.IsSequence() && value.size() > 0,
                   "{}.recipes: expected a list of recipe files", where);
        for (const auto& r : value) {
          CALQ_CHECK(r.IsScalar() && !r.Scalar().empty(),
                     "{}.recipes: expected recipe file names", where);
          const fs::path p(r.Scalar());
          group.recipes.push_back((p.is_absolute() ? p : folder / p).lexically_normal().string());
        }
      } else if (key == "grid" || key == "set") {
        CALQ_CHECK(value.IsMap(), "{}.{}: expected a mapping of key.path to {}", where, key,
                   key == "grid" ? "a list of values" : "a value");
        for (const auto& kv : value) {
          CALQ_CHECK(kv.first.IsScalar() && !kv.first.Scalar().empty(),
                     "{}.{}: expected key.path names", where, key);
          const std::string name = kv.first.Scalar();
          if (key == "set") {
            group.sets.push_back(name + "=" + value_text(kv.second));
            continue;
          }
          CALQ_CHECK(kv.second.IsSequence() && kv.second.size() > 0,
                     "{}.grid.{}: expected a list of values", where, name);
          SweepGrid g{name, {}};
          for (const auto& v : kv.second) g.values.push_back(value_text(v));
          group.grids.push_back(std::move(g));
        }
      } else {
        fail("{}.{}: unknown key; expected recipes, grid or set", where, key);
      }
    }
    CALQ_CHECK(!group.recipes.empty(), "{}: no recipes; expected recipes: [...]", where);
    groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace calq::cli
