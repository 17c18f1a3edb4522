#include "core/quant/grid.h"

#include <array>

#include "core/error.h"

namespace calq::core {
namespace {

struct GridRow {
  Grid grid;
  std::string_view name;
  std::string_view family;
  bool sym;
};

// One row per Grid, in enum order (checked by row()).
constexpr std::array<GridRow, 6> kGrids = {{
    {Grid::GptqAsym, "gptq_asym", "gptq", false},
    {Grid::GptqSym, "gptq_sym", "gptq", true},
    {Grid::CtSym, "ct_sym", "ct", true},
    {Grid::CtAsym, "ct_asym", "ct", false},
    {Grid::AwqAsym, "awq_asym", "awq", false},
    {Grid::Absmax, "absmax", "absmax", true},
}};

const GridRow& row(Grid grid) {
  const auto index = static_cast<std::size_t>(grid);
  CALQ_ASSERT(index < kGrids.size() && kGrids[index].grid == grid, "bad Grid value {}", index);
  return kGrids[index];
}

}  // namespace

std::string_view grid_name(Grid grid) {
  return row(grid).name;
}

std::string_view grid_family(Grid grid) {
  return row(grid).family;
}

bool is_symmetric(Grid grid) {
  return row(grid).sym;
}

Grid parse_grid(std::string_view name) {
  for (const GridRow& r : kGrids) {
    if (r.name == name)
      return r.grid;
  }
  fail(
      "unknown quantization grid \"{}\"; expected one of gptq_asym, gptq_sym, ct_sym, ct_asym, "
      "awq_asym, absmax",
      name);
}

Grid resolve_grid(std::string_view family, bool sym) {
  if (family == "gptq")
    return sym ? Grid::GptqSym : Grid::GptqAsym;
  if (family == "ct")
    return sym ? Grid::CtSym : Grid::CtAsym;
  if (family == "awq") {
    CALQ_CHECK(!sym,
               "grid awq with sym: true: AWQ's grid is asymmetric (zero point from the raw "
               "min/max); expected sym: false, or grid gptq/ct/absmax for a symmetric grid");
    return Grid::AwqAsym;
  }
  if (family == "absmax") {
    CALQ_CHECK(sym,
               "grid absmax with sym: false: the absmax grid is symmetric by definition (scale "
               "from max |x|, zero 0); expected sym: true, or grid gptq/ct/awq for an asymmetric "
               "grid");
    return Grid::Absmax;
  }
  fail("unknown quantization grid family \"{}\"; expected one of gptq, ct, awq, absmax", family);
}

CodeRange code_range(Grid grid, int bits) {
  CALQ_ASSERT(bits >= 1 && bits <= 16, "code_range: bits {} out of 1..16", bits);
  const int32_t levels = int32_t{1} << bits;  // 2^b
  const int32_t half = levels / 2;            // 2^(b-1)
  switch (grid) {
    case Grid::GptqAsym:
    case Grid::GptqSym:
    case Grid::AwqAsym:
      return {0, levels - 1};
    case Grid::CtSym:
    case Grid::CtAsym:
      return {-half, half - 1};
    case Grid::Absmax:
      return {-(half - 1), half - 1};
  }
  CALQ_ASSERT(false, "bad Grid value {}", static_cast<int>(grid));
  return {};
}

}  // namespace calq::core
