#include "core/checkpoint/layout_check.h"

#include <algorithm>
#include <set>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/checkpoint/packed_layout.h"
#include "core/error.h"
#include "core/model/weight_source.h"
#include "core/quant/bit_packing.h"
#include "core/quant/quantized_tensor.h"

namespace calq::core {
namespace {

using Shape = std::vector<int64_t>;

const char* const kGptqSuffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
const char* const kCtSuffixes[] = {".weight_packed", ".weight_scale", ".weight_zero_point",
                                   ".weight_shape", ".weight_g_idx"};

bool in_list(const std::string& s, const std::vector<std::string>& list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

/// "group_size 32" when `n_groups` groups tile `in` evenly, for saying what a tensor implies.
std::string implied_group_size(int64_t n_groups, int64_t in) {
  if (n_groups == 1) return "group_size -1";
  if (n_groups > 0 && in % n_groups == 0) return fmt::format("group_size {}", in / n_groups);
  return "no group size";
}

/// "4-bit codes" when `words` int32 per row hold `n` fields of one of the widths calq reads.
std::string implied_bits(int64_t words, int64_t n) {
  for (int b : {2, 3, 4, 8}) {
    if (ceil_div(n * b, 32) == words) return fmt::format("which holds {}-bit codes", b);
  }
  return "which is no bit width calq reads";
}

/// One packed checkpoint under check: the layout, the tensors, and how to name both.
class Checker {
 public:
  Checker(const PackedLayout& l, const WeightSource& s, const std::string& file)
      : l_(l), s_(s), file_(file), method_(save_format_name(l.format)) {
    marker_ = l.format == SaveFormat::CompressedTensors ? ".weight_scale" : ".qweight";
    if (l.format == SaveFormat::Gptq) {
      own_.assign(std::begin(kGptqSuffixes), std::end(kGptqSuffixes));
    } else if (l.format == SaveFormat::Awq) {
      own_.assign(std::begin(kGptqSuffixes), std::end(kGptqSuffixes) - 1);  // no g_idx
    } else {
      own_.assign(std::begin(kCtSuffixes), std::end(kCtSuffixes));
    }
    packed_ = l.format == SaveFormat::CompressedTensors && l.ct_format() == "pack-quantized";
    kind_ = l.format == SaveFormat::CompressedTensors ? l.ct_format() : method_;
  }

  const std::string& marker() const { return marker_; }

  /// A tensor that is no part of the packed linear it sits beside, or of any.
  void check_name(const std::string& name, const std::set<std::string>& prefixes) const {
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos) return;
    const std::string prefix = name.substr(0, dot), suffix = name.substr(dot);
    if (prefixes.count(prefix)) {
      const std::vector<std::string> allowed = allowed_suffixes();
      CALQ_CHECK(in_list(suffix, allowed),
                 "{}: tensor \"{}\" does not belong beside \"{}{}\" in a {} checkpoint; expected "
                 "only {} for each quantized linear",
                 file_, name, prefix, marker_, kind_, fmt::join(allowed, ", "));
      return;
    }
    std::vector<std::string> all(std::begin(kGptqSuffixes), std::end(kGptqSuffixes));
    all.insert(all.end(), std::begin(kCtSuffixes), std::end(kCtSuffixes));
    if (in_list(suffix, all)) {
      CALQ_CHECK(!in_list(suffix, own_),
                 "{}: tensor \"{}\" has no \"{}{}\" beside it; expected both (a {} linear) or "
                 "neither", file_, name, prefix, marker_, kind_);
      fail("{}: tensor \"{}\" belongs to another packed format than quantization_config."
           "quant_method \"{}\"; expected the {} tensors ({})",
           file_, name, method_, method_, fmt::join(own_, ", "));
    }
    if (l_.format == SaveFormat::CompressedTensors && !packed_ && suffix == ".weight") {
      const c10::ScalarType t = s_.dtype(name);
      CALQ_CHECK(at::isFloatingType(t),
                 "{}: tensor \"{}\" holds {} codes but has no \"{}.weight_scale\"; expected its "
                 "scales ({} stores the codes of every quantized linear with them)",
                 file_, name, c10::toString(t), prefix, kind_);
    }
  }

  void check_linear(const std::string& p) const {
    switch (l_.format) {
      case SaveFormat::Gptq:
        return check_gptq(p);
      case SaveFormat::Awq:
        return check_awq(p);
      case SaveFormat::CompressedTensors:
        return check_ct(p);
      case SaveFormat::Fake:
        break;
    }
    throw InternalError("check_layout_against_tensors: fake is not a packed format");
  }

 private:
  std::vector<std::string> allowed_suffixes() const {
    std::vector<std::string> a = own_;
    if (l_.format == SaveFormat::CompressedTensors && !packed_) {
      a.erase(std::remove(a.begin(), a.end(), ".weight_packed"), a.end());
      a.erase(std::remove(a.begin(), a.end(), ".weight_shape"), a.end());
      a.push_back(".weight");  // int8 codes
    }
    a.push_back(".bias");
    return a;
  }

  std::string key(const char* field) const { return l_.weights_key + "." + field; }

  void require(const std::string& name) const {
    CALQ_CHECK(s_.contains(name), "{}: tensor \"{}\" is missing; expected {} for every {} linear",
               file_, name, fmt::join(own_required(), ", "), kind_);
  }

  std::vector<std::string> own_required() const {
    switch (l_.format) {
      case SaveFormat::Gptq:
        if (!l_.g_idx_stored) return {"qweight", "qzeros", "scales"};
        return {"qweight", "qzeros", "scales", "g_idx"};
      case SaveFormat::Awq:
        return {"qweight", "qzeros", "scales"};
      default:
        break;
    }
    if (packed_) return {"weight_packed", "weight_scale", "weight_shape"};
    return {"weight (int8)", "weight_scale"};
  }

  Shape shape(const std::string& name, size_t dims) const {
    require(name);
    const Shape s = s_.shape(name);
    CALQ_CHECK(s.size() == dims, "{}: tensor \"{}\" has shape {}; expected a {}-D tensor", file_,
               name, shape_str(s), dims);
    return s;
  }

  void expect_int(const std::string& name, c10::ScalarType want) const {
    const c10::ScalarType t = s_.dtype(name);
    CALQ_CHECK(t == want, "{}: tensor \"{}\" has dtype {}; expected {} in a {} checkpoint", file_,
               name, c10::toString(t), c10::toString(want), kind_);
  }

  void expect_float(const std::string& name) const {
    const c10::ScalarType t = s_.dtype(name);
    CALQ_CHECK(at::isFloatingType(t), "{}: tensor \"{}\" has dtype {}; expected floating-point "
               "scales", file_, name, c10::toString(t));
  }

  void expect_shape(const std::string& name, const Shape& got, const Shape& want,
                    const std::string& why) const {
    CALQ_CHECK(got == want, "{}: tensor \"{}\" has shape {}; expected {} ({})", file_, name,
               shape_str(got), shape_str(want), why);
  }

  /// Group indices in [0, n_groups), and i / group_size unless the config declares act-order.
  void check_g_idx(const std::string& name, int64_t in, int64_t n_groups,
                   const char* act_order_field) const {
    const at::Tensor g = s_.load(name).to(at::kLong);
    if (in == 0) return;
    const int64_t lo = g.min().item<int64_t>(), hi = g.max().item<int64_t>();
    CALQ_CHECK(lo >= 0 && hi < n_groups,
               "{}: tensor \"{}\" has group indices {}..{}; expected 0..{} ({} {} over "
               "in_features {})", file_, name, lo, hi, n_groups - 1, key("group_size"),
               l_.group_size, in);
    if (l_.act_order) return;
    const at::Tensor want = sequential_g_idx(in, l_.group_size).to(at::kLong);
    const at::Tensor differ = (g != want).nonzero();
    if (differ.numel() == 0) return;
    const int64_t j = differ[0][0].item<int64_t>();
    fail("{}: {} is false but tensor \"{}\" is not input / group_size (input {} is in group {}, "
         "not {}); expected {}: true, or sequential groups", file_, key(act_order_field), name, j,
         g[j].item<int64_t>(), want[j].item<int64_t>(), act_order_field);
  }

  int64_t n_groups(int64_t in) const { return l_.group_size > 0 ? ceil_div(in, l_.group_size) : 1; }

  /// scales/qzeros rows against the group count the config's group_size implies.
  void expect_groups(const std::string& name, const Shape& got, const Shape& want,
                     int64_t in) const {
    CALQ_CHECK(got[0] == want[0],
               "{}: {} is {} but tensor \"{}\" has {} groups over in_features {} ({}); expected "
               "shape {}", file_, key("group_size"), l_.group_size, name, got[0], in,
               implied_group_size(got[0], in), shape_str(want));
  }

  void check_gptq(const std::string& p) const {
    const Shape qw = shape(p + ".qweight", 2);
    const Shape sc = shape(p + ".scales", 2), qz = shape(p + ".qzeros", 2);
    // AutoRound's own format stores no g_idx: qweight's rows give in_features (packed_layout.h).
    const bool has_g_idx = l_.g_idx_stored || s_.contains(p + ".g_idx");
    const Shape gi = has_g_idx ? shape(p + ".g_idx", 1) : Shape{qw[0] * 32 / l_.bits};
    expect_int(p + ".qweight", at::kInt);
    expect_int(p + ".qzeros", at::kInt);
    if (has_g_idx) expect_int(p + ".g_idx", at::kInt);
    expect_float(p + ".scales");
    const int64_t in = gi[0], out = qw[1], b = l_.bits;
    CALQ_CHECK(in > 0 && in % 32 == 0 && out > 0,
               "{}: tensor \"{}.{}\" gives in_features {} (out_features {}); expected a "
               "positive multiple of 32 (GPTQ packs codes in 32-input blocks)", file_, p,
               has_g_idx ? "g_idx" : "qweight", in, out);
    CALQ_CHECK(qw[0] == in * b / 32,
               "{}: {} is {} but tensor \"{}.qweight\" has shape {}, {} for in_features {} "
               "(g_idx); expected shape {}", file_, key("bits"), b, p, shape_str(qw),
               implied_bits(qw[0], in), in, shape_str({in * b / 32, out}));
    const int64_t groups = n_groups(in);
    const Shape want_sc = {groups, out}, want_qz = {groups, ceil_div(out * b, 32)};
    expect_groups(p + ".scales", sc, want_sc, in);
    expect_shape(p + ".scales", sc, want_sc, fmt::format("out_features {} from qweight", out));
    expect_groups(p + ".qzeros", qz, want_qz, in);
    CALQ_CHECK(qz[1] == want_qz[1],
               "{}: {} is {} but tensor \"{}.qzeros\" has shape {}, {} for out_features {}; "
               "expected shape {}", file_, key("bits"), b, p, shape_str(qz),
               implied_bits(qz[1], out), out, shape_str(want_qz));
    if (has_g_idx) check_g_idx(p + ".g_idx", in, groups, "desc_act");
    if (!l_.sym) return;
    // GPTQ's symmetric grid fixes every zero at 2^(b−1); v1 stores it as 2^(b−1) − 1 (§2.4).
    const int32_t zero = int32_t{1} << (b - 1), stored = l_.gptq_v2 ? zero : zero - 1;
    const at::Tensor fields = unpack_bitstream(s_.load(p + ".qzeros"), l_.bits, out);
    const int64_t other = (fields != stored).sum().item<int64_t>();
    // Every zero the symmetric one as the other checkpoint_format stores it: the format lies.
    const int32_t other_stored = l_.gptq_v2 ? zero - 1 : zero;
    CALQ_CHECK(other == 0 || (fields != other_stored).sum().item<int64_t>() > 0,
               "{}: quantization_config.checkpoint_format is {} but tensor \"{}.qzeros\" stores "
               "every symmetric zero {} as {}, as checkpoint_format {} does; expected "
               "checkpoint_format: {}", file_, l_.gptq_v2 ? "gptq_v2" : "gptq", p, zero,
               other_stored, l_.gptq_v2 ? "gptq" : "gptq_v2", l_.gptq_v2 ? "gptq" : "gptq_v2");
    CALQ_CHECK(other == 0,
               "{}: {} is true but tensor \"{}.qzeros\" holds {} of {} zero points other than the "
               "symmetric {} (stored as {} in checkpoint_format {}); expected sym: false",
               file_, key("sym"), p, other, fields.numel(), zero, stored,
               l_.gptq_v2 ? "gptq_v2" : "gptq");
  }

  void check_awq(const std::string& p) const {
    // zero_point: false (sym) is read only with its qzeros, every one the symmetric 2^(b−1), as
    // AutoRound's auto_awq export writes it (auto_round/export/export_to_awq/utils.py).
    CALQ_CHECK(!l_.sym || s_.contains(p + ".qzeros"),
               "{}: {} is false and tensor \"{}.qzeros\" is missing; expected qzeros (calq reads "
               "AWQ GEMM with stored zero points only)", file_, key("zero_point"), p);
    const Shape qw = shape(p + ".qweight", 2), sc = shape(p + ".scales", 2);
    const Shape qz = shape(p + ".qzeros", 2);
    expect_int(p + ".qweight", at::kInt);
    expect_int(p + ".qzeros", at::kInt);
    expect_float(p + ".scales");
    const int64_t in = qw[0], out = qw[1] * 8, g = l_.group_size;
    CALQ_CHECK(g > 0 && in % g == 0,
               "{}: {} is {} but tensor \"{}.qweight\" has in_features {}; expected a positive "
               "group size that divides it (AWQ GEMM stores whole groups)", file_,
               key("group_size"), g, p, in);
    const Shape want = {in / g, out / 8}, want_sc = {in / g, out};
    expect_groups(p + ".scales", sc, want_sc, in);
    expect_shape(p + ".scales", sc, want_sc, fmt::format("out_features {} from qweight", out));
    expect_groups(p + ".qzeros", qz, want, in);
    expect_shape(p + ".qzeros", qz, want, fmt::format("out_features {} from qweight", out));
    if (!l_.sym) return;
    const int32_t zero = int32_t{1} << (l_.bits - 1);
    const int64_t other = (unpack_awq(s_.load(p + ".qzeros")) != zero).sum().item<int64_t>();
    CALQ_CHECK(other == 0,
               "{}: {} is false but tensor \"{}.qzeros\" holds {} zero points other than the "
               "symmetric {}; expected zero_point: true", file_, key("zero_point"), p, other, zero);
  }

  void check_ct(const std::string& p) const {
    int64_t out = 0, in = 0;
    const int b = l_.bits;
    if (packed_) {
      shape(p + ".weight_shape", 1);
      const c10::ScalarType t = s_.dtype(p + ".weight_shape");
      CALQ_CHECK(t == at::kLong || t == at::kInt, "{}: tensor \"{}.weight_shape\" has dtype {}; "
                 "expected int64 or int32", file_, p, c10::toString(t));
      const at::Tensor ws = s_.load(p + ".weight_shape").to(at::kLong);
      CALQ_CHECK(ws.numel() == 2, "{}: tensor \"{}.weight_shape\" has {} values; expected 2 "
                 "([out, in])", file_, p, ws.numel());
      out = ws[0].item<int64_t>();
      in = ws[1].item<int64_t>();
      constexpr int64_t kMaxDim = int64_t{1} << 31;
      CALQ_CHECK(out > 0 && in > 0 && out < kMaxDim && in < kMaxDim,
                 "{}: tensor \"{}.weight_shape\" holds [{}, {}]; expected two positive sizes "
                 "below 2^31", file_, p, out, in);
      const Shape wp = shape(p + ".weight_packed", 2);
      expect_int(p + ".weight_packed", at::kInt);
      CALQ_CHECK(wp[0] == out, "{}: tensor \"{}.weight_packed\" has shape {}; expected {} rows "
                 "(out_features from weight_shape)", file_, p, shape_str(wp), out);
      CALQ_CHECK(wp[1] == ceil_div(in * b, 32),
                 "{}: {} is {} but tensor \"{}.weight_packed\" has shape {}, {} for in_features "
                 "{}; expected shape {}", file_, key("num_bits"), b, p, shape_str(wp),
                 implied_bits(wp[1], in), in, shape_str({out, ceil_div(in * b, 32)}));
    } else {
      const Shape w = shape(p + ".weight", 2);
      expect_int(p + ".weight", at::kChar);
      out = w[0];
      in = w[1];
      if (b < 8 && out > 0 && in > 0) {  // an int8 container holds any width: check the range
        const at::Tensor codes = s_.load(p + ".weight");
        const int64_t lo = codes.min().item<int64_t>(), hi = codes.max().item<int64_t>();
        const int64_t qmin = -(int64_t{1} << (b - 1)), qmax = (int64_t{1} << (b - 1)) - 1;
        CALQ_CHECK(lo >= qmin && hi <= qmax,
                   "{}: {} is {} but tensor \"{}.weight\" holds codes {}..{}; expected codes in "
                   "{}..{}", file_, key("num_bits"), b, p, lo, hi, qmin, qmax);
      }
    }
    const int64_t cols = check_ct_scales(p, out, in);
    check_ct_zero_points(p, out, cols);
    const bool has_g = s_.contains(p + ".weight_g_idx");
    CALQ_CHECK(has_g == l_.act_order,
               "{}: {} is {} but tensor \"{}.weight_g_idx\" is {}; expected actorder: {}", file_,
               key("actorder"), l_.act_order ? "\"group\"" : "not \"group\"", p,
               has_g ? "present" : "missing", has_g ? "group" : "null, or the group index");
    if (has_g) {
      const Shape gi = shape(p + ".weight_g_idx", 1);
      expect_int(p + ".weight_g_idx", at::kInt);
      expect_shape(p + ".weight_g_idx", gi, {in}, "in_features");
      check_g_idx(p + ".weight_g_idx", in, cols, "actorder");
    }
  }

  /// The columns of weight_scale the strategy implies (1 for channel and tensor).
  int64_t check_ct_scales(const std::string& p, int64_t out, int64_t in) const {
    const std::string name = p + ".weight_scale";
    expect_float(name);
    const Shape sc = s_.shape(name);
    int64_t numel = 1;
    for (int64_t d : sc) numel *= d;
    if (l_.per_tensor) {
      CALQ_CHECK(numel == 1 && sc.size() <= 2,
                 "{}: {} is \"tensor\" but tensor \"{}\" has shape {}; expected [1] (one scale "
                 "for the whole weight)", file_, key("strategy"), name, shape_str(sc));
      return 1;
    }
    if (l_.group_size <= 0) {
      CALQ_CHECK(sc == Shape({out, 1}),
                 "{}: {} is \"channel\" but tensor \"{}\" has shape {}; expected [{}, 1] (one "
                 "scale per output channel)", file_, key("strategy"), name, shape_str(sc), out);
      return 1;
    }
    const int64_t cols = ceil_div(in, l_.group_size);
    CALQ_CHECK(sc.size() == 2 && sc[0] == out,
               "{}: {} is \"group\" but tensor \"{}\" has shape {}; expected [{}, {}] ({} {})",
               file_, key("strategy"), name, shape_str(sc), out, cols, key("group_size"),
               l_.group_size);
    CALQ_CHECK(sc[1] == cols,
               "{}: {} is {} but tensor \"{}\" has {} groups over in_features {} ({}); expected "
               "shape [{}, {}]", file_, key("group_size"), l_.group_size, name, sc[1], in,
               implied_group_size(sc[1], in), out, cols);
    return cols;
  }

  /// Zero points exactly when the config says asymmetric (§4.4: omitted for symmetric schemes).
  void check_ct_zero_points(const std::string& p, int64_t out, int64_t cols) const {
    const std::string name = p + ".weight_zero_point";
    const bool has_zp = s_.contains(name);
    CALQ_CHECK(!(l_.sym && has_zp), "{}: {} is true but tensor \"{}\" is present (asymmetric "
               "codes); expected symmetric: false", file_, key("symmetric"), name);
    CALQ_CHECK(l_.sym || has_zp, "{}: {} is false but tensor \"{}\" is missing; expected "
               "symmetric: true, or the zero points", file_, key("symmetric"), name);
    if (!has_zp) return;
    const Shape zp = s_.shape(name);
    if (packed_) {
      expect_int(name, at::kInt);
      expect_shape(name, zp, {ceil_div(out * l_.bits, 32), cols},
                   fmt::format("{}-bit zero points packed along the {} outputs", l_.bits, out));
    } else {
      expect_int(name, at::kChar);
      expect_shape(name, zp, {out, cols}, "one int8 zero point per scale");
    }
  }

  const PackedLayout& l_;
  const WeightSource& s_;
  const std::string& file_;
  std::string method_;
  std::string marker_;
  std::string kind_;  // "gptq", "awq" or the compressed-tensors format
  std::vector<std::string> own_;
  bool packed_ = false;
};

}  // namespace

std::vector<std::string> find_layout_mismatches(const PackedLayout& layout,
                                                const WeightSource& source,
                                                const std::string& config_file, size_t limit) {
  const Checker checker(layout, source, config_file);
  const std::vector<std::string> names = source.names();
  std::set<std::string> prefixes;
  for (const std::string& name : names) {
    const std::string& m = checker.marker();
    if (name.size() > m.size() && name.compare(name.size() - m.size(), m.size(), m) == 0)
      prefixes.insert(name.substr(0, name.size() - m.size()));
  }
  std::vector<std::string> problems;
  const auto collect = [&](const auto& check) {
    if (problems.size() >= limit) return;
    try {
      check();
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
  };
  if (prefixes.empty()) {
    problems.push_back(fmt::format(
        "{}: quantization_config declares quant_method \"{}\" but no tensor ends in \"{}\"; "
        "expected the packed form of every quantized linear",
        config_file, layout.declared.empty() ? save_format_name(layout.format) : layout.declared,
        checker.marker()));
  }
  for (const std::string& name : names) collect([&] { checker.check_name(name, prefixes); });
  for (const std::string& prefix : prefixes) collect([&] { checker.check_linear(prefix); });
  if (problems.size() > limit) problems.resize(limit);
  return problems;
}

void check_layout_against_tensors(const PackedLayout& layout, const WeightSource& source,
                                  const std::string& config_file) {
  const std::vector<std::string> problems = find_layout_mismatches(layout, source, config_file, 1);
  if (!problems.empty()) throw Error(problems.front());
}

}  // namespace calq::core
