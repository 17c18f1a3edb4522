// Internal to calq_core (nlohmann is linked PRIVATE): the JSON tree behind Options, for
// core/recipe.cpp, which builds the tree from YAML and checks shapes the getters cannot express
// (the passes list). Never include this from a public header.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/options.h"

namespace calq::core {

// ordered_json keeps the file's key order: errors report the first unknown key as written,
// report.json lists keys as the recipe does, and scheme.overrides keeps its order.
using Json = nlohmann::ordered_json;

struct Options::Tree {
  Json given;     // the recipe after --set overrides
  Json resolved;  // `given` plus the defaults the getters filled in
  std::string file;
  std::vector<std::string> overridden;  // dotted key paths set by --set
  // Keys read or declared, per mapping (keyed by the mapping's path parts joined by '\n').
  std::map<std::string, std::set<std::string>> known;
};

namespace detail {

struct OptionsAccess {
  /// The root view over a whole tree.
  static Options make_root(Json tree, const std::string& file, std::vector<std::string> overridden);
  /// A view over an arbitrary node below `parent` (e.g. "passes.3.gptq"): `parts` are appended
  /// to the parent's path and `key_path` names it in errors.
  static Options make_child(const Options& parent,
                            const std::vector<std::string>& parts,
                            const std::string& key_path);
  /// The given node under `parent` at `key`, or nullptr when absent.
  static const Json* find(const Options& parent, const std::string& key);
  /// The given node of a view (the recipe after --set); null when absent.
  static Json given(const Options& view);
  /// The resolved node of a view (given plus defaults); null when absent.
  static Json resolved(const Options& view);
  static void mark_known(const Options& view, const std::string& key);
  /// Marks `key` known and returns its given value, or nullptr when absent or null.
  static const Json* present(const Options& view, const std::string& key);
  /// Records the default a getter used for an absent `key`, for to_json_string().
  static void record_default(const Options& view, const std::string& key, Json value);
  /// Whether the dotted key path (or one of its ancestors) was set by --set.
  static bool from_override(const Options& view, const std::string& key);
};

/// A short rendering of a value for "got ..." in errors: "abc" quoted, numbers as written,
/// "a list" / "a mapping" for containers.
std::string describe(const Json& value);

}  // namespace detail
}  // namespace calq::core
