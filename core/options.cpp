#include "core/options.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <fmt/ranges.h>

#include "core/did_you_mean.h"
#include "core/io/json_text.h"
#include "core/options_tree.h"

namespace calq::core {

namespace {

using detail::describe;
using detail::OptionsAccess;

// Identifies one mapping in Tree::known; '\n' cannot appear in a dotted key path we print.
std::string mapping_id(const std::vector<std::string>& parts) {
  std::string id;
  for (const auto& part : parts)
    id += part + '\n';
  return id;
}

bool parse_index(const std::string& text, size_t* index) {
  if (text.empty() || text.size() > 9)
    return false;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
  }
  *index = std::stoul(text);
  return true;
}

const Json* walk(const Json& root, const std::vector<std::string>& parts) {
  const Json* node = &root;
  for (const auto& part : parts) {
    size_t index = 0;
    if (node->is_object()) {
      auto it = node->find(part);
      if (it == node->end())
        return nullptr;
      node = &*it;
    } else if (node->is_array() && parse_index(part, &index) && index < node->size()) {
      node = &(*node)[index];
    } else {
      return nullptr;
    }
  }
  return node;
}

// As walk(), creating mappings where the path is absent or null (defaults of absent sections).
Json* walk_create(Json& root, const std::vector<std::string>& parts) {
  Json* node = &root;
  for (const auto& part : parts) {
    size_t index = 0;
    if (node->is_null())
      *node = Json::object();
    if (node->is_object()) {
      node = &(*node)[part];
    } else if (node->is_array() && parse_index(part, &index) && index < node->size()) {
      node = &(*node)[index];
    } else {
      return nullptr;
    }
  }
  return node;
}

std::vector<std::string> with(std::vector<std::string> parts, const std::string& key) {
  parts.push_back(key);
  return parts;
}

int64_t to_int(const Options& o, const std::string& key, const Json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      o.fail(key, "{} is too large; expected a 64-bit integer", u);
    }
    return static_cast<int64_t>(u);
  }
  if (!v.is_number_integer())
    o.fail(key, "expected an integer, got {}", describe(v));
  return v.get<int64_t>();
}

double to_double(const Options& o, const std::string& key, const Json& v) {
  if (!v.is_number())
    o.fail(key, "expected a number, got {}", describe(v));
  return v.get<double>();
}

bool to_bool(const Options& o, const std::string& key, const Json& v) {
  if (!v.is_boolean())
    o.fail(key, "expected true or false, got {}", describe(v));
  return v.get<bool>();
}

std::string to_string(const Options& o, const std::string& key, const Json& v) {
  if (!v.is_string())
    o.fail(key, "expected a string, got {}", describe(v));
  return v.get<std::string>();
}

}  // namespace

// ---- OptionsAccess: the tree-level operations behind the public getters ----

Options detail::OptionsAccess::make_root(Json tree,
                                         const std::string& file,
                                         std::vector<std::string> overridden) {
  auto shared = std::make_shared<Options::Tree>();
  shared->resolved = tree;
  shared->given = std::move(tree);
  shared->file = file;
  shared->overridden = std::move(overridden);
  return Options(std::move(shared), {}, "");
}

Options detail::OptionsAccess::make_child(const Options& parent,
                                          const std::vector<std::string>& parts,
                                          const std::string& key_path) {
  std::vector<std::string> all = parent.parts_;
  all.insert(all.end(), parts.begin(), parts.end());
  return Options(parent.tree_, std::move(all), key_path);
}

const Json* detail::OptionsAccess::find(const Options& parent, const std::string& key) {
  return walk(parent.tree_->given, with(parent.parts_, key));
}

Json detail::OptionsAccess::given(const Options& view) {
  const Json* node = walk(view.tree_->given, view.parts_);
  return node == nullptr ? Json() : *node;
}

Json detail::OptionsAccess::resolved(const Options& view) {
  const Json* node = walk(view.tree_->resolved, view.parts_);
  return node == nullptr ? Json() : *node;
}

void detail::OptionsAccess::mark_known(const Options& view, const std::string& key) {
  view.tree_->known[mapping_id(view.parts_)].insert(key);
}

const Json* detail::OptionsAccess::present(const Options& view, const std::string& key) {
  mark_known(view, key);
  const Json* v = find(view, key);
  return (v == nullptr || v->is_null()) ? nullptr : v;
}

void detail::OptionsAccess::record_default(const Options& view,
                                           const std::string& key,
                                           Json value) {
  if (Json* node = walk_create(view.tree_->resolved, with(view.parts_, key))) {
    *node = std::move(value);
  }
}

bool detail::OptionsAccess::from_override(const Options& view, const std::string& key) {
  const std::string path = view.path_of(key);
  for (const auto& set : view.tree_->overridden) {
    if (path == set || path.rfind(set + ".", 0) == 0)
      return true;
  }
  return false;
}

std::string detail::describe(const Json& value) {
  if (value.is_array())
    return "a list";
  if (value.is_object())
    return "a mapping";
  std::string text = value.dump();
  constexpr size_t kMaxShown = 60;  // keep the error on one readable line
  if (text.size() > kMaxShown)
    text = text.substr(0, kMaxShown) + "...";
  return text;
}

// ---- Options ----

Options::Options() : Options(std::make_shared<Tree>(), {}, "") {
  tree_->given = Json::object();
}

Options::Options(std::shared_ptr<Tree> tree, std::vector<std::string> parts, std::string key_path)
    : tree_(std::move(tree)), parts_(std::move(parts)), key_path_(std::move(key_path)) {}

Options Options::from_json(const std::string& json_text,
                           const std::string& file,
                           const std::string& key_path) {
  Json tree = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  CALQ_CHECK(!tree.is_discarded(), "{}: not valid JSON; expected a JSON object", file);
  CALQ_CHECK(tree.is_object() || tree.is_null(), "{}: {}expected a mapping, got {}", file,
             key_path.empty() ? "" : key_path + ": ", describe(tree));
  Options root = OptionsAccess::make_root(std::move(tree), file, {});
  root.key_path_ = key_path;
  return root;
}

const std::string& Options::file() const {
  return tree_->file;
}
const std::string& Options::key_path() const {
  return key_path_;
}

std::string Options::path_of(const std::string& key) const {
  if (key.empty())
    return key_path_;
  return key_path_.empty() ? key : key_path_ + "." + key;
}

std::string Options::where(const std::string& key) const {
  std::string out = file();
  const std::string path = path_of(key);
  if (!path.empty())
    out += (out.empty() ? "" : ": ") + path;
  if (OptionsAccess::from_override(*this, key))
    out += " (from --set)";
  return out;
}

void Options::fail(const std::string& key, const std::string& message) const {
  const std::string prefix = where(key);
  throw Error(prefix.empty() ? message : prefix + ": " + message);
}

bool Options::has(const std::string& key) const {
  return OptionsAccess::present(*this, key) != nullptr;
}

std::vector<std::string> Options::keys() const {
  std::vector<std::string> out;
  const Json* node = walk(tree_->given, parts_);
  if (node != nullptr && node->is_object()) {
    for (const auto& item : node->items())
      out.push_back(item.key());
  }
  return out;
}

void Options::declare(const std::vector<std::string>& keys) const {
  for (const auto& key : keys)
    OptionsAccess::mark_known(*this, key);
}

void Options::finish() const {
  const auto& known = tree_->known[mapping_id(parts_)];
  const std::vector<std::string> candidates(known.begin(), known.end());
  for (const auto& key : keys()) {
    if (known.count(key) != 0)
      continue;
    if (candidates.empty())
      fail(key, "unknown key; this section takes no keys");
    const std::string best = closest_match(key, candidates);
    if (!best.empty())
      fail(key, "unknown key; did you mean \"{}\"?", best);
    fail(key, "unknown key; expected one of {}", fmt::join(candidates, ", "));
  }
}

int64_t Options::get_int(const std::string& key, int64_t fallback) const {
  if (const Json* v = OptionsAccess::present(*this, key))
    return to_int(*this, key, *v);
  OptionsAccess::record_default(*this, key, fallback);
  return fallback;
}

double Options::get_double(const std::string& key, double fallback) const {
  if (const Json* v = OptionsAccess::present(*this, key))
    return to_double(*this, key, *v);
  OptionsAccess::record_default(*this, key, fallback);
  return fallback;
}

bool Options::get_bool(const std::string& key, bool fallback) const {
  if (const Json* v = OptionsAccess::present(*this, key))
    return to_bool(*this, key, *v);
  OptionsAccess::record_default(*this, key, fallback);
  return fallback;
}

std::string Options::get_string(const std::string& key, const std::string& fallback) const {
  if (const Json* v = OptionsAccess::present(*this, key))
    return to_string(*this, key, *v);
  OptionsAccess::record_default(*this, key, fallback);
  return fallback;
}

std::vector<std::string> Options::get_strings(const std::string& key,
                                              const std::vector<std::string>& fallback) const {
  const Json* v = OptionsAccess::present(*this, key);
  if (v == nullptr) {
    OptionsAccess::record_default(*this, key, fallback);
    return fallback;
  }
  if (!v->is_array())
    fail(key, "expected a list of strings, got {}", describe(*v));
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    out.push_back(to_string(*this, key + "." + std::to_string(i), (*v)[i]));
  }
  return out;
}

std::optional<int64_t> Options::find_int(const std::string& key) const {
  const Json* v = OptionsAccess::present(*this, key);
  return v == nullptr ? std::nullopt : std::optional<int64_t>(to_int(*this, key, *v));
}

std::optional<double> Options::find_double(const std::string& key) const {
  const Json* v = OptionsAccess::present(*this, key);
  return v == nullptr ? std::nullopt : std::optional<double>(to_double(*this, key, *v));
}

std::optional<bool> Options::find_bool(const std::string& key) const {
  const Json* v = OptionsAccess::present(*this, key);
  return v == nullptr ? std::nullopt : std::optional<bool>(to_bool(*this, key, *v));
}

std::optional<std::string> Options::find_string(const std::string& key) const {
  const Json* v = OptionsAccess::present(*this, key);
  return v == nullptr ? std::nullopt : std::optional<std::string>(to_string(*this, key, *v));
}

int64_t Options::require_int(const std::string& key) const {
  if (auto v = find_int(key))
    return *v;
  fail(key, "missing; expected an integer");
}

double Options::require_double(const std::string& key) const {
  if (auto v = find_double(key))
    return *v;
  fail(key, "missing; expected a number");
}

std::string Options::require_string(const std::string& key) const {
  if (auto v = find_string(key))
    return *v;
  fail(key, "missing; expected a string");
}

int64_t Options::get_int_in(const std::string& key,
                            int64_t fallback,
                            const std::vector<int64_t>& allowed) const {
  const int64_t v = get_int(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    fail(key, "{} is not supported; expected one of {}", v, fmt::join(allowed, ", "));
  }
  return v;
}

int64_t Options::get_int_in_range(const std::string& key,
                                  int64_t fallback,
                                  int64_t lo,
                                  int64_t hi) const {
  const int64_t v = get_int(key, fallback);
  if (v < lo || v > hi)
    fail(key, "{} is out of range; expected an integer in [{}, {}]", v, lo, hi);
  return v;
}

int64_t Options::get_int_at_least(const std::string& key, int64_t fallback, int64_t lo) const {
  const int64_t v = get_int(key, fallback);
  if (v < lo)
    fail(key, "{} is out of range; expected an integer >= {}", v, lo);
  return v;
}

double Options::get_double_in_range(const std::string& key,
                                    double fallback,
                                    double lo,
                                    double hi) const {
  const double v = get_double(key, fallback);
  // !(a <= b) also rejects NaN, which JSON cannot carry but a caller's fallback could.
  if (!(lo <= v && v <= hi))
    fail(key, "{} is out of range; expected a number in [{}, {}]", v, lo, hi);
  return v;
}

std::string Options::get_string_in(const std::string& key,
                                   const std::string& fallback,
                                   const std::vector<std::string>& allowed) const {
  std::string v = get_string(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    fail(key, "\"{}\" is not supported; expected one of {}", v, fmt::join(allowed, ", "));
  }
  return v;
}

Options Options::child(const std::string& key) const {
  const Json* v = OptionsAccess::present(*this, key);
  if (v != nullptr && !v->is_object())
    fail(key, "expected a mapping, got {}", describe(*v));
  return Options(tree_, with(parts_, key), path_of(key));
}

std::optional<Options> Options::find_child(const std::string& key) const {
  if (!has(key))
    return std::nullopt;
  return child(key);
}

std::vector<Options> Options::get_list_of_maps(const std::string& key) const {
  const Json* v = OptionsAccess::present(*this, key);
  if (v == nullptr)
    return {};
  if (!v->is_array())
    fail(key, "expected a list of mappings, got {}", describe(*v));
  std::vector<Options> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string item = key + "." + std::to_string(i);
    if (!(*v)[i].is_object())
      fail(item, "expected a mapping, got {}", describe((*v)[i]));
    out.push_back(Options(tree_, with(with(parts_, key), std::to_string(i)), path_of(item)));
  }
  return out;
}

Options Options::detached() const {
  Json node = OptionsAccess::resolved(*this);
  if (node.is_null())
    node = Json::object();
  auto tree = std::make_shared<Tree>();
  tree->given = node;
  tree->resolved = std::move(node);
  tree->file = tree_->file;
  tree->overridden = tree_->overridden;
  return Options(std::move(tree), {}, key_path_);
}

std::string Options::to_json_string(int indent) const {
  Json node = OptionsAccess::resolved(*this);
  if (node.is_null())
    node = Json::object();
  return node.dump(indent);
}

}  // namespace calq::core
