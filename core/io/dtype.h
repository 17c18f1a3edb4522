// Element types of the safetensors container and their mapping to ATen scalar types.
// Used by the safetensors reader/writer and by anything that reports tensor sizes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <c10/core/ScalarType.h>

namespace calq::core {

enum class DType { Bool, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8E4M3, F8E5M2 };

std::string_view dtype_name(DType dtype);                // "F16"
std::optional<DType> dtype_from_name(std::string_view);  // nullopt for unknown strings
std::size_t dtype_size(DType dtype);                     // bytes per element
c10::ScalarType to_scalar_type(DType dtype);             // throws for types ATen lacks
DType from_scalar_type(c10::ScalarType type);            // throws for types safetensors lacks

}  // namespace calq::core
