// The output-path rules (core/io/output_dir.cpp, publish_directory in atomic_file.cpp) as
// a property: the input builds a small tree of directories, files, markers and symlinks in a
// sandbox, names an output path and an input path, and picks --overwrite / run-folder mode.
// Whatever calq then refuses or writes, no file it was not allowed to replace may change: files
// outside the output, the run's input, a file at the output path itself, and anything inside an
// output directory that was neither empty, nor calq's (marker), nor --overwrite'd. Violations
// abort (a finding); calq::Error refusals are the expected outcome for most inputs.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <system_error>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/output_dir.h"

namespace calq::fuzz {

namespace fs = std::filesystem;

namespace output_path_detail {

// Names the tree is built from: nesting comes from "a/b", dots and the marker from the list.
inline constexpr const char* kNames[] = {"a", "b", "a/b", "a/c", "b/a", "c", "a/b/c", ".calq-output",
                                  "a/.calq-output", "b/.calq-output", "a/b/.calq-output", "d"};
inline constexpr size_t kNameCount = sizeof(kNames) / sizeof(kNames[0]);

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "output-path rule violated: %s\n", what.c_str());
  std::abort();
}

// Every regular file under `root` (links not followed) with its bytes.
inline std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
    std::ifstream in(it->path(), std::ios::binary);
    files[fs::relative(it->path(), root).string()] =
        std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return files;
}

inline bool within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i)
    if (i == inner.end() || *i != *o) return false;
  return true;
}

struct Sandbox {
  fs::path base;  // mkdtemp: nothing outside it is ever named
  fs::path cwd;   // base/w/r, so "..", "../.." stay inside base
  Sandbox() {
    char pattern[] = "/tmp/calq-fuzz-out-XXXXXX";
    if (!::mkdtemp(pattern)) std::abort();
    base = pattern;
    cwd = base / "w" / "r";
  }
  ~Sandbox() {
    std::error_code ec;
    fs::current_path("/tmp", ec);
    fs::remove_all(base, ec);
  }
  void reset() {
    std::error_code ec;
    fs::current_path(base, ec);
    for (const auto& e : fs::directory_iterator(base, ec)) fs::remove_all(e.path(), ec);
    fs::create_directories(cwd);
    fs::current_path(cwd);
  }
};

}  // namespace output_path_detail

/// One input of the property; aborts on a violation. Changes the working directory while it
/// runs and restores it.
inline void check_output_path_property(const uint8_t* data, size_t size) {
  using namespace output_path_detail;
  static Sandbox sandbox;
  std::error_code cwd_ec;
  const fs::path original_cwd = fs::current_path(cwd_ec);
  struct RestoreCwd {
    const fs::path& path;
    ~RestoreCwd() {
      std::error_code ec;
      if (!path.empty()) fs::current_path(path, ec);
    }
  } restore{original_cwd};
  sandbox.reset();
  const fs::path& root = sandbox.base;
  size_t pos = 0;
  auto next = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };

  // 1. The tree: up to 12 operations.
  const int ops = next() % 13;
  for (int i = 0; i < ops; ++i) {
    const uint8_t op = next();
    const fs::path name = sandbox.cwd / kNames[next() % kNameCount];
    std::error_code ec;
    switch (op % 4) {
      case 0: fs::create_directories(name, ec); break;
      case 1: {
        fs::create_directories(name.parent_path(), ec);
        std::ofstream(name) << "user bytes " << static_cast<int>(op);
        break;
      }
      case 2: {  // a relative link to another name or upwards, never out of the sandbox
        static const char* kTargets[] = {"a", "b", "..", "../..", "c", "a/b"};
        fs::create_directories(name.parent_path(), ec);
        fs::create_symlink(kTargets[next() % 6], name, ec);
        break;
      }
      default: {
        fs::create_directories(name, ec);
        std::ofstream(name / calq::core::kOutputMarker) << "{}";
        break;
      }
    }
  }
  const uint8_t flags = next();
  const bool overwrite = flags & 1;
  const bool run_folder = flags & 2;
  const std::string input = kNames[next() % kNameCount];
  std::string target;
  for (int n = 0; pos < size && n < 48; ++n) target += static_cast<char>(next());

  // Keep the run inside the sandbox: a target (or a link on its way) that leaves it is skipped.
  std::error_code ec;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(target, ec), ec);
  if (ec || target.find('\0') != std::string::npos || !within(resolved, root) ||
      resolved == root)
    return;
  const fs::path normal = fs::absolute(target, ec).lexically_normal();
  if (!within(normal, root)) return;

  const auto before = snapshot(root);
  // Where the input is before the run: a dangling link named as the input ("c" -> "a" with no
  // "a") is no input at all (a real run fails to load it), and once the run creates "a" the
  // link would resolve into the output.
  const bool input_existed = fs::exists(sandbox.cwd / input, ec);
  const fs::path input_abs = fs::weakly_canonical(sandbox.cwd / input, ec);
  const fs::file_status target_status = fs::symlink_status(resolved, ec);
  const bool target_was_dir = fs::is_directory(target_status);
  const bool target_replaceable =
      !fs::exists(target_status) ||
      (target_was_dir && (overwrite || fs::exists(resolved / calq::core::kOutputMarker) ||
                          fs::is_empty(resolved, ec)));
  bool wrote = false;
  try {
    const fs::path out = calq::core::output_dir_path(target, "fuzz");
    calq::core::check_output_dir(out, "fuzz", overwrite);
    calq::core::check_output_apart(out, "fuzz", {{input, "input"}});
    calq::core::OutputClaim claim(out, "fuzz", run_folder);
    if (!run_folder) {
      const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".calq-tmp-fuzz");
      fs::remove_all(tmp, ec);
      fs::create_directories(tmp);
      std::ofstream(tmp / "model.safetensors") << "calq bytes";
      calq::core::write_output_marker(tmp, "export");
      try {
        calq::core::publish_directory(tmp.string(), out.string());
      } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
      }
    } else {
      calq::core::write_string_atomically((out / "report.json").string(), "{}\n");
    }
    claim.keep();
    wrote = true;
  } catch (const calq::Error&) {
  } catch (const fs::filesystem_error&) {
    // The sandbox's own links can make rename fail (e.g. a link loop); not a rule violation.
  }

  // 2. The property.
  const auto after = snapshot(root);
  for (const auto& [rel, bytes] : before) {
    const fs::path file = fs::weakly_canonical(root / rel, ec);
    const bool inside_output = within(file, resolved) && file != resolved;
    const auto it = after.find(rel);
    const bool unchanged = it != after.end() && it->second == bytes;
    if (unchanged) continue;
    if (file == resolved) finding("a file at the output path was replaced: " + rel);
    if (!inside_output) finding("a file outside the output changed: " + rel + " (target " + target + ")");
    if (!wrote) finding("a refused run changed " + rel);
    if (!target_replaceable) finding("a directory calq may not replace lost " + rel);
    if (run_folder && rel.find("report.json") == std::string::npos &&
        rel.find(calq::core::kOutputMarker) == std::string::npos)
      finding("a run folder lost a file it does not write: " + rel);
  }
  // The input may contain the output (a model folder with an export inside it); the output
  // may never contain the input, or replacing it would delete the input.
  if (wrote && input_existed && within(input_abs, resolved))
    finding("the output " + target + " contains the input " + input);
  for (const auto& [rel, bytes] : after) {
    if (before.count(rel)) continue;
    // Only calq's own names count: a user may call the output itself "x.calq-lock".
    const std::string file = fs::path(rel).filename().string();
    const auto ends_with = [&](const std::string& tail) {
      return file.size() >= tail.size() && file.compare(file.size() - tail.size(), tail.size(), tail) == 0;
    };
    if (file.front() == '.' && ends_with(".calq-lock")) finding("a lock file was left: " + rel);
    // calq's temporary siblings are ".<name>.calq-tmp-<pid>"; a folder the input itself names
    // that way is the user's.
    for (const fs::path& part : fs::path(rel)) {
      const std::string c = part.string();
      if (!c.empty() && c.front() == '.' && c.find(".calq-tmp-") != std::string::npos &&
          target.find(c) == std::string::npos)
        finding("a temporary file was left: " + rel);
    }
  }
}

}  // namespace calq::fuzz
