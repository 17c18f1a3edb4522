#include "core/io/dtype.h"

#include <array>

#include "core/error.h"

namespace calq::core {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view name;  // as serialized by safetensors' `Dtype` enum
  std::size_t size;
  std::optional<c10::ScalarType> scalar_type;  // nullopt: LibTorch 1.13 has no such type
};

// One row per DType, in enum order (checked by row()).
constexpr std::array<DTypeRow, 15> kRows = {{
    {DType::Bool, "BOOL", 1, c10::ScalarType::Bool},
    {DType::U8, "U8", 1, c10::ScalarType::Byte},
    {DType::I8, "I8", 1, c10::ScalarType::Char},
    {DType::I16, "I16", 2, c10::ScalarType::Short},
    {DType::U16, "U16", 2, std::nullopt},
    {DType::I32, "I32", 4, c10::ScalarType::Int},
    {DType::U32, "U32", 4, std::nullopt},
    {DType::I64, "I64", 8, c10::ScalarType::Long},
    {DType::U64, "U64", 8, std::nullopt},
    {DType::F16, "F16", 2, c10::ScalarType::Half},
    {DType::BF16, "BF16", 2, c10::ScalarType::BFloat16},
    {DType::F32, "F32", 4, c10::ScalarType::Float},
    {DType::F64, "F64", 8, c10::ScalarType::Double},
    {DType::F8E4M3, "F8_E4M3", 1, std::nullopt},
    {DType::F8E5M2, "F8_E5M2", 1, std::nullopt},
}};

const DTypeRow& row(DType dtype) {
  const auto index = static_cast<std::size_t>(dtype);
  CALQ_ASSERT(index < kRows.size() && kRows[index].dtype == dtype, "bad DType value {}", index);
  return kRows[index];
}

}  // namespace

std::string_view dtype_name(DType dtype) {
  return row(dtype).name;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeRow& r : kRows) {
    if (r.name == name)
      return r.dtype;
  }
  return std::nullopt;
}

std::size_t dtype_size(DType dtype) {
  return row(dtype).size;
}

c10::ScalarType to_scalar_type(DType dtype) {
  const DTypeRow& r = row(dtype);
  if (!r.scalar_type) {
    fail(
        "dtype {} has no ATen scalar type in this LibTorch build; expected one of BOOL, U8, I8, "
        "I16, I32, I64, F16, BF16, F32, F64",
        r.name);
  }
  return *r.scalar_type;
}

DType from_scalar_type(c10::ScalarType type) {
  for (const DTypeRow& r : kRows) {
    if (r.scalar_type == type)
      return r.dtype;
  }
  fail(
      "ATen scalar type {} has no safetensors dtype; expected one of Bool, Byte, Char, Short, "
      "Int, Long, Half, BFloat16, Float, Double",
      c10::toString(type));
}

}  // namespace calq::core
