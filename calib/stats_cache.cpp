#include "calib/stats_cache.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "calib/calibration_set.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/log.h"

namespace calq::calib {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSuffix = ".safetensors";

// Entry layout: tensors "<linear>/<stat>", metadata "<linear>/n_samples" and "/n_tokens".
const std::vector<std::pair<const char*, at::Tensor LinearStats::*>> kFields = {
    {"hessian", &LinearStats::hessian},
    {"absmax", &LinearStats::absmax},
    {"mean_abs", &LinearStats::mean_abs},
    {"inputs", &LinearStats::inputs}};

int64_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

}  // namespace

StatsCache::StatsCache(std::string dir, int64_t max_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes) {
  CALQ_CHECK(max_bytes_ > 0, "calibration cache {}: size bound {} bytes; expected > 0", dir_,
             max_bytes_);
}

std::string StatsCache::path_of(const std::string& key) const {
  return (fs::path(dir_) / (key + kSuffix)).string();
}

std::optional<std::map<std::string, LinearStats>> StatsCache::load(const std::string& key,
                                                                   const std::string& label,
                                                                   const std::string& device) {
  const std::string path = path_of(key);
  if (!fs::exists(path)) {
    ++counters_.misses;
    return std::nullopt;
  }
  std::map<std::string, LinearStats> out;
  try {
    const core::SafetensorsFile file(path);
    for (const std::string& name : file.names()) {
      const auto slash = name.rfind('/');
      CALQ_CHECK(slash != std::string::npos, "tensor \"{}\": expected <linear>/<statistic>", name);
      const std::string linear = name.substr(0, slash);
      const std::string field = name.substr(slash + 1);
      const auto it = std::find_if(kFields.begin(), kFields.end(),
                                   [&](const auto& f) { return field == f.first; });
      CALQ_CHECK(it != kFields.end(), "tensor \"{}\": unknown statistic", name);
      out[linear].*(it->second) = file.load(name).to(at::Device(device));
    }
    // A linear that saw no token (an MoE expert nothing was routed to) has counts, no tensors.
    const std::string samples_suffix = "/n_samples";
    for (const auto& [key, value] : file.metadata()) {
      if (key.size() > samples_suffix.size() &&
          key.compare(key.size() - samples_suffix.size(), samples_suffix.size(), samples_suffix) == 0)
        out[key.substr(0, key.size() - samples_suffix.size())];
    }
    for (auto& [linear, stats] : out) {
      const auto& meta = file.metadata();
      const auto samples = meta.find(linear + "/n_samples");
      const auto tokens = meta.find(linear + "/n_tokens");
      CALQ_CHECK(samples != meta.end() && tokens != meta.end(),
                 "linear {}: missing n_samples/n_tokens metadata", linear);
      stats.n_samples = std::stoll(samples->second);
      stats.n_tokens = std::stoll(tokens->second);
    }
  } catch (const std::exception& e) {
    log::warn("calibration cache: {} is unreadable ({}); removing it and collecting afresh", path,
              e.what());
    std::error_code ec;
    fs::remove(path, ec);
    ++counters_.misses;
    return std::nullopt;
  }
  std::error_code ec;
  fs::last_write_time(path, fs::file_time_type::clock::now(), ec);  // LRU: a hit is a use
  ++counters_.hits;
  counters_.bytes_read += file_size_or_zero(path);
  counters_.reused.push_back(label);
  return out;
}

void StatsCache::store(const std::string& key, const std::map<std::string, LinearStats>& stats) {
  core::NamedTensors tensors;
  std::map<std::string, std::string> metadata;
  int64_t bytes = 0;
  for (const auto& [linear, s] : stats) {
    for (const auto& [field, member] : kFields) {
      const at::Tensor& t = s.*member;
      if (!t.defined()) continue;
      tensors.emplace_back(linear + "/" + field, t);
      bytes += static_cast<int64_t>(t.numel() * t.element_size());
    }
    metadata[linear + "/n_samples"] = std::to_string(s.n_samples);
    metadata[linear + "/n_tokens"] = std::to_string(s.n_tokens);
  }
  if (tensors.empty()) return;
  if (bytes > max_bytes_) {
    ++counters_.skipped_too_large;
    log::debug("calibration cache: entry of {} bytes exceeds the bound {}; not stored", bytes,
               max_bytes_);
    return;
  }
  fs::create_directories(dir_);
  const std::string path = path_of(key);
  core::write_safetensors(path, tensors, metadata);
  ++counters_.stores;
  counters_.bytes_written += file_size_or_zero(path);
  evict(path);
}

void StatsCache::evict(const std::string& keep) {
  struct Entry {
    fs::path path;
    fs::file_time_type time;
    int64_t size;
  };
  std::vector<Entry> entries;
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (!e.is_regular_file() || e.path().extension() != kSuffix) continue;
    std::error_code ec;
    const auto time = fs::last_write_time(e.path(), ec);
    if (ec) continue;
    entries.push_back({e.path(), time, file_size_or_zero(e.path())});
    total += entries.back().size;
  }
  // Oldest first; ties by name so eviction does not depend on directory order.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.time != b.time ? a.time < b.time : a.path < b.path;
  });
  for (const Entry& e : entries) {
    if (total <= max_bytes_) break;
    if (e.path == fs::path(keep)) continue;
    std::error_code ec;
    if (fs::remove(e.path, ec)) {
      total -= e.size;
      ++counters_.evicted;
    }
  }
  counters_.size_bytes = total;
}

std::string model_files_fingerprint(const std::string& path) {
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::string described;
  for (const fs::path& f : files) {
    std::error_code ec;
    const auto time = fs::last_write_time(f, ec).time_since_epoch().count();
    described += fmt::format("{}|{}|{};", f.filename().string(), file_size_or_zero(f),
                             ec ? 0 : static_cast<long long>(time));
  }
  return fmt::format("{}#{:016x}", fs::absolute(path).lexically_normal().string(),
                     fnv1a64(described.data(), described.size()));
}

int64_t parse_byte_size(const std::string& text, const std::string& what) {
  size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "KB" || unit == "KiB") scale = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MiB") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GiB") scale = 1024.0 * 1024 * 1024;
  CALQ_CHECK(used > 0 && scale > 0 && value > 0 && std::isfinite(value),
             "{}: \"{}\" is not a size; expected a positive number of bytes with an optional "
             "K, M or G suffix (e.g. 512M, 2G)",
             what, text);
  return static_cast<int64_t>(value * scale);
}

}  // namespace calq::calib
