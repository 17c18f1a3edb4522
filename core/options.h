// Options: a typed, path-aware view on one mapping of the recipe (a section, or one pass's
// options). Every getter records the key it read, so finish() can reject keys nobody asked for
// with a did-you-mean; every error names the file and the key path ("recipe.yaml:
// passes.0.gptq.damp: expected a number, got \"abc\""). Used by core/recipe.cpp for the
// sections and by each pass in algorithms/ for its own options.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace calq::core {

namespace detail {
struct OptionsAccess;
}

class Options {
 public:
  /// An empty mapping (all getters return their defaults) with no file or key path.
  Options();
  /// A view over `json_text`, which must hold a JSON object (or null = empty). `file` prefixes
  /// every error; `key_path` is the dotted path of this mapping ("" for the root). For tests and
  /// for callers that build options without a recipe (e.g. `calq bench`).
  static Options from_json(const std::string& json_text,
                           const std::string& file,
                           const std::string& key_path = "");

  const std::string& file() const;
  const std::string& key_path() const;                ///< "passes.1.gptq"; "" for the recipe's root
  std::string path_of(const std::string& key) const;  ///< key_path + "." + key
  /// "recipe.yaml: passes.1.gptq.damp" (plus " (from --set)" when an override set it): the
  /// prefix of every error about `key`; an empty key names this mapping itself.
  std::string where(const std::string& key = "") const;

  /// Present and not null. Counts as reading the key (it is known to the caller).
  bool has(const std::string& key) const;
  /// Keys present in this mapping, in file order. Does not mark them read.
  std::vector<std::string> keys() const;
  /// Marks keys as known without reading them (for finish()'s check and its suggestions).
  void declare(const std::vector<std::string>& keys) const;
  /// Throws for the first present key that was never read or declared:
  /// `recipe.yaml: passes.0.gptq.blok_size: unknown key; did you mean "block_size"?`
  void finish() const;

  // Typed getters. An absent key or an explicit null yields the default (and records it in
  // to_json_string()); a value of the wrong type throws naming the key path. Integers are
  // accepted where a number is expected, never the reverse (4.0 is not an integer).
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> get_strings(const std::string& key,
                                       const std::vector<std::string>& fallback) const;

  // Absent or null -> nullopt; wrong type throws.
  std::optional<int64_t> find_int(const std::string& key) const;
  std::optional<double> find_double(const std::string& key) const;
  std::optional<bool> find_bool(const std::string& key) const;
  std::optional<std::string> find_string(const std::string& key) const;

  // Absent or null -> "<where>: missing; expected <type>".
  int64_t require_int(const std::string& key) const;
  double require_double(const std::string& key) const;
  std::string require_string(const std::string& key) const;

  // Constraint helpers: "<where>: 5 is not supported; expected one of 2, 3, 4, 8".
  int64_t get_int_in(const std::string& key,
                     int64_t fallback,
                     const std::vector<int64_t>& allowed) const;
  /// Inclusive bounds: "<where>: 0 is out of range; expected an integer in [1, 4096]".
  int64_t get_int_in_range(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const;
  int64_t get_int_at_least(const std::string& key, int64_t fallback, int64_t lo) const;
  double get_double_in_range(const std::string& key, double fallback, double lo, double hi) const;
  std::string get_string_in(const std::string& key,
                            const std::string& fallback,
                            const std::vector<std::string>& allowed) const;

  /// The nested mapping under `key`; absent or null gives an empty view with the right path.
  Options child(const std::string& key) const;
  /// As child(), but absent or null -> nullopt (for sections where null means "none").
  std::optional<Options> find_child(const std::string& key) const;
  /// A list of mappings: views with paths "<key>.0", "<key>.1", ...; absent or null -> {}.
  std::vector<Options> get_list_of_maps(const std::string& key) const;

  /// This mapping as given plus every default a getter filled in (JSON text, for report.json).
  /// indent < 0: one line.
  std::string to_json_string(int indent = -1) const;

  /// A new, independent mapping whose given values are this one's plus every default a getter
  /// filled in, with the same file, key path and --set annotations. Reads of the copy never
  /// reach this view's tree: algorithms/resolved_recipe.h resolves pass options with it.
  Options detached() const;

  /// Throws calq::Error "<where(key)>: <message>" for checks the getters cannot express.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  template <typename... Args>
  [[noreturn]] void fail(const std::string& key,
                         fmt::format_string<Args...> format,
                         Args&&... args) const {
    fail(key, fmt::format(format, std::forward<Args>(args)...));
  }

  struct Tree;  // the shared JSON tree behind every view of one recipe (options.cpp)

 private:
  friend struct detail::OptionsAccess;
  Options(std::shared_ptr<Tree> tree, std::vector<std::string> parts, std::string key_path);

  std::shared_ptr<Tree> tree_;      // shared: views of one recipe see each other's reads
  std::vector<std::string> parts_;  // path from the root: keys and list indices
  std::string key_path_;
};

}  // namespace calq::core
