// Bit packing and the packed-linear codecs against words written out by hand from docs/formats.md
// (§2.2–2.4 GPTQ, §3.2 AWQ, §4.4 compressed-tensors), then round trips of every bit width and
// layout through a real safetensors file: codes, scales and the dequantized weight come back
// exactly.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "core/checkpoint/packed_linear.h"
#include "core/io/safetensors.h"
#include "core/model/weight_source.h"
#include "core/quant/bit_packing.h"
#include "core/quant/quantized_tensor.h"
#include "tests/support/temp_dir.h"

namespace {

using calq::core::Grid;
using calq::core::PackedLayout;
using calq::core::QuantizedTensor;
using calq::core::SaveFormat;

at::Tensor row(const std::vector<int32_t>& v) {
  return at::tensor(v, at::kInt).reshape({1, static_cast<int64_t>(v.size())});
}

uint32_t word(const at::Tensor& packed, int64_t r, int64_t c) {
  return static_cast<uint32_t>(packed[r][c].item<int32_t>());
}

QuantizedTensor quantized(int64_t out, int64_t in, int bits, Grid grid, int64_t group, uint64_t seed) {
  at::manual_seed(seed);
  auto spec = calq::core::weight_spec(bits, grid, group);
  spec.scale_dtype = at::kHalf;
  return calq::core::quantize_weight(at::randn({out, in}) * 0.05, spec);
}

/// Packs, writes and re-reads one linear; returns what the reader gives.
QuantizedTensor round_trip(const PackedLayout& layout, const QuantizedTensor& q) {
  calq::test::TempDir dir("calq_pack");
  calq::core::write_safetensors((dir / "model.safetensors").string(),
                                calq::core::pack_linear(layout, "layer.proj", q));
  const auto source = calq::core::open_safetensors_source(dir.path().string());
  REQUIRE(calq::core::has_packed_linear(layout, *source, "layer.proj"));
  return calq::core::unpack_linear(layout, *source, "layer.proj");
}

}  // namespace

TEST_CASE("bit streams pack LSB first, as GPTQ and compressed-tensors store codes",
          "[checkpoint][packing]") {
  // 4-bit: codes 0..7 of eight inputs -> one word, code i at bits 4i.
  CHECK(word(calq::core::pack_bitstream(row({0, 1, 2, 3, 4, 5, 6, 7}), 4), 0, 0) == 0x76543210u);
  // 2-bit: (3, 0, 1, 2) per byte = 3 | 0 << 2 | 1 << 4 | 2 << 6 = 0x93.
  CHECK(word(calq::core::pack_bitstream(row({3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2}), 2),
             0, 0) == 0x93939393u);
  // 8-bit, the top byte set: the int32 word is negative, its bits are what matter.
  CHECK(word(calq::core::pack_bitstream(row({0x01, 0x80, 0xFF, 0x7F}), 8), 0, 0) == 0x7FFF8001u);
  CHECK(calq::core::pack_bitstream(row({0, 0, 0, 0x80}), 8)[0][0].item<int32_t>() == INT32_MIN);
  // 3-bit: 32 codes in 3 words, fields straddling word borders (docs/formats.md §2.3).
  std::vector<int32_t> codes;
  for (int i = 0; i < 32; ++i) codes.push_back((i * 5 + 3) % 8);
  const at::Tensor three = calq::core::pack_bitstream(row(codes), 3);
  REQUIRE(three.size(1) == 3);
  CHECK(word(three, 0, 0) == 0x43C67543u);
  CHECK(word(three, 0, 1) == 0x7543C675u);
  CHECK(word(three, 0, 2) == 0xC67543C6u);
  CHECK(at::equal(calq::core::unpack_bitstream(three, 3, 32), row(codes)));
  // A partial last word is zero-padded (compressed-tensors pads to whole words).
  CHECK(word(calq::core::pack_bitstream(row({0, 7, 8, 15}), 4), 0, 0) == 0x0000F870u);
  CHECK_THROWS(calq::core::pack_bitstream(row({16}), 4));
}

TEST_CASE("awq interleaves the eight outputs of a word as 0 2 4 6 1 3 5 7", "[checkpoint][packing]") {
  const at::Tensor packed = calq::core::pack_awq(row({0, 1, 2, 3, 4, 5, 6, 7}));
  CHECK(word(packed, 0, 0) == 0x75316420u);  // nibble p holds output ORDER[p]
  const at::Tensor codes = row({9, 10, 11, 12, 13, 14, 15, 1, 2, 3, 4, 5, 6, 7, 8, 0});
  CHECK(at::equal(calq::core::unpack_awq(calq::core::pack_awq(codes)), codes));
}

TEST_CASE("gptq v1 stores zero − 1: symmetric zeros give the well-known words", "[checkpoint][packing]") {
  const struct {
    int bits;
    uint32_t zeros_word;
  } cases[] = {{2, 0x55555555u}, {4, 0x77777777u}, {8, 0x7F7F7F7Fu}};
  for (const auto& c : cases) {
    INFO(c.bits << " bits");
    const QuantizedTensor q = quantized(64, 64, c.bits, Grid::GptqSym, 32, 1);
    PackedLayout layout = calq::core::layout_for(SaveFormat::Gptq, q, std::nullopt);
    REQUIRE(calq::core::unrepresentable_reason(layout, q).empty());
    const auto tensors = calq::core::pack_linear(layout, "p", q);
    REQUIRE(tensors[1].first == "p.qzeros");
    CHECK(word(tensors[1].second, 0, 0) == c.zeros_word);
    CHECK(tensors[0].second.sizes() == at::IntArrayRef({64 * c.bits / 32, 64}));
  }
  // Zero point 0 cannot be stored in v1 (it would be −1): refused, never written.
  QuantizedTensor q = quantized(64, 64, 4, Grid::GptqAsym, 32, 2);
  q.zeros[3][1] = 0;
  const PackedLayout layout = calq::core::layout_for(SaveFormat::Gptq, q, std::nullopt);
  CHECK_THAT(calq::core::unrepresentable_reason(layout, q), Catch::Contains("zero point 0"));
}

TEST_CASE("every packed layout reads back the same codes and the same dequantized weight",
          "[checkpoint][packing]") {
  struct Case {
    SaveFormat format;
    int bits;
    Grid grid;
    int64_t group;
    bool act_order;
  };
  const Case cases[] = {
      {SaveFormat::Gptq, 2, Grid::GptqAsym, 32, false},  {SaveFormat::Gptq, 3, Grid::GptqAsym, 32, false},
      {SaveFormat::Gptq, 4, Grid::GptqSym, 32, true},    {SaveFormat::Gptq, 4, Grid::AwqAsym, -1, false},
      {SaveFormat::Gptq, 8, Grid::GptqSym, 64, false},   {SaveFormat::Awq, 4, Grid::AwqAsym, 32, false},
      {SaveFormat::Awq, 4, Grid::GptqAsym, 64, false},   {SaveFormat::CompressedTensors, 4, Grid::GptqSym, 32, false},
      {SaveFormat::CompressedTensors, 4, Grid::GptqAsym, 32, false},
      {SaveFormat::CompressedTensors, 4, Grid::CtAsym, -1, false},
      {SaveFormat::CompressedTensors, 8, Grid::Absmax, -1, false},
      {SaveFormat::CompressedTensors, 3, Grid::CtSym, 32, false},
  };
  for (const Case& c : cases) {
    INFO(calq::core::save_format_name(c.format) << " w" << c.bits << " " << calq::core::grid_name(c.grid)
                                                << " g" << c.group << (c.act_order ? " act-order" : ""));
    QuantizedTensor q = quantized(96, 128, c.bits, c.grid, c.group, 3);
    if (c.act_order) {
      // A non-monotonic g_idx as GPTQ's act-order leaves it: groups by a column permutation.
      const at::Tensor perm = at::randperm(128, at::kLong);
      q.g_idx = q.g_idx.index_select(0, perm).contiguous();
    }
    const PackedLayout layout = calq::core::layout_for(c.format, q, std::nullopt);
    CHECK(layout.act_order == c.act_order);
    REQUIRE(calq::core::unrepresentable_reason(layout, q).empty());
    const QuantizedTensor back = round_trip(layout, q);
    const int32_t offset = back.grid == Grid::CtSym || back.grid == Grid::CtAsym
                               ? (q.grid == Grid::GptqSym || q.grid == Grid::GptqAsym || q.grid == Grid::AwqAsym
                                      ? (1 << (c.bits - 1))
                                      : 0)
                               : 0;
    CHECK(at::equal(back.codes, q.codes - offset));
    CHECK(at::equal(back.g_idx.to(at::kInt), q.g_idx.to(at::kInt)));
    CHECK(at::equal(back.dequantize(), q.dequantize()));
  }
}

TEST_CASE("layouts refuse what they cannot store, with the reason", "[checkpoint][packing]") {
  const QuantizedTensor sym = quantized(64, 64, 4, Grid::GptqSym, 32, 4);
  PackedLayout awq = calq::core::layout_for(SaveFormat::Awq, sym, std::nullopt);
  CHECK_THAT(calq::core::unrepresentable_reason(awq, sym), Catch::Contains("asymmetric"));
  const QuantizedTensor ct = quantized(64, 64, 4, Grid::CtSym, 32, 4);
  const PackedLayout gptq = calq::core::layout_for(SaveFormat::Gptq, ct, std::nullopt);
  CHECK_THAT(calq::core::unrepresentable_reason(gptq, ct), Catch::Contains("signed codes"));
  const QuantizedTensor short_group = quantized(64, 80, 4, Grid::GptqAsym, 32, 4);
  const PackedLayout g = calq::core::layout_for(SaveFormat::Gptq, short_group, std::nullopt);
  CHECK_THAT(calq::core::unrepresentable_reason(g, short_group), Catch::Contains("does not divide"));
  const QuantizedTensor odd = quantized(64, 48, 4, Grid::GptqAsym, 16, 4);
  const PackedLayout o = calq::core::layout_for(SaveFormat::Gptq, odd, std::nullopt);
  CHECK_THAT(calq::core::unrepresentable_reason(o, odd), Catch::Contains("multiple of 32"));
  // compressed-tensors 0.19 removed actorder "group" (g_idx): act-order groups are refused.
  QuantizedTensor act = quantized(64, 64, 4, Grid::GptqSym, 32, 4);
  act.g_idx = act.g_idx.index_select(0, at::arange(63, -1, -1, at::kLong)).contiguous();
  const PackedLayout c = calq::core::layout_for(SaveFormat::CompressedTensors, act, std::nullopt);
  REQUIRE(c.act_order);
  CHECK_THAT(calq::core::unrepresentable_reason(c, act), Catch::Contains("actorder"));
}
