// load_recipe: YAML -> JSON tree (the one place yaml-cpp is used) -> --set overrides -> shape of
// the passes list -> section validation (recipe_sections.cpp). Converting to JSON first lets
// Options, report.json and the hash share one tree and keeps yaml-cpp out of every header.
#include "core/recipe.h"

#include <cctype>
#include <charconv>
#include <cstdlib>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>
#include <fmt/ranges.h>

#include "core/io/small_file.h"
#include "core/options_tree.h"
#include "core/recipe_sections.h"
#include "core/tokenizer/utf8.h"

namespace calq::core {

namespace {

using detail::describe;

constexpr std::uint64_t kMaxRecipeBytes = std::uint64_t{1} << 22;  // 4 MiB

bool is_decimal_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size())
    return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
  }
  return true;
}

// YAML 1.2 core-schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_decimal_float(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
    ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
      ++i, ++digits;
  }
  if (digits == 0)
    return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+'))
      ++i;
    const size_t exp_start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
      ++i;
    if (i == exp_start)
      return false;
  }
  return i == s.size();
}

// A plain (unquoted) scalar typed by the YAML 1.2 core schema, so `bits: 4` is an integer,
// `damp: 0.01` a float and `sym: true` a bool. Deliberately not YAML 1.1's yes/no/on/off (they
// stay strings and the getters reject them), nor hex/octal/.inf/.nan, which no recipe needs.
Json plain_scalar(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE")
    return true;
  if (s == "false" || s == "False" || s == "FALSE")
    return false;
  if (is_decimal_int(s)) {
    int64_t v = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size())
      return v;
    return s;  // out of int64 range: left as a string, so the getter says what it expected
  }
  if (is_decimal_float(s))
    return std::strtod(s.c_str(), nullptr);
  return s;
}

// The recipe tree becomes JSON (report.json, messages), which carries UTF-8 only; yaml-cpp passes
// other bytes through, so they are refused here, before nlohmann throws on them mid-dump.
void check_utf8(const std::string& text, const std::string& file, const std::string& path) {
  for (size_t i = 0; i < text.size();) {
    const Utf8Char c = decode_utf8(text, i);
    CALQ_CHECK(c.valid, "{}: {}: byte 0x{:02X} at offset {} is not UTF-8; expected UTF-8 text",
               file, path.empty() ? "<top level>" : path, static_cast<unsigned char>(text[i]), i);
    i += c.length;
  }
}

// Limits of the YAML -> JSON conversion. yaml-cpp shares an anchored node between its aliases,
// so a few hundred bytes of nested aliases ("billion laughs") stand for 10^9 values; expanding
// them is what exhausts memory. Recipes nest about 5 levels and hold a few hundred values.
constexpr int kMaxYamlDepth = 32;
constexpr int64_t kMaxYamlValues = 100000;

struct YamlBudget {
  int64_t values_left = kMaxYamlValues;
};

Json to_json(const YAML::Node& node, const std::string& file, const std::string& path,
             YamlBudget& budget, int depth) {
  CALQ_CHECK(depth <= kMaxYamlDepth, "{}: {}: nests deeper than {} levels; expected a recipe",
             file, path.empty() ? "<top level>" : path, kMaxYamlDepth);
  CALQ_CHECK(--budget.values_left >= 0,
             "{}: {}: the YAML expands to more than {} values (aliases repeating anchors?); "
             "expected a recipe", file, path.empty() ? "<top level>" : path, kMaxYamlValues);
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      check_utf8(node.Scalar(), file, path);
      // yaml-cpp tags plain scalars "?" and quoted ones "!": `"4"` stays the string "4".
      if (node.Tag() == "?")
        return plain_scalar(node.Scalar());
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str")
        return node.Scalar();
      return plain_scalar(node.Scalar());
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        out.push_back(to_json(node[i], file, path + (path.empty() ? "" : ".") + std::to_string(i),
                             budget, depth + 1));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& item : node) {
        const std::string where = file + ": " + (path.empty() ? "" : path + ".");
        CALQ_CHECK(item.first.IsScalar(), "{}<key>: a key is not a plain name; expected a string",
                   where);
        const std::string& key = item.first.Scalar();
        check_utf8(key, file, (path.empty() ? "" : path + ".") + "<key>");
        // yaml-cpp keeps both entries of a repeated key; silently taking one would hide edits.
        CALQ_CHECK(!out.contains(key), "{}{}: duplicate key; expected each key once", where, key);
        out[key] = to_json(item.second, file, path + (path.empty() ? "" : ".") + key, budget,
                           depth + 1);
      }
      return out;
    }
  }
  return nullptr;
}

YAML::Node parse_yaml(const std::string& text, const std::string& what) {
  try {
    return YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    fail("{}: line {}, column {}: the YAML nests deeper than yaml-cpp's limit of {} levels; "
         "expected a recipe", what, e.mark.line + 1, e.mark.column + 1, e.depth());
  } catch (const YAML::Exception& e) {
    fail("{}: line {}, column {}: {}; expected valid YAML", what, e.mark.line + 1,
         e.mark.column + 1, e.msg);
  }
}

Json parse_yaml_tree(const std::string& text, const std::string& path) {
  YamlBudget budget;
  Json tree = to_json(parse_yaml(text, path), path, "", budget, 0);
  CALQ_CHECK(!tree.is_null(), "{}: the recipe is empty; expected a mapping with a model section",
             path);
  CALQ_CHECK(tree.is_object(), "{}: the recipe is {}; expected a mapping of sections", path,
             describe(tree));
  return tree;
}

bool parse_list_index(const std::string& part, size_t* index) {
  if (part.empty() || part.size() > 9 || !is_decimal_int(part) || part[0] == '-' ||
      part[0] == '+') {
    return false;
  }
  *index = std::stoul(part);
  return true;
}

// Applies one "key.path=value" to the tree; returns the dotted key path it set.
std::string apply_override(Json& root, const std::string& text, const std::string& file) {
  const std::string what = fmt::format("{}: --set \"{}\"", file, text);
  const size_t eq = text.find('=');
  CALQ_CHECK(eq != std::string::npos, "{}: no '='; expected key.path=value", what);
  CALQ_CHECK(eq > 0, "{}: empty key before '='; expected key.path=value", what);
  const std::string key = text.substr(0, eq);
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    CALQ_CHECK(!parts.back().empty(), "{}: empty part in the key path; expected key.path=value",
               what);
    if (dot == std::string::npos)
      break;
    start = dot + 1;
  }
  const YAML::Node value_node = parse_yaml(text.substr(eq + 1), what + " value");
  YamlBudget budget;
  Json value = to_json(value_node, file, key, budget, 0);

  Json* node = &root;
  std::string walked;
  for (const auto& part : parts) {
    // `- rtn` written as a bare name is addressed as passes.0.rtn like a mapping entry.
    if (node->is_string() && node->get<std::string>() == part)
      *node = Json::object({{part, {}}});
    if (node->is_null())
      *node = Json::object();  // a missing key: created, validation judges it
    const std::string here = walked.empty() ? part : walked + "." + part;
    if (node->is_object()) {
      node = &(*node)[part];
    } else if (node->is_array()) {
      size_t index = 0;
      CALQ_CHECK(parse_list_index(part, &index),
                 "{}: {} is a list; expected a numeric index, got \"{}\"", what, walked, part);
      CALQ_CHECK(index < node->size(), "{}: {}: index out of range; expected 0 to {} ({} entries)",
                 what, here, static_cast<int64_t>(node->size()) - 1, node->size());
      node = &(*node)[index];
    } else {
      fail("{}: {} is {}; expected a mapping or a list to set \"{}\" in", what, walked,
           describe(*node), part);
    }
    walked = here;
  }
  *node = std::move(value);
  return key;
}

// Checks the shape of `passes` (a list of bare names or single-key mappings) and rewrites each
// entry to {name: {options}} so every pass's options sit at passes.<i>.<name>.
void normalize_passes(Json& root, const std::string& file) {
  auto it = root.find("passes");
  if (it == root.end() || it->is_null()) {
    root["passes"] = Json::array();
    return;
  }
  CALQ_CHECK(it->is_array(), "{}: passes: expected a list of passes, got {}", file, describe(*it));
  for (size_t i = 0; i < it->size(); ++i) {
    Json& entry = (*it)[i];
    const std::string where = fmt::format("{}: passes.{}", file, i);
    if (entry.is_string()) {
      CALQ_CHECK(!entry.get<std::string>().empty(), "{}: empty pass name; expected a name", where);
      entry = Json::object({{entry.get<std::string>(), Json::object()}});
      continue;
    }
    CALQ_CHECK(entry.is_object(),
               "{}: expected a pass name or a single-key mapping {{name: {{options}}}}, got {}",
               where, describe(entry));
    CALQ_CHECK(!entry.empty(), "{}: empty mapping; expected a pass name as its key", where);
    if (entry.size() > 1) {
      std::vector<std::string> keys;
      for (const auto& item : entry.items())
        keys.push_back(item.key());
      fail(
          "{}: one entry holds {}; expected one pass per list entry (indent a pass's options "
          "under its name)",
          where, fmt::join(keys, ", "));
    }
    auto& options = entry.begin().value();
    if (options.is_null())
      options = Json::object();
    CALQ_CHECK(options.is_object(), "{}.{}: expected a mapping of options, got {}", where,
               entry.begin().key(), describe(options));
  }
}

}  // namespace

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  // A recipe is a few KB; the bound keeps a wrong path (a model file, /dev/zero) from being read.
  return parse_recipe(read_small_file(path, "a YAML recipe", kMaxRecipeBytes), path, overrides);
}

Options load_yaml_options(const std::string& path, const std::string& expected) {
  YamlBudget budget;
  Json tree = to_json(parse_yaml(read_small_file(path, expected, kMaxRecipeBytes), path), path, "",
                      budget, 0);
  CALQ_CHECK(tree.is_object(), "{}: the file is {}; expected {} (a mapping)", path,
             describe(tree), expected);
  return detail::OptionsAccess::make_root(std::move(tree), path, {});
}

Recipe parse_recipe(const std::string& yaml, const std::string& path,
                    const std::vector<std::string>& overrides) {
  Json tree = parse_yaml_tree(yaml, path);
  std::vector<std::string> overridden;
  for (const auto& text : overrides)
    overridden.push_back(apply_override(tree, text, path));
  normalize_passes(tree, path);

  Options root = detail::OptionsAccess::make_root(std::move(tree), path, std::move(overridden));
  Recipe recipe;
  recipe.file = path;
  recipe.overrides = overrides;
  detail::read_sections(root, recipe);

  const Json* passes = detail::OptionsAccess::find(root, "passes");
  for (size_t i = 0; i < passes->size(); ++i) {
    const std::string name = (*passes)[i].begin().key();
    const std::string index = std::to_string(i);
    recipe.passes.push_back(
        PassEntry{name, detail::OptionsAccess::make_child(root, {"passes", index, name},
                                                          "passes." + index + "." + name)});
  }
  return recipe;
}

}  // namespace calq::core
