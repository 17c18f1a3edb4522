// WeightSource over a safetensors checkpoint, plus the checked load every family uses.
#include "core/model/weight_source.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/io/safetensors.h"

namespace calq::core {
namespace {

class SafetensorsSource final : public WeightSource {
 public:
  explicit SafetensorsSource(const std::string& path) : checkpoint_(path) {}
  const std::string& path() const override { return checkpoint_.path(); }
  bool contains(const std::string& name) const override { return checkpoint_.contains(name); }
  std::vector<std::string> names() const override { return checkpoint_.names(); }
  std::vector<int64_t> shape(const std::string& name) const override {
    return checkpoint_.info(name).shape;
  }
  c10::ScalarType dtype(const std::string& name) const override {
    return to_scalar_type(checkpoint_.info(name).dtype);
  }
  at::Tensor load(const std::string& name) const override { return checkpoint_.load(name); }

 private:
  SafetensorsCheckpoint checkpoint_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::shared_ptr<WeightSource> open_safetensors_source(const std::string& path) {
  return std::make_shared<SafetensorsSource>(path);
}

at::Tensor load_weight(const WeightSource& source,
                       const std::string& name,
                       const std::vector<int64_t>& shape,
                       c10::ScalarType dtype,
                       c10::Device device) {
  CALQ_CHECK(source.contains(name), "{}: no tensor \"{}\"; expected it for this architecture",
             source.path(), name);
  const std::vector<int64_t> stored = source.shape(name);
  CALQ_CHECK(stored == shape, "{}: tensor \"{}\" has shape [{}]; expected [{}]", source.path(),
             name, fmt::join(stored, ", "), fmt::join(shape, ", "));
  at::Tensor t = source.load(name);
  CALQ_CHECK(at::isFloatingType(t.scalar_type()),
             "{}: tensor \"{}\" has dtype {}; expected a floating-point type", source.path(), name,
             c10::toString(t.scalar_type()));
  return t.to(device, dtype).contiguous();
}

int64_t count_parameters(const WeightSource& source) {
  int64_t n = 0;
  for (const std::string& name : source.names()) {
    if (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
        ends_with(name, "rotary_emb.inv_freq")) {
      continue;  // buffers, not parameters
    }
    int64_t numel = 1;
    for (int64_t d : source.shape(name))
      numel *= d;
    n += numel;
  }
  return n;
}

}  // namespace calq::core
