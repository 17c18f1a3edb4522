#include "core/model/compute_support.h"

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace calq::core {
namespace {

// The ops every forward needs, on 2×2 inputs: "" when they run, else LibTorch's first line.
std::string probe(const std::string& device, c10::ScalarType dtype) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, c10::ScalarType>, std::string> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(device, dtype);
  if (const auto it = cache.find(key); it != cache.end())
    return it->second;
  std::string problem;
  try {
    const auto options = at::TensorOptions().dtype(dtype).device(at::Device(device));
    const at::Tensor x = at::ones({2, 2}, options);
    const at::Tensor y = at::linear(x, x, at::ones({2}, options));
    (void)at::softmax(at::matmul(y, x.t()), -1, at::kFloat).sum().item<float>();
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    problem = what.substr(0, what.find('\n'));
  }
  cache.emplace(key, problem);
  return problem;
}

const char* dtype_name(c10::ScalarType dtype) {  // as --dtype and model.dtype spell them
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return c10::toString(dtype);
  }
}

}  // namespace

void check_compute_support(const std::string& device, c10::ScalarType dtype) {
  const std::string problem = probe(device, dtype);
  if (problem.empty())
    return;
  std::vector<std::string> working;
  for (const auto& [name, other] : {std::pair{"float32", at::kFloat},
                                   std::pair{"bfloat16", at::kBFloat16},
                                   std::pair{"float16", at::kHalf}}) {
    if (probe(device, other).empty())
      working.emplace_back(name);
  }
  fail("compute dtype {} on {}: this LibTorch cannot compute in it there ({}); expected {} "
       "(--dtype, or the recipe's model.dtype)",
       dtype_name(dtype), device, problem,
       working.empty() ? std::string("another device")
                       : fmt::format("{} on {}", fmt::join(working, " or "), device));
}

}  // namespace calq::core
