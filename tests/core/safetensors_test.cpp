// Tests for core/io: dtype table, MappedFile, atomic writes, and the safetensors reader/writer,
// including every malformed-file rule of docs/formats.md §1.2, each built here as raw bytes.
#include "core/io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/dtype.h"
#include "core/io/mapped_file.h"
#include "tests/support/test_data.h"

namespace {

namespace fs = std::filesystem;
using calq::core::DType;
using calq::core::MappedFile;
using calq::core::SafetensorsCheckpoint;
using calq::core::SafetensorsFile;
using calq::core::write_safetensors;

constexpr uint64_t kSeed = 20240601;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    do {
      path_ = fs::temp_directory_path() / ("calq_safetensors_test_" + std::to_string(::getpid()) +
                                           "_" + std::to_string(counter++));
    } while (!fs::create_directory(path_));
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator(path_)) {
      out.push_back(entry.path().filename().string());
    }
    return out;
  }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string u64_le(uint64_t value) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &value, 8);
  return out;
}

// A safetensors file as raw bytes: the length prefix (the header's size unless overridden),
// the header text, then `n_data` bytes of data.
std::string raw_file(const std::string& header, std::size_t n_data, int64_t length = -1) {
  const uint64_t prefix = length < 0 ? header.size() : static_cast<uint64_t>(length);
  return u64_le(prefix) + header + std::string(n_data, '\x01');
}

// Opening `path` must throw calq::Error whose message names the file and contains `word`.
void require_open_error(const std::string& path, const std::string& word) {
  INFO("file " << path << ", expecting \"" << word << "\"");
  try {
    SafetensorsFile file(path);
    FAIL("opened without error");
  } catch (const calq::Error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Matchers::Contains(fs::path(path).filename().string()) &&
                            Catch::Matchers::Contains(word));
  }
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes())
    return false;
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.numel() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

at::Tensor random_tensor(at::IntArrayRef shape, at::ScalarType type) {
  if (type == at::kBool)
    return at::randint(0, 2, shape, at::kLong).to(at::kBool);
  if (type == at::kByte)
    return at::randint(0, 256, shape, at::kLong).to(type);
  if (at::isIntegralType(type, /*includeBool=*/false)) {
    return at::randint(-128, 128, shape, at::kLong).to(type);
  }
  return at::randn(shape, at::kFloat).to(type);  // randn lacks Half on CPU in 1.13
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// dtype, MappedFile, atomic writes

TEST_CASE("dtype names, sizes and ATen types round-trip", "[core][safetensors]") {
  for (int i = 0; i <= static_cast<int>(DType::F8E5M2); ++i) {
    const auto dtype = static_cast<DType>(i);
    CHECK(calq::core::dtype_from_name(calq::core::dtype_name(dtype)) == dtype);
  }
  CHECK(calq::core::dtype_name(DType::F8E4M3) == "F8_E4M3");
  CHECK(calq::core::dtype_size(DType::BF16) == 2);
  CHECK(calq::core::dtype_size(DType::I64) == 8);
  CHECK_FALSE(calq::core::dtype_from_name("F17").has_value());
  CHECK(calq::core::to_scalar_type(DType::BF16) == at::kBFloat16);
  CHECK(calq::core::from_scalar_type(at::kChar) == DType::I8);
  CHECK_THROWS_WITH(calq::core::to_scalar_type(DType::F8E4M3),
                    Catch::Matchers::Contains("F8_E4M3"));
  CHECK_THROWS_AS(calq::core::to_scalar_type(DType::U32), calq::Error);
  CHECK_THROWS_AS(calq::core::from_scalar_type(at::kComplexFloat), calq::Error);
}

TEST_CASE("MappedFile maps files, accepts empty ones and names missing ones",
          "[core][safetensors]") {
  TempDir dir;
  write_bytes(dir.file("data.bin"), "hello");
  const MappedFile mapped(dir.file("data.bin"));
  REQUIRE(mapped.size() == 5);
  CHECK(std::string(reinterpret_cast<const char*>(mapped.data()), 5) == "hello");

  write_bytes(dir.file("empty.bin"), "");
  const MappedFile empty(dir.file("empty.bin"));
  CHECK(empty.size() == 0);

  CHECK_THROWS_WITH(MappedFile(dir.file("missing.bin")), Catch::Matchers::Contains("missing.bin"));
  CHECK_THROWS_WITH(MappedFile(dir.path().string()),
                    Catch::Matchers::Contains("a directory; expected a regular file"));
}

TEST_CASE("write_file_atomically replaces the target only on success", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("out.txt");
  calq::core::write_string_atomically(path, "first");
  CHECK(read_bytes(path) == "first");

  SECTION("a throwing writer leaves the old file and no temporary behind") {
    CHECK_THROWS_WITH(calq::core::write_file_atomically(path,
                                                        [](std::ostream& out) {
                                                          out << "partial";
                                                          throw std::runtime_error("interrupted");
                                                        }),
                      "interrupted");
    CHECK(read_bytes(path) == "first");
    CHECK(dir.entries() == std::vector<std::string>{"out.txt"});
  }
  SECTION("a throwing writer on a new path leaves no file at all") {
    const std::string fresh = dir.file("fresh.bin");
    CHECK_THROWS_AS(calq::core::write_file_atomically(fresh,
                                                      [](std::ostream& out) {
                                                        out << std::string(3 << 20, 'x');
                                                        throw std::runtime_error("interrupted");
                                                      }),
                    std::runtime_error);
    CHECK_FALSE(fs::exists(fresh));
    CHECK(dir.entries() == std::vector<std::string>{"out.txt"});
  }
  SECTION("a missing directory is a calq::Error naming the path") {
    const std::string bad = dir.file("no/such/dir/out.txt");
    CHECK_THROWS_WITH(
        calq::core::write_string_atomically(bad, "x"),
        Catch::Matchers::Contains("out.txt") && Catch::Matchers::Contains("temporary"));
  }
}

TEST_CASE("write_safetensors leaves no file when a tensor cannot be written",
          "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const calq::core::NamedTensors tensors = {{"ok", at::zeros({2})},
                                            {"bad", at::zeros({2}, at::kComplexFloat)}};
  CHECK_THROWS_WITH(
      write_safetensors(path, tensors),
      Catch::Matchers::Contains("model.safetensors") && Catch::Matchers::Contains("\"bad\""));
  CHECK(dir.entries().empty());

  // A meta tensor has no bytes: copying it to the CPU throws after "big" has been written, so
  // the write is interrupted half-way. The previous file must survive untouched.
  write_safetensors(path, {{"old", at::ones({3})}});
  const std::string before = read_bytes(path);
  const calq::core::NamedTensors interrupted = {
      {"big", at::ones({1 << 20}, at::kDouble)},
      {"meta", at::empty({4}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta))}};
  CHECK_THROWS(write_safetensors(path, interrupted));
  CHECK(read_bytes(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
  fs::remove(path);

  CHECK_THROWS_WITH(write_safetensors(path, {{"a", at::zeros({1})}, {"a", at::zeros({1})}}),
                    Catch::Matchers::Contains("duplicate"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", at::zeros({1})}}, {{"format", "tf"}}),
                    Catch::Matchers::Contains("format"));
  CHECK(dir.entries().empty());
}

// ---------------------------------------------------------------------------------------------
// Round trips and the writer's layout

TEST_CASE("safetensors round-trips every supported dtype bit for bit", "[core][safetensors]") {
  at::manual_seed(kSeed);
  const at::ScalarType type = GENERATE(at::kFloat, at::kHalf, at::kBFloat16, at::kChar, at::kByte,
                                       at::kShort, at::kInt, at::kLong, at::kDouble, at::kBool);
  INFO("dtype " << c10::toString(type));
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  const calq::core::NamedTensors tensors = {
      {"matrix", random_tensor({3, 5}, type)},
      {"scalar", random_tensor({}, type)},
      {"empty", random_tensor({0, 4}, type)},
      {"vector", random_tensor({7}, type)},
      // A strided view with a storage offset: the writer must copy out the logical elements.
      {"view", random_tensor({4, 6}, type).t().slice(0, 1, 5)},
  };
  write_safetensors(path, tensors);

  const SafetensorsFile file(path);
  CHECK(file.names() == std::vector<std::string>{"empty", "matrix", "scalar", "vector", "view"});
  for (const auto& [name, expected] : tensors) {
    INFO("tensor " << name);
    const at::Tensor loaded = file.load(name);
    CHECK(same_bits(loaded, expected));
    CHECK(loaded.is_contiguous());
    CHECK(file.info(name).numel() == expected.numel());
  }
  CHECK(file.info("scalar").shape.empty());
  CHECK(file.info("empty").begin == file.info("empty").end);
}

TEST_CASE("loaded tensors own their bytes after the file is closed", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  const at::Tensor expected = at::arange(12, at::kFloat).reshape({3, 4});
  write_safetensors(path, {{"w", expected}});
  at::Tensor loaded;
  {
    const SafetensorsFile file(path);
    loaded = file.load("w");
  }
  fs::remove(path);
  CHECK(same_bits(loaded, expected));
}

TEST_CASE("safetensors header is space-padded to 8 bytes and tensors ordered by element size",
          "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  const calq::core::NamedTensors tensors = {
      {"a_i8", at::arange(3, at::kChar)},   {"b_f32", at::arange(5, at::kFloat)},
      {"c_i64", at::arange(3, at::kLong)},  {"d_f16", at::arange(3, at::kHalf)},
      {"e_f32", at::arange(2, at::kFloat)}, {"f_bf16", at::arange(1, at::kBFloat16)},
  };
  write_safetensors(path, tensors);

  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t header_size;
  std::memcpy(&header_size, bytes.data(), 8);
  CHECK(header_size % 8 == 0);
  REQUIRE(8 + header_size <= bytes.size());
  const std::string header = bytes.substr(8, header_size);
  CHECK(header.front() == '{');
  const std::size_t json_end = header.find_last_not_of(' ') + 1;
  CHECK(header[json_end - 1] == '}');
  CHECK(json_end + 8 > header_size);  // no more padding than needed

  const auto root = nlohmann::json::parse(header);
  CHECK(root.at("__metadata__") == nlohmann::json{{"format", "pt"}});
  const std::vector<std::string> expected_order = {"c_i64", "b_f32",  "e_f32",
                                                   "d_f16", "f_bf16", "a_i8"};
  uint64_t offset = 0;
  for (const std::string& name : expected_order) {
    INFO("tensor " << name);
    const auto& entry = root.at(name);
    const auto begin = entry.at("data_offsets")[0].get<uint64_t>();
    const auto end = entry.at("data_offsets")[1].get<uint64_t>();
    CHECK(begin == offset);
    offset = end;
    const at::Tensor& t = std::find_if(tensors.begin(), tensors.end(), [&](const auto& p) {
                            return p.first == name;
                          })->second;
    CHECK(begin % t.element_size() == 0);
    // The raw bytes at that offset are the tensor's.
    REQUIRE(end - begin == t.nbytes());
    CHECK(std::memcmp(bytes.data() + 8 + header_size + begin, t.data_ptr(), t.nbytes()) == 0);
  }
  CHECK(8 + header_size + offset == bytes.size());
}

TEST_CASE("safetensors metadata round-trips and always carries format pt", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  write_safetensors(path, {{"w", at::ones({2})}}, {{"quant_method", "gptq"}, {"bits", "4"}});
  const SafetensorsFile file(path);
  const std::map<std::string, std::string> expected = {
      {"bits", "4"}, {"format", "pt"}, {"quant_method", "gptq"}};
  CHECK(file.metadata() == expected);

  write_safetensors(path, {});  // no tensors at all is still a valid file
  const SafetensorsFile empty(path);
  CHECK(empty.names().empty());
  CHECK(empty.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

TEST_CASE("safetensors checkpoint reads shards listed by the index lazily", "[core][safetensors]") {
  at::manual_seed(kSeed);
  TempDir dir;
  const at::Tensor a = at::randn({4, 3}), b = at::randn({2}).to(at::kHalf);
  const at::Tensor c = at::arange(6, at::kLong);
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), {{"a", a}, {"b", b}});
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"c", c}});
  write_bytes(dir.file("model.safetensors.index.json"), R"({
    "metadata": {"total_size": 84},
    "weight_map": {"a": "model-00001-of-00002.safetensors",
                   "b": "model-00001-of-00002.safetensors",
                   "c": "model-00002-of-00002.safetensors"}})");

  const SafetensorsCheckpoint checkpoint(dir.path().string());
  CHECK(checkpoint.names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(checkpoint.contains("c"));
  CHECK_FALSE(checkpoint.contains("d"));
  CHECK(same_bits(checkpoint.load("a"), a));
  CHECK(same_bits(checkpoint.load("b"), b));
  CHECK(same_bits(checkpoint.load("c"), c));
  CHECK(checkpoint.info("c").dtype == DType::I64);
  CHECK_THROWS_WITH(checkpoint.load("d"),
                    Catch::Matchers::Contains(dir.path().filename().string()) &&
                        Catch::Matchers::Contains("no tensor \"d\""));

  SECTION("a tensor missing from the shard the index names is an error on load") {
    write_bytes(dir.file("model.safetensors.index.json"),
                R"({"weight_map": {"a": "model-00002-of-00002.safetensors"}})");
    const SafetensorsCheckpoint wrong(dir.path().string());
    CHECK_THROWS_WITH(wrong.load("a"), Catch::Matchers::Contains("model-00002-of-00002") &&
                                           Catch::Matchers::Contains("index.json"));
  }
}

TEST_CASE("safetensors checkpoint opens a single file or a directory holding one",
          "[core][safetensors]") {
  TempDir dir;
  const at::Tensor w = at::arange(4, at::kInt);
  write_safetensors(dir.file("model.safetensors"), {{"w", w}});
  for (const std::string& path : {dir.path().string(), dir.file("model.safetensors")}) {
    INFO("path " << path);
    const SafetensorsCheckpoint checkpoint(path);
    CHECK(checkpoint.names() == std::vector<std::string>{"w"});
    CHECK(same_bits(checkpoint.load("w"), w));
  }
  CHECK_THROWS_WITH(SafetensorsCheckpoint(dir.file("nothing")),
                    Catch::Matchers::Contains("nothing"));
  TempDir empty;
  CHECK_THROWS_WITH(SafetensorsCheckpoint(empty.path().string()),
                    Catch::Matchers::Contains("model.safetensors.index.json"));
}

TEST_CASE("safetensors checkpoint rejects broken index files", "[core][safetensors]") {
  TempDir dir;
  write_safetensors(dir.file("shard.safetensors"), {{"w", at::ones({1})}});
  const std::string index = dir.file("model.safetensors.index.json");
  const auto require_index_error = [&](const std::string& text, const std::string& word) {
    INFO("index " << text);
    write_bytes(index, text);
    CHECK_THROWS_WITH(SafetensorsCheckpoint(dir.path().string()),
                      Catch::Matchers::Contains("model.safetensors.index.json") &&
                          Catch::Matchers::Contains(word));
  };
  require_index_error(R"({"weight_map": {"w": )", "not valid JSON");
  require_index_error(R"([1, 2])", "array");
  require_index_error(R"({"metadata": {}})", "missing \"weight_map\"");
  require_index_error(R"({"weight_map": []})", "\"weight_map\" is a JSON array");
  require_index_error(R"({"weight_map": {"w": 3}})", "shard of tensor \"w\"");
  require_index_error(R"({"weight_map": {"w": "gone.safetensors"}})", "missing");
  require_index_error(R"({"weight_map": {"w": "../shard.safetensors"}})", "relative path");
  require_index_error(R"({"weight_map": {"w": "shard.safetensors", "w": "shard.safetensors"}})",
                      "duplicate");
}

// ---------------------------------------------------------------------------------------------
// Malformed files, built byte by byte

namespace {

struct BadFile {
  const char* what;
  std::string bytes;
  const char* word;  // expected in the error message
};

void require_all_rejected(const std::vector<BadFile>& cases) {
  for (const BadFile& c : cases) {
    DYNAMIC_SECTION(c.what) {
      TempDir dir;
      const std::string path = dir.file("bad_file.safetensors");
      write_bytes(path, c.bytes);
      require_open_error(path, c.word);
    }
  }
}

const std::string kF32Pair = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

}  // namespace

TEST_CASE("safetensors accepts well-formed files written by others", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("other.safetensors");
  // Unpadded header, offsets out of name order, two empty tensors sharing an offset.
  write_bytes(path, raw_file(R"({"b":{"dtype":"I8","shape":[0],"data_offsets":[0,0]},)"
                             R"("c":{"dtype":"U8","shape":[2,0],"data_offsets":[0,0]},)"
                             R"("a":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}})",
                             2));
  const SafetensorsFile file(path);
  CHECK(file.names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(file.metadata().empty());
  CHECK(file.load("a").item<int16_t>() == 0x0101);
  CHECK(file.load("c").sizes() == at::IntArrayRef{2, 0});
}

TEST_CASE("safetensors rejects truncated files and impossible header lengths",
          "[core][safetensors]") {
  require_all_rejected({
      {"empty file", "", "truncated"},
      {"shorter than the length prefix", std::string("\x10\0\0", 3), "truncated"},
      {"header length beyond the file", raw_file("{}", 0, 100), "beyond the end"},
      {"absurd header length", raw_file("{}", 0, int64_t{1} << 40), "over the limit"},
      {"header length just over the limit", raw_file("{}", 0, 100'000'001), "over the limit"},
  });
}

TEST_CASE("safetensors rejects headers that are not a JSON object of entries",
          "[core][safetensors]") {
  require_all_rejected({
      {"empty header", raw_file("", 0), "not valid JSON"},
      {"invalid JSON", raw_file(R"({"a": {"dtype": )", 0), "not valid JSON"},
      {"invalid UTF-8", raw_file("{\"\xff\":1}", 0), "not valid JSON"},
      {"array header", raw_file("[1, 2]  ", 0), "JSON array"},
      {"leading whitespace", raw_file(R"( {"a":)" + kF32Pair + "}", 8), "does not start"},
      {"entry not an object", raw_file(R"({"a": 5})", 0), "entry is a JSON number"},
      {"missing dtype", raw_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8),
       "missing \"dtype\""},
      {"missing shape", raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8),
       "missing \"shape\""},
      {"missing data_offsets", raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8),
       "missing \"data_offsets\""},
      {"dtype not a string", raw_file(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
       "\"dtype\" is 4"},
      {"shape not an array",
       raw_file(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8), "\"shape\""},
      {"fractional dimension",
       raw_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "shape element"},
      {"data_offsets of one number",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8), "data_offsets"},
      {"negative offset", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8),
       "data_offsets"},
      {"unknown dtype", raw_file(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", 8),
       "unknown dtype \"F17\""},
      {"negative dimension",
       raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       "negative dimension"},
      {"dimension beyond int64",
       raw_file(R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8),
       "overflows"},
      {"shape product overflow",
       raw_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})",
                8),
       "overflows"},
      {"byte size overflow",
       raw_file(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
       "overflows"},
  });
}

TEST_CASE("safetensors rejects offsets that do not tile the data section", "[core][safetensors]") {
  const std::string a_first = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  require_all_rejected({
      {"begin after end", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
       "reversed"},
      {"offsets outside the data section", raw_file(R"({"a":)" + kF32Pair + "}", 4),
       "exceed the data section"},
      {"byte length mismatch",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), "mismatch"},
      {"overlapping tensors",
       raw_file(
           R"({"a":)" + kF32Pair + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           12),
       "overlaps"},
      {"gap between tensors",
       raw_file(R"({"a":)" + a_first + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                12),
       "gap of 4"},
      {"gap before the first tensor",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap of 4"},
      {"trailing bytes", raw_file(R"({"a":)" + a_first + "}", 8), "trailing"},
      {"bytes after a file with no tensors", raw_file("{}", 1), "trailing"},
  });
}

TEST_CASE("safetensors rejects bad metadata and duplicate names", "[core][safetensors]") {
  require_all_rejected({
      {"metadata not an object", raw_file(R"({"__metadata__":["pt"]})", 0), "__metadata__"},
      {"metadata value not a string", raw_file(R"({"__metadata__":{"format":1}})", 0),
       "value of \"format\""},
      {"duplicate tensor names", raw_file(R"({"a":)" + kF32Pair + R"(,"a":)" + kF32Pair + "}", 8),
       "duplicate key \"a\""},
      {"duplicate field in an entry",
       raw_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       "duplicate key \"dtype\""},
  });
}

TEST_CASE("safetensors error messages stay on one line whatever the tensor names",
          "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("names.safetensors");
  // A JSON-escaped newline in the name, and a gap to trigger an error that quotes it.
  write_bytes(path,
              raw_file(R"({"evil\nname":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2));
  try {
    SafetensorsFile file(path);
    FAIL("opened without error");
  } catch (const calq::Error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);
    CHECK_THAT(message, Catch::Matchers::Contains(R"("evil\nname")"));
  }
}

TEST_CASE("safetensors load rejects tensors ATen cannot hold", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("exotic.safetensors");
  write_bytes(path, raw_file(R"({"f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},)"
                             R"("flag":{"dtype":"BOOL","shape":[2],"data_offsets":[2,4]}})",
                             4));  // every data byte is 0x01: the BOOLs are valid
  const SafetensorsFile file(path);
  CHECK(file.info("f8").dtype == DType::F8E4M3);
  CHECK_THROWS_WITH(file.load("f8"), Catch::Matchers::Contains("exotic.safetensors") &&
                                         Catch::Matchers::Contains("\"f8\"") &&
                                         Catch::Matchers::Contains("F8_E4M3"));
  CHECK(file.load("flag").all().item<bool>());
  CHECK_THROWS_WITH(file.load("nope"), Catch::Matchers::Contains("no tensor \"nope\""));

  write_bytes(
      path, raw_file(R"({"flag":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", 0) + "\x02");
  CHECK_THROWS_WITH(SafetensorsFile(path).load("flag"), Catch::Matchers::Contains("byte value 2"));
}

// ---------------------------------------------------------------------------------------------
// Shared fixtures written by Python safetensors

TEST_CASE("safetensors reads transformers fixtures and rewrites them byte for byte",
          "[core][safetensors][data]") {
  const std::string family =
      GENERATE("gpt2", "llama", "llama_bf16", "llama_tied", "mistral", "opt", "qwen2");
  INFO("fixture " << family);
  CALQ_REQUIRE_DATA(fixture, "hf-fixtures/" + family + "/model.safetensors");
  const SafetensorsCheckpoint checkpoint(fixture.parent_path().string());
  const SafetensorsFile original(fixture.string());
  CHECK(original.metadata() == std::map<std::string, std::string>{{"format", "pt"}});

  calq::core::NamedTensors tensors;
  for (const std::string& name : checkpoint.names()) {
    tensors.emplace_back(name, checkpoint.load(name));
  }
  TempDir dir;
  const std::string copy = dir.file("model.safetensors");
  write_safetensors(copy, tensors);
  // Each fixture has one dtype, so the reference writer's order (dtype, then name) is ours.
  const std::string ours = read_bytes(copy), theirs = read_bytes(fixture.string());
  CHECK(ours.size() == theirs.size());
  const auto mismatch = std::mismatch(ours.begin(), ours.end(), theirs.begin(), theirs.end());
  INFO("first difference at byte " << (mismatch.first - ours.begin()) << ": ours \""
                                   << ours.substr(mismatch.first - ours.begin(), 60)
                                   << "\" theirs \""
                                   << theirs.substr(mismatch.second - theirs.begin(), 60) << "\"");
  CHECK(mismatch.first == ours.end());

  // expected.safetensors: no __metadata__ at all, mixed F32 and I64.
  const SafetensorsFile expected((fixture.parent_path() / "expected.safetensors").string());
  CHECK(expected.metadata().empty());
  for (const std::string& name : expected.names())
    CHECK(expected.load(name).numel() > 0);
}
