#include "core/io/json_text.h"

#include <optional>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/small_file.h"

namespace calq::core {
namespace {

using json = nlohmann::json;

// Appends to `out` until it holds `limit` characters; reports whether everything fitted.
class BoundedText {
 public:
  explicit BoundedText(std::size_t limit) : limit_(limit) {}

  bool full() const { return out_.size() >= limit_; }

  void append(std::string_view text) {
    if (full())
      return;
    out_.append(text.substr(0, limit_ - out_.size()));
    if (out_.size() >= limit_ && text.size() > 0)
      cut_ = true;
  }

  std::string finish() && {
    if (cut_)
      out_ += "...";
    return std::move(out_);
  }

  void mark_cut() { cut_ = true; }

 private:
  std::size_t limit_;
  std::string out_;
  bool cut_ = false;
};

std::string escaped_string(std::string_view text, std::size_t max_source_bytes) {
  // Quote only a prefix: escaping a 100 MB string to show 80 characters of it would be waste.
  const std::string prefix(text.substr(0, max_source_bytes));
  return json(prefix).dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
}

void quote_into(const json& value, int depth, std::size_t max_chars, BoundedText& out) {
  if (out.full()) {
    out.mark_cut();
    return;
  }
  if (depth > kMaxJsonDepth) {
    out.append("...");
    out.mark_cut();
    return;
  }
  switch (value.type()) {
    case json::value_t::array: {
      out.append("[");
      bool first = true;
      for (const json& item : value) {
        if (out.full()) {
          out.mark_cut();
          return;
        }
        if (!first)
          out.append(",");
        first = false;
        quote_into(item, depth + 1, max_chars, out);
      }
      out.append("]");
      return;
    }
    case json::value_t::object: {
      out.append("{");
      bool first = true;
      for (const auto& item : value.items()) {
        if (out.full()) {
          out.mark_cut();
          return;
        }
        if (!first)
          out.append(",");
        first = false;
        out.append(escaped_string(item.key(), max_chars));
        out.append(":");
        quote_into(item.value(), depth + 1, max_chars, out);
      }
      out.append("}");
      return;
    }
    case json::value_t::string:
      out.append(escaped_string(value.get_ref<const std::string&>(), max_chars));
      return;
    default:  // scalars and binary: dump() does not recurse for them
      out.append(value.dump(-1, ' ', true, json::error_handler_t::replace));
      return;
  }
}

// nlohmann's messages quote the last token read, which may be a whole long string.
// (escaped like a quoted string, without the quotes).
std::string parser_message(const char* what) {
  const std::string quoted = quote_string(what, 160);
  return quoted.size() >= 2 && quoted.front() == '"' ? quoted.substr(1, quoted.size() - 2) : quoted;
}

}  // namespace

json parse_json_bounded(std::string_view text, const std::string& path,
                        const JsonReadOptions& options) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  bool too_deep = false;
  const json::parser_callback_t guard = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) {
      // `depth` counts the containers already open around this one.
      if (depth >= kMaxJsonDepth) {
        too_deep = true;
        throw Error("nesting too deep");  // unwound below into the one-line message
      }
      if (event == json::parse_event_t::object_start && options.reject_duplicate_keys)
        open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end && options.reject_duplicate_keys) {
      if (!open_objects.empty())
        open_objects.pop_back();
    } else if (event == json::parse_event_t::key && options.reject_duplicate_keys &&
               !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && !duplicate)
        duplicate = key;
    }
    return true;
  };
  json value;
  try {
    value = json::parse(text.begin(), text.end(), guard);
  } catch (const json::exception& e) {
    fail("{}: the {} is not valid JSON ({}); expected {}", path, options.what,
         parser_message(e.what()), options.expected);
  } catch (const Error&) {
    if (!too_deep)
      throw;
    fail("{}: the {} nests deeper than {} levels; expected {}", path, options.what,
         kMaxJsonDepth, options.expected);
  }
  CALQ_CHECK(!duplicate, "{}: duplicate key {} in the {}; expected each key once", path,
             quote_string(*duplicate), options.what);
  return value;
}

json read_json_file(const std::string& path, const JsonReadOptions& options) {
  return parse_json_bounded(read_small_file(path, options.expected), path, options);
}

std::string quote_json(const json& value, std::size_t max_chars) {
  BoundedText out(max_chars);
  quote_into(value, 0, max_chars, out);
  return std::move(out).finish();
}

std::string quote_string(std::string_view text, std::size_t max_chars) {
  std::string quoted = escaped_string(text, max_chars);
  if (quoted.size() > max_chars + 2 || text.size() > max_chars) {
    quoted = quoted.substr(0, max_chars) + "...";
  }
  return quoted;
}

}  // namespace calq::core
