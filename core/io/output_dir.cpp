#include "core/io/output_dir.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/json_text.h"

namespace calq::core {

namespace fs = std::filesystem;

namespace {

// Resolves symlinks in the part that exists, so two spellings of one directory compare equal.
fs::path comparable(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return ec ? fs::absolute(p).lexically_normal() : c;
}

bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty())
      continue;  // a trailing separator
    if (i == inner.end() || *i != *o)
      return false;
  }
  return true;
}

}  // namespace

fs::path output_dir_path(const std::string& path, std::string_view field) {
  CALQ_CHECK(!path.empty(), "{}: empty; expected a directory name", field);
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty() && p.has_parent_path() && p != p.root_path())
    p = p.parent_path();  // "x/" is x
  const std::string name = p.filename().string();
  const std::string given = quote_string(path, 200);
  CALQ_CHECK(p != p.root_path() && !name.empty() && name != "." && name != "..",
             "{}: {} names {}; expected a new directory name for calq to write", field, given,
             p == p.root_path() ? "the file-system root" : "a directory above the output");
  // lexically_normal keeps leading ".." of a relative path; absolute() removed them, but a
  // path like "x/.." normalises to the parent: compare with the working directory as well.
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  CALQ_CHECK(ec || !is_within(comparable(cwd), comparable(p)),
             "{}: {} is the working directory or one above it; expected a new directory name",
             field, given);
  return p;
}

void check_output_dir(const fs::path& dir, std::string_view field, bool overwrite) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(dir, ec);
  if (status.type() == fs::file_type::not_found)
    return;
  CALQ_CHECK(!ec, "{}: {}: cannot inspect ({}); expected a writable location", field,
             dir.string(), ec.message());
  CALQ_CHECK(status.type() != fs::file_type::symlink,
             "{}: {} is a symbolic link; expected a directory calq can replace (give the link's "
             "target instead)", field, dir.string());
  CALQ_CHECK(status.type() == fs::file_type::directory,
             "{}: {} exists and is not a directory; calq never replaces a file; expected a new "
             "directory name", field, dir.string());
  if (overwrite || fs::exists(dir / kOutputMarker))
    return;
  const bool empty = fs::is_empty(dir, ec);
  CALQ_CHECK(!ec, "{}: {}: cannot list ({}); expected a readable directory", field, dir.string(),
             ec.message());
  CALQ_CHECK(empty,
             "{}: {} holds files calq did not write (no {} marker); expected a new or empty "
             "directory, or --overwrite to replace it", field, dir.string(), kOutputMarker);
}

void check_output_file(const std::string& path, std::string_view field) {
  CALQ_CHECK(!path.empty(), "{}: empty; expected a file name", field);
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(path, ec);
  if (status.type() == fs::file_type::not_found)
    return;
  CALQ_CHECK(status.type() == fs::file_type::regular,
             "{}: {} exists and is not a regular file; expected a new file name", field, path);
  bool calqs = false;
  try {
    const nlohmann::json doc = read_json_file(path, {"report", "a JSON report"});
    calqs = doc.is_object() && doc.contains(kWrittenByKey) && doc[kWrittenByKey].is_string() &&
            doc[kWrittenByKey].get<std::string>().rfind("calq", 0) == 0;
  } catch (const Error&) {
  }
  CALQ_CHECK(calqs, "{}: {} exists and calq did not write it (no \"{}\" key); calq never "
             "replaces such a file; expected a new file name", field, path, kWrittenByKey);
}

void check_output_apart(const fs::path& dir, std::string_view field,
                        const std::vector<RunInput>& inputs) {
  const fs::path out = comparable(dir);
  for (const RunInput& input : inputs) {
    if (input.path.empty())
      continue;
    const fs::path in = comparable(input.path);
    CALQ_CHECK(!is_within(in, out),
               "{}: {} {} {} ({}); expected an output apart from the run's inputs", field,
               dir.string(), in == out ? "is" : "contains", input.field, in.string());
  }
}

fs::path temp_sibling(const fs::path& final_dir) {
  return final_dir.parent_path() /
         fmt::format(".{}.calq-tmp-{}", final_dir.filename().string(), static_cast<long>(::getpid()));
}

fs::path new_output_dir(const std::string& path, std::string_view field) {
  const fs::path dir = output_dir_path(path, field);
  std::error_code ec;
  CALQ_CHECK(fs::symlink_status(dir, ec).type() == fs::file_type::not_found,
             "{}: {} already exists; expected a new directory name", field, dir.string());
  return dir;
}

void write_output_marker(const fs::path& dir, std::string_view kind) {
  write_string_atomically((dir / kOutputMarker).string(),
                          fmt::format("{{\"written_by\": \"calq\", \"kind\": \"{}\"}}\n", kind));
}

OutputClaim::OutputClaim(const fs::path& dir, std::string_view field, bool create_dir)
    : dir_(dir) {
  // Create the missing ancestors one by one, remembering them for the cleanup.
  std::vector<fs::path> missing;
  const fs::path parent = dir.parent_path();
  for (fs::path p = create_dir ? dir : parent; !p.empty() && !fs::exists(p); p = p.parent_path()) {
    missing.insert(missing.begin(), p);
    if (p == p.root_path())
      break;
  }
  for (const fs::path& p : missing) {
    std::error_code ec;
    fs::create_directory(p, ec);
    if (ec) {
      release();  // undo what was made so far
      fail("{}: cannot create {} ({}); expected a writable location", field, p.string(),
           ec.message());
    }
    created_.push_back(p);
  }
  // Appended, not "." + string&&: GCC 12 at -O3 -std=c++20 reports a false -Wrestrict on the
  // latter (the CUDA build's standard, docs/kernels.md §3).
  std::string lock_name = ".";
  lock_name += dir.filename().string();
  lock_name += ".calq-lock";
  lock_path_ = parent / lock_name;
  for (int attempt = 0; attempt < 10; ++attempt) {
    lock_fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lock_fd_ < 0) {
      const int err = errno;
      release();
      fail("{}: cannot create the lock file {} ({}); expected a writable parent directory",
           field, lock_path_.string(), std::strerror(err));
    }
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      release();
      fail("{}: {} is being written by another calq process (lock {}); expected one run per "
           "output at a time", field, dir.string(), lock_path_.string());
    }
    // The holder before us may have unlinked the file between our open and flock: then we hold
    // a lock on a file nobody else sees. Only a lock on the file under the name counts.
    struct stat held {}, named {};
    if (::fstat(lock_fd_, &held) == 0 && ::stat(lock_path_.c_str(), &named) == 0 &&
        held.st_ino == named.st_ino && held.st_dev == named.st_dev)
      break;
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  if (lock_fd_ < 0) {
    release();
    fail("{}: could not lock {}; expected one run per output at a time", field,
         lock_path_.string());
  }
  if (create_dir && !fs::exists(dir / kOutputMarker)) {
    write_output_marker(dir, "run");
    wrote_marker_ = true;
  }
}

OutputClaim::~OutputClaim() { release(); }

void OutputClaim::release() {
  std::error_code ignored;
  if (lock_fd_ >= 0) {
    ::unlink(lock_path_.c_str());  // before unlocking: a waiter then re-checks the name
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  if (keep_)
    return;
  // The marker goes only with a folder that holds nothing else: files the run did write (a
  // plot, a finished cell) stay recognisable as calq's, so the run can be repeated there.
  if (wrote_marker_) {
    bool only_marker = true;
    for (const auto& entry : fs::directory_iterator(dir_, ignored))
      only_marker = only_marker && entry.path().filename() == kOutputMarker;
    if (only_marker) fs::remove(dir_ / kOutputMarker, ignored);
  }
  wrote_marker_ = false;
  for (auto it = created_.rbegin(); it != created_.rend(); ++it)
    fs::remove(*it, ignored);  // only removes an empty directory
  created_.clear();
}

}  // namespace calq::core
