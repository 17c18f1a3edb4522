#include "core/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <tuple>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/json_text.h"
#include "core/io/mapped_file.h"
#include "core/io/small_file.h"

// The container is little-endian; we copy its bytes into tensors without swapping.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes little-endian");

namespace calq::core {
namespace {

using json = nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";
std::string brief(const json& value) { return quote_json(value); }

// A name from a file or a caller, JSON-quoted so control characters cannot break the one-line
// error message.
std::string json_quoted(const std::string& name) { return quote_string(name, 200); }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string known_dtype_names() {
  std::string out;
  for (int i = 0; i <= static_cast<int>(DType::F8E5M2); ++i) {
    out += (i ? ", " : "") + std::string(dtype_name(static_cast<DType>(i)));
  }
  return out;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

// Parses JSON text, also rejecting duplicate keys at any depth: nlohmann silently keeps the
// last one, while the reference reader (serde) refuses them, and a duplicate tensor name would
// make two readers see different tensors.
json parse_json_strict(const char* begin,
                       const char* end,
                       const std::string& path,
                       const char* what,
                       const char* expected) {
  JsonReadOptions options;
  options.what = what;
  options.expected = expected;
  options.reject_duplicate_keys = true;
  json value = parse_json_bounded(std::string_view(begin, static_cast<std::size_t>(end - begin)),
                                  path, options);
  CALQ_CHECK(value.is_object(), "{}: {} is a JSON {}; expected {}", path, what, value.type_name(),
             expected);
  return value;
}

// Multiplies unless the product overflows T.
template <typename T>
std::optional<T> checked_mul(T a, T b) {
  T product;
  if (__builtin_mul_overflow(a, b, &product))
    return std::nullopt;
  return product;
}

std::vector<int64_t> parse_shape(const json& shape, const std::string& where) {
  CALQ_CHECK(shape.is_array(), "{}: \"shape\" is {}; expected an array of non-negative integers",
             where, brief(shape));
  std::vector<int64_t> dims;
  dims.reserve(shape.size());
  for (const json& dim : shape) {
    if (dim.is_number_unsigned()) {
      const uint64_t value = dim.get<uint64_t>();
      CALQ_CHECK(value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                 "{}: dimension {} in shape {} overflows int64; expected a realistic shape", where,
                 value, brief(shape));
      dims.push_back(static_cast<int64_t>(value));
    } else if (dim.is_number_integer()) {  // nlohmann stores only negative integers as signed
      fail("{}: negative dimension {} in shape {}; expected dimensions >= 0", where,
           dim.get<int64_t>(), brief(shape));
    } else {
      fail("{}: shape element {} is a {}; expected a non-negative integer", where, brief(dim),
           dim.type_name());
    }
  }
  return dims;
}

// Checks one header entry on its own; how entries fit together is check_tiling's job.
TensorInfo parse_entry(const std::string& path,
                       const std::string& name,
                       const json& entry,
                       uint64_t data_size) {
  const std::string where = fmt::format("{}: tensor {}", path, json_quoted(name));
  constexpr const char* kShapeOfEntry = "an object with dtype, shape and data_offsets";
  CALQ_CHECK(entry.is_object(), "{}: entry is a JSON {}; expected {}", where, entry.type_name(),
             kShapeOfEntry);
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    CALQ_CHECK(entry.contains(key), "{}: missing \"{}\"; expected {}", where, key, kShapeOfEntry);
  }

  TensorInfo info;
  info.name = name;
  const json& dtype = entry.at("dtype");
  CALQ_CHECK(dtype.is_string(), "{}: \"dtype\" is {}; expected a string such as \"F16\"", where,
             brief(dtype));
  const std::optional<DType> parsed = dtype_from_name(dtype.get_ref<const std::string&>());
  CALQ_CHECK(parsed, "{}: unknown dtype {}; expected one of {}", where, brief(dtype),
             known_dtype_names());
  info.dtype = *parsed;
  info.shape = parse_shape(entry.at("shape"), where);

  const json& offsets = entry.at("data_offsets");
  CALQ_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                 offsets[1].is_number_unsigned(),
             "{}: \"data_offsets\" is {}; expected [begin, end], two non-negative integers", where,
             brief(offsets));
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  CALQ_CHECK(info.begin <= info.end,
             "{}: data_offsets [{}, {}] are reversed; expected begin <= end", where, info.begin,
             info.end);
  CALQ_CHECK(info.end <= data_size,
             "{}: bytes {}..{} exceed the data section ({} bytes); expected end <= {} (a "
             "truncated file?)",
             where,
             info.begin, info.end, data_size, data_size);

  std::optional<int64_t> numel = 1;
  for (int64_t dim : info.shape)
    numel = numel ? checked_mul<int64_t>(*numel, dim) : numel;
  CALQ_CHECK(numel, "{}: element count of shape {} overflows int64; expected a realistic shape",
             where, shape_string(info.shape));
  const std::optional<uint64_t> n_bytes =
      checked_mul<uint64_t>(static_cast<uint64_t>(*numel), dtype_size(info.dtype));
  CALQ_CHECK(n_bytes, "{}: byte size of {} {} overflows uint64; expected a realistic shape", where,
             dtype_name(info.dtype), shape_string(info.shape));
  CALQ_CHECK(info.end - info.begin == *n_bytes,
             "{}: data_offsets [{}, {}] hold {} bytes but {} {} needs {}; expected end - begin "
             "== {} (byte length mismatch)",
             where, info.begin, info.end, info.end - info.begin, dtype_name(info.dtype),
             shape_string(info.shape), *n_bytes, *n_bytes);
  return info;
}

// Sorted by offset, tensors must cover [0, data_size) exactly once, as the reference reader
// demands: no gaps, no overlaps, nothing after the last tensor.
void check_tiling(const std::string& path,
                  const std::map<std::string, TensorInfo>& tensors,
                  uint64_t data_size) {
  std::vector<const TensorInfo*> order;
  order.reserve(tensors.size());
  for (const auto& entry : tensors)
    order.push_back(&entry.second);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo* t : order) {
    if (t->begin < covered) {
      fail(
          "{}: tensor {} (bytes {}..{}) overlaps tensor {} (bytes {}..{}); expected "
          "tensors to tile the data section",
          path, json_quoted(t->name), t->begin, t->end, json_quoted(previous->name),
          previous->begin, previous->end);
    }
    CALQ_CHECK(t->begin == covered,
               "{}: gap of {} unused bytes before tensor {} (bytes {}..{}); expected tensors "
               "to tile the data section from byte 0",
               path, t->begin - covered, json_quoted(t->name), t->begin, t->end);
    covered = t->end;
    previous = t;
  }
  CALQ_CHECK(covered == data_size,
             "{}: {} trailing bytes after the last tensor (tensors end at {}, the data section "
             "has {}); expected the file to end with the last tensor",
             path, data_size - covered, covered, data_size);
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& metadata) {
  CALQ_CHECK(metadata.is_object(), "{}: \"{}\" is a JSON {}; expected an object of strings", path,
             kMetadataKey, metadata.type_name());
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : metadata.items()) {
    CALQ_CHECK(value.is_string(), "{}: \"{}\" value of {} is {}; expected a string", path,
               kMetadataKey, json_quoted(key), brief(value));
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t dim : shape)
    n *= dim;  // cannot overflow: checked when the header was read
  return n;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size,
                                           const std::string& path) {
  CALQ_CHECK(size >= 8,
             "{}: truncated file of {} bytes; expected at least 8 (the header length)", path,
             size);
  const uint64_t header_size = read_u64_le(bytes);
  // Checked before anything is parsed or allocated: a hostile length must not cost memory.
  CALQ_CHECK(header_size <= SafetensorsFile::kMaxHeaderBytes,
             "{}: header length {} is over the limit of {} bytes (the safetensors format's own "
             "limit, SafetensorsFile::kMaxHeaderBytes); expected a safetensors file",
             path, header_size, SafetensorsFile::kMaxHeaderBytes);
  CALQ_CHECK(header_size <= size - 8,
             "{}: header length {} extends beyond the end of the file ({} bytes); expected 8 + "
             "header length <= file size (a truncated file?)",
             path, header_size, size);
  SafetensorsHeader out;
  out.data_start = 8 + header_size;
  const uint64_t data_size = size - out.data_start;

  const auto* header = reinterpret_cast<const char*>(bytes + 8);
  const json root = parse_json_strict(header, header + header_size, path, "header",
                                      "a JSON object of tensor entries");
  CALQ_CHECK(header[0] == '{', "{}: header does not start with '{{'; expected a JSON object", path);
  for (const auto& [name, entry] : root.items()) {
    if (name == kMetadataKey) {
      out.metadata = parse_metadata(path, entry);
    } else {
      out.tensors.emplace(name, parse_entry(path, name, entry, data_size));
    }
  }
  check_tiling(path, out.tensors, data_size);
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : path_(path), file_(std::make_shared<MappedFile>(path)) {
  SafetensorsHeader header = parse_safetensors_header(file_->data(), file_->size(), path);
  data_start_ = header.data_start;
  tensors_ = std::move(header.tensors);
  metadata_ = std::move(header.metadata);
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  CALQ_CHECK(it != tensors_.end(), "{}: no tensor {}; expected one of the {} tensors in it", path_,
             json_quoted(name), tensors_.size());
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& entry : tensors_)
    out.push_back(entry.first);
  return out;
}

at::Tensor SafetensorsFile::load(const std::string& name) const {
  const TensorInfo& t = info(name);
  c10::ScalarType scalar_type;
  try {
    scalar_type = to_scalar_type(t.dtype);
  } catch (const Error& e) {
    fail("{}: tensor {}: {}", path_, json_quoted(name), e.what());
  }
  at::Tensor out = at::empty(t.shape, at::TensorOptions().dtype(scalar_type).device(at::kCPU));
  const std::size_t n_bytes = t.end - t.begin;
  if (n_bytes == 0)
    return out;  // an empty tensor's data_ptr may be null
  const uint8_t* src = file_->data() + data_start_ + t.begin;
  if (t.dtype == DType::Bool) {
    // Any other byte in an ATen bool is undefined behaviour downstream.
    const auto* bad = std::find_if(src, src + n_bytes, [](uint8_t b) { return b > 1; });
    CALQ_CHECK(bad == src + n_bytes,
               "{}: tensor {}: BOOL element {} has byte value {}; expected 0 or 1", path_,
               json_quoted(name), bad - src, *bad);
  }
  std::memcpy(out.data_ptr(), src, n_bytes);
  file_->drop_pages(data_start_ + t.begin, n_bytes);
  return out;
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (fs::is_directory(status)) {
    const fs::path single = fs::path(path) / "model.safetensors";
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    // transformers looks for the single file first; we match it.
    if (fs::exists(single)) {
      add_file(single.string());
    } else if (fs::exists(index)) {
      read_index(index.string());
    } else {
      fail(
          "{}: no model.safetensors or model.safetensors.index.json; expected a model "
          "directory with safetensors weights",
          path);
    }
  } else if (fs::exists(status)) {
    add_file(path);
  } else {
    fail("{}: no such file or directory; expected a model directory or a .safetensors file", path);
  }
}

SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

void SafetensorsCheckpoint::add_file(const std::string& file_path) {
  auto file = std::make_unique<SafetensorsFile>(file_path);
  for (const std::string& name : file->names())
    weight_map_.emplace(name, file_path);
  open_.emplace(file_path, std::move(file));
}

std::map<std::string, std::string> parse_safetensors_index(std::string_view text,
                                                           const std::string& index_path) {
  namespace fs = std::filesystem;
  constexpr const char* kExpected =
      "{\"weight_map\": {\"<tensor>\": \"<shard>.safetensors\", ...}}";
  const json root = parse_json_strict(text.data(), text.data() + text.size(), index_path, "index",
                                      kExpected);
  CALQ_CHECK(root.contains("weight_map"), "{}: missing \"weight_map\"; expected {}", index_path,
             kExpected);
  const json& weight_map = root.at("weight_map");
  CALQ_CHECK(weight_map.is_object(), "{}: \"weight_map\" is a JSON {}; expected {}", index_path,
             weight_map.type_name(), kExpected);
  std::map<std::string, std::string> out;
  for (const auto& [name, shard] : weight_map.items()) {
    CALQ_CHECK(shard.is_string(), "{}: shard of tensor {} is {}; expected a file name", index_path,
               json_quoted(name), brief(shard));
    const fs::path relative(shard.get<std::string>());
    const bool escapes =
        std::find(relative.begin(), relative.end(), fs::path("..")) != relative.end();
    CALQ_CHECK(!relative.empty() && relative.is_relative() && !escapes,
               "{}: shard {} of tensor {} is not a plain relative path; expected a file "
               "name beside the index",
               index_path, brief(shard), json_quoted(name));
    out.emplace(name, relative.string());
  }
  return out;
}

void SafetensorsCheckpoint::read_index(const std::string& index_path) {
  namespace fs = std::filesystem;
  index_path_ = index_path;
  const MappedFile text(index_path);
  const std::map<std::string, std::string> shards = parse_safetensors_index(
      std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), index_path);
  const fs::path dir = fs::path(index_path).parent_path();
  std::set<std::string> checked;
  for (const auto& [name, shard] : shards) {
    const std::string shard_path = (dir / shard).string();
    if (checked.insert(shard_path).second) {
      const std::string kind = describe_non_regular(shard_path);  // never opens it
      CALQ_CHECK(kind.empty(),
                 "{}: shard file {} (for tensor {}) is {}; expected a regular file beside the "
                 "index",
                 index_path, shard_path, json_quoted(name), kind);
    }
    weight_map_.emplace(name, shard_path);
  }
}

bool SafetensorsCheckpoint::contains(const std::string& name) const {
  return weight_map_.count(name) != 0;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(weight_map_.size());
  for (const auto& entry : weight_map_)
    out.push_back(entry.first);
  return out;
}

const SafetensorsFile& SafetensorsCheckpoint::file_for(const std::string& name) const {
  const auto it = weight_map_.find(name);
  CALQ_CHECK(it != weight_map_.end(), "{}: no tensor {}; expected one of its {} tensors", path_,
             json_quoted(name), weight_map_.size());
  const std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<SafetensorsFile>& file = open_[it->second];
  if (!file)
    file = std::make_unique<SafetensorsFile>(it->second);
  CALQ_CHECK(file->contains(name),
             "{}: no tensor {}, though {} maps it to this shard; "
             "expected the shard to hold it",
             it->second, json_quoted(name), index_path_);
  return *file;
}

const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  return file_for(name).info(name);
}

at::Tensor SafetensorsCheckpoint::load(const std::string& name) const {
  return file_for(name).load(name);
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

struct WriteEntry {
  const std::string* name;
  const at::Tensor* tensor;
  DType dtype;
  uint64_t n_bytes;
};

std::vector<WriteEntry> plan_entries(const std::string& path, const NamedTensors& tensors) {
  std::vector<WriteEntry> entries;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    CALQ_CHECK(!name.empty() && name != kMetadataKey,
               "{}: tensor name {} is empty or reserved; expected a name other than {}", path,
               json_quoted(name), kMetadataKey);
    CALQ_CHECK(seen.insert(name).second, "{}: duplicate tensor name {}; expected each once", path,
               json_quoted(name));
    CALQ_CHECK(tensor.defined(), "{}: tensor {} is undefined; expected a tensor", path,
               json_quoted(name));
    CALQ_CHECK(tensor.layout() == at::kStrided,
               "{}: tensor {} is sparse or otherwise not strided; expected a dense tensor", path,
               json_quoted(name));
    DType dtype;
    try {
      dtype = from_scalar_type(tensor.scalar_type());
    } catch (const Error& e) {
      fail("{}: tensor {}: {}", path, json_quoted(name), e.what());
    }
    const auto n_bytes = static_cast<uint64_t>(tensor.numel()) * dtype_size(dtype);
    entries.push_back({&name, &tensor, dtype, n_bytes});
  }
  // Larger elements first keeps every offset a multiple of its element size (docs/formats.md §1.4).
  std::sort(entries.begin(), entries.end(), [](const WriteEntry& a, const WriteEntry& b) {
    const std::size_t size_a = dtype_size(a.dtype), size_b = dtype_size(b.dtype);
    return size_a != size_b ? size_a > size_b : *a.name < *b.name;
  });
  return entries;
}

std::string encode_header(const std::string& path,
                          const std::vector<WriteEntry>& entries,
                          const std::map<std::string, std::string>& metadata) {
  // ordered_json reproduces the reference writer's bytes: metadata, then tensors in offset order,
  // fields in the order dtype, shape, data_offsets.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  const auto format = metadata.find("format");
  CALQ_CHECK(format == metadata.end() || format->second == "pt",
             "{}: metadata format {}; expected \"pt\" (the tensors are PyTorch's)", path,
             json_quoted(format == metadata.end() ? "" : format->second));
  nlohmann::ordered_json meta = {{"format", "pt"}};
  for (const auto& [key, value] : metadata) {
    if (key != "format")
      meta[key] = value;
  }
  header[kMetadataKey] = std::move(meta);
  uint64_t offset = 0;
  for (const WriteEntry& e : entries) {
    header[*e.name] = {{"dtype", std::string(dtype_name(e.dtype))},
                       {"shape", e.tensor->sizes().vec()},
                       {"data_offsets", {offset, offset + e.n_bytes}}};
    offset += e.n_bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    fail("{}: cannot encode the header ({}); expected UTF-8 names and metadata", path, e.what());
  }
  // Spaces are JSON whitespace; padding makes the data section start 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

void write_safetensors(const std::string& path,
                       const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::vector<WriteEntry> entries = plan_entries(path, tensors);
  const std::string header = encode_header(path, entries, metadata);
  write_file_atomically(path, [&](std::ostream& out) {
    const uint64_t header_size = header.size();
    char length[8];
    std::memcpy(length, &header_size, sizeof length);
    out.write(length, sizeof length);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const WriteEntry& e : entries) {
      if (e.n_bytes == 0)
        continue;
      // One tensor at a time, so a GPU model needs host memory for its largest tensor only.
      const at::Tensor cpu = e.tensor->to(at::kCPU).contiguous();
      out.write(static_cast<const char*>(cpu.data_ptr()), static_cast<std::streamsize>(e.n_bytes));
    }
  });
}

}  // namespace calq::core
