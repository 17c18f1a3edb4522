// Calibration windows: offsets from calq's own seeded RNG within [0, tokens − seqlen − 1],
// windows equal to the token stream at those offsets, replay from an offsets file, and the
// errors for texts too short or offsets out of range. A byte-level stand-in tokenizer keeps the
// arithmetic checkable by hand.
#include "calib/calibration_set.h"

#include <fstream>
#include <set>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "calib/seeded_rng.h"
#include "core/error.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/temp_dir.h"

namespace {

using calq::calib::CalibrationOptions;
using calq::calib::make_calibration_set;
using Catch::Matchers::Contains;

/// One token per byte, BOS = 256.
class ByteTokenizer final : public calq::core::Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(256);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids) if (id < 256) s.push_back(static_cast<char>(id));
    return s;
  }
  int64_t vocab_size() const override { return 257; }
  std::optional<int32_t> bos_id() const override { return 256; }
  std::optional<int32_t> eos_id() const override { return std::nullopt; }
  std::string kind() const override { return "bytes"; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_ = "<bytes>";
};

std::string write_text(const calq::test::TempDir& dir, const std::string& text) {
  const auto path = dir / "calib.txt";
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

std::string letters(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + (i * 7) % 26));
  return s;
}

}  // namespace

TEST_CASE("SplitMix64 reproduces the reference generator's published outputs", "[calib]") {
  // Vigna's splitmix64.c seeded with 0: the first output is 0xe220a8397b1dcdaf.
  calq::calib::SeededRng rng(0);
  CHECK(rng.next_u64() == 0xe220a8397b1dcdafULL);
  CHECK(rng.next_u64() == 0x6e789e6aa1b965f4ULL);
  CHECK(rng.next_u64() == 0x06c45d188009454fULL);
}

TEST_CASE("bounded draws stay inside [lo, hi] and reach both ends", "[calib]") {
  calq::calib::SeededRng rng(42);
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const int64_t v = rng.uniform_int(3, 9);
    REQUIRE(v >= 3);
    REQUIRE(v <= 9);
    seen.insert(v);
  }
  CHECK(seen.size() == 7);
}

TEST_CASE("calibration windows are the token stream at seeded offsets", "[calib]") {
  calq::test::TempDir dir("calq_calib");
  const std::string text = letters(1000);
  CalibrationOptions options;
  options.data = write_text(dir, text);
  options.nsamples = 16;
  options.seqlen = 32;
  options.seed = 7;
  ByteTokenizer tokenizer;
  const auto set = make_calibration_set(tokenizer, options);

  CHECK(set.stream_tokens == 1001);  // BOS + one per byte
  CHECK(set.dataset == "calib");
  REQUIRE(set.windows.sizes() == at::IntArrayRef({16, 32}));
  const std::vector<int32_t> stream = tokenizer.encode(text, true);
  for (int64_t i = 0; i < 16; ++i) {
    const int64_t start = set.offsets[static_cast<size_t>(i)];
    REQUIRE(start >= 0);
    REQUIRE(start <= 1001 - 32 - 1);  // GPTQ's randint(0, len − seqlen − 1)
    for (int64_t t = 0; t < 32; ++t)
      REQUIRE(set.windows[i][t].item<int64_t>() == stream[static_cast<size_t>(start + t)]);
  }

  SECTION("same seed, same windows and hash; another seed, other windows") {
    const auto again = make_calibration_set(tokenizer, options);
    CHECK(again.offsets == set.offsets);
    CHECK(again.hash == set.hash);
    options.seed = 8;
    const auto other = make_calibration_set(tokenizer, options);
    CHECK(other.offsets != set.offsets);
    CHECK(other.hash != set.hash);
  }
  SECTION("global RNG state does not matter") {
    at::manual_seed(999);
    std::srand(999);
    CHECK(make_calibration_set(tokenizer, options).offsets == set.offsets);
  }
  SECTION("an offsets file replays exact windows") {
    std::ofstream(dir / "offsets.txt") << "# replay\n";
    {
      std::ofstream out(dir / "offsets.txt", std::ios::app);
      for (int64_t o : set.offsets) out << o << "\n";
    }
    options.offsets_path = (dir / "offsets.txt").string();
    options.seed = 12345;  // ignored when replaying
    const auto replay = make_calibration_set(tokenizer, options);
    CHECK(replay.replayed);
    CHECK(replay.offsets == set.offsets);
    CHECK(replay.hash == set.hash);
    CHECK(at::equal(replay.windows, set.windows));
  }
}

TEST_CASE("calibration errors name the file and the numbers", "[calib]") {
  calq::test::TempDir dir("calq_calib");
  ByteTokenizer tokenizer;
  CalibrationOptions options;
  options.data = write_text(dir, letters(100));  // 101 tokens
  options.seqlen = 20;

  SECTION("nsamples × seqlen beyond the text") {
    options.nsamples = 6;  // 120 > 100
    CHECK_THROWS_WITH(make_calibration_set(tokenizer, options),
                      Contains("calib.txt") && Contains("6 × 20 = 120") && Contains("101"));
    options.nsamples = 5;  // 100 ≤ 101 − 1: exactly enough
    CHECK_NOTHROW(make_calibration_set(tokenizer, options));
  }
  SECTION("offsets file: wrong count, out of range, not a number") {
    options.nsamples = 2;
    options.offsets_path = (dir / "offsets.txt").string();
    std::ofstream(dir / "offsets.txt") << "0\n";
    CHECK_THROWS_WITH(make_calibration_set(tokenizer, options),
                      Contains("offsets.txt") && Contains("1 offsets"));
    std::ofstream(dir / "offsets.txt") << "0\n90\n";
    CHECK_THROWS_WITH(make_calibration_set(tokenizer, options),
                      Contains("offsets.txt") && Contains("offset 90"));
    std::ofstream(dir / "offsets.txt") << "0\nseven\n";
    CHECK_THROWS_WITH(make_calibration_set(tokenizer, options), Contains("offsets.txt"));
  }
}

TEST_CASE("calibration activations beyond calibration.max_memory_gb are refused before tokenizing",
          "[calib]") {
  calq::test::TempDir dir("calq_calib");
  ByteTokenizer tokenizer;
  CalibrationOptions options;
  options.data = (dir / "never-read.txt").string();  // the check comes before the text is read
  options.nsamples = 128;
  options.seqlen = 2048;
  options.hidden_size = 4096;
  options.activation_bytes = 4;
  options.max_memory_gb = 8;  // 2 × 128 × 2048 × 4096 × 4 B = 8.59 GB
  CHECK_THROWS_WITH(make_calibration_set(tokenizer, options),
                    Contains("128 × 2048 × 4096") && Contains("8.59 GB") &&
                        Contains("calibration.max_memory_gb = 8") &&
                        Contains("--set calibration.max_memory_gb=9"));
  // Half the bytes per element (float16/bfloat16 compute) fits the same budget.
  options.activation_bytes = 2;
  CHECK_NOTHROW(calq::calib::check_calibration_memory(options));
  // Sizes whose product overflows int64 are refused, not wrapped around into a small number.
  options.nsamples = int64_t{1} << 40;
  options.seqlen = int64_t{1} << 40;
  CHECK_THROWS_WITH(calq::calib::check_calibration_memory(options),
                    Contains("calibration.max_memory_gb"));
  // An unknown width (0) skips the check: make_calibration_set then fails on the missing text.
  options.hidden_size = 0;
  CHECK_THROWS_WITH(make_calibration_set(tokenizer, options), Contains("never-read.txt"));
}
