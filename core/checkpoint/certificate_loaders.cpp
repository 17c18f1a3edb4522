// What loads a checkpoint where (certificate_parts.h). The rules are transcribed from the loaders'
// sources and cited per rule; vLLM's from the 0.34.0 wheel (vllm/model_executor/...), read on
// this machine, which has no GPU to run them: a verdict says which kernel vLLM would pick on
// which GPU, not that it ran. What each kernel requires (vLLM 0.34.0):
//   AutoGPTQConfig (layers/quantization/auto_gptq.py): TYPE_MAP holds (4, sym) and (8, sym)
//     only; anything else raises "Unsupported quantization config". desc_act with groups raises
//     "GPTQ group activation ordering (desc_act=True) is no longer supported"
//     (utils/gptq_utils.py normalize_and_validate_gptq_desc_act; per channel it is a no-op).
//   AutoAWQConfig (layers/quantization/auto_awq.py): 4-bit only; Marlin when
//     check_marlin_supported(uint4, group_size, zero_point) holds, else the Triton AWQ GEMM.
//   CompressedTensorsWNA16 (compressed_tensors/compressed_tensors.py _is_wNa16_group_channel,
//     schemes/compressed_tensors_wNa16.py): format pack-quantized, strategy channel or group,
//     no input activations, 2/3/4/8 bits. CompressedTensorsW8A8Int8 (_is_dynamic_token_w8a8):
//     8-bit symmetric weights per channel or tensor, 8-bit dynamic per-token activations.
//     CompressedTensorsW4A8Int (_is_dynamic_token_w4a8_int): 4-bit symmetric weights per
//     channel or group, 8-bit dynamic per-token activations. Otherwise "No compressed-tensors
//     compatible scheme was found" (the error of llm-compressor #1427). Before any scheme,
//     _quantization_scheme_map_from_config refuses weights actorder "group"/"dynamic" and, for
//     an activation-quantization format (int-, naive-, float-quantized) without
//     input_activations, asserts float weights (W8A16-FP8): naive-quantized int codes fail there.
//   compressed-tensors 0.19.0 itself (quantization/quant_args.py validate_actorder) refuses
//     actorder "group"/"dynamic" for transformers and vLLM alike.
//   The weight-only kernels (kernels/linear/__init__.py _POSSIBLE_KERNELS, in CUDA priority
//     order, then kernels/linear/mixed_precision/*.py can_implement):
//     Machete (machete.py, utils/machete_utils.py): compute capability 9.0 (Hopper); types
//       uint4b8/uint8b128, or uint4/uint8 with zero points; group size -1, 64 or 128;
//       in_features % 64 == 0 and out_features % 128 == 0.
//     Marlin (marlin.py, utils/marlin_utils.py): compute capability >= 7.5; uint4b8/uint8b128,
//       or uint4 with zero points; group size -1, 32, 64 or 128 dividing in_features; tile
//       misalignment of dense layers is zero-padded. Fused MoE Marlin
//       (check_moe_marlin_supports_config): hidden_size % 128 == 0 as well.
//     Exllama (exllama.py): CUDA or ROCm, float16 activations, uint4b8/uint8b128, group size
//       > 0 dividing in_features, out_features % (32 / bits) == 0.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/checkpoint/certificate_parts.h"

namespace calq::core {
namespace {

constexpr const char* kVllm = "vllm 0.34.0 ";

struct Shapes {
  bool all_in_div(int64_t k) const {
    return std::all_of(linears.begin(), linears.end(),
                       [&](const StoredLinear* l) { return l->in % k == 0; });
  }
  bool all_out_div(int64_t k) const {
    return std::all_of(linears.begin(), linears.end(),
                       [&](const StoredLinear* l) { return l->out % k == 0; });
  }
  std::string first_in_not(int64_t k) const {
    for (const StoredLinear* l : linears)
      if (l->in % k != 0)
        return fmt::format("{} has in_features {}", l->prefix, l->in);
    return "";
  }
  std::string first_out_not(int64_t k) const {
    for (const StoredLinear* l : linears)
      if (l->out % k != 0)
        return fmt::format("{} has out_features {}", l->prefix, l->out);
    return "";
  }
  std::vector<const StoredLinear*> linears;  // the packed ones
  bool experts = false;
  int64_t hidden = 0;
};

bool in(int64_t v, std::initializer_list<int64_t> set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

/// The weight-only kernels' verdicts for `bits`-bit codes with or without zero points.
void mixed_precision_kernels(const PackedLayout& l,
                             const Shapes& s,
                             const char* scheme,
                             std::vector<LoaderVerdict>& out) {
  const bool zp = !l.sym;
  const int64_t g = l.group_size;
  const char* src_dir = "vllm/model_executor/kernels/linear/mixed_precision/";
  {  // Machete
    std::string why;
    if (!in(l.bits, {4, 8}))
      why =
          fmt::format("{}-bit codes are no Machete type (uint4/uint8, uint4b8/uint8b128)", l.bits);
    else if (!in(g, {-1, 64, 128}))
      why = fmt::format("group size {} (Machete takes -1, 64, 128)", g);
    else if (!s.all_in_div(64))
      why = s.first_in_not(64) + " (Machete needs in_features % 64 == 0)";
    else if (!s.all_out_div(128))
      why = s.first_out_not(128) + " (Machete needs out_features % 128 == 0)";
    out.push_back(
        {"vllm", fmt::format("{}Machete ({})", kVllm, scheme), why.empty(),
         why.empty() ? "on compute capability 9.0 (Hopper) only" : why,
         fmt::format("{}machete.py, vllm/model_executor/layers/quantization/utils/machete_utils.py",
                     src_dir)});
  }
  {  // Marlin
    std::string why;
    const bool type_ok = zp ? l.bits == 4 : in(l.bits, {4, 8});
    if (!type_ok)
      why = fmt::format("{}-bit {} codes are no Marlin type ({})", l.bits,
                        zp ? "asymmetric" : "symmetric",
                        zp ? "uint4 with zero points" : "uint4b8, uint8b128");
    else if (!in(g, {-1, 32, 64, 128}))
      why = fmt::format("group size {} (Marlin takes -1, 32, 64, 128)", g);
    else if (g > 0 && !s.all_in_div(g))
      why = s.first_in_not(g) + fmt::format(", not a multiple of group size {}", g);
    else if (s.experts && s.hidden % 128 != 0)
      why = fmt::format("hidden_size {} (fused MoE Marlin needs hidden_size % 128 == 0)", s.hidden);
    out.push_back(
        {"vllm", fmt::format("{}Marlin ({})", kVllm, scheme), why.empty(),
         why.empty() ? "on compute capability >= 7.5 (CUDA)" : why,
         fmt::format("{}marlin.py, vllm/model_executor/layers/quantization/utils/marlin_utils.py",
                     src_dir)});
  }
  {  // Exllama
    std::string why;
    if (zp)
      why = "asymmetric codes (Exllama takes uint4b8, uint8b128)";
    else if (!in(l.bits, {4, 8}))
      why = fmt::format("{}-bit codes (Exllama takes uint4b8, uint8b128)", l.bits);
    else if (g <= 0)
      why = "per-channel scales (Exllama needs a positive group size)";
    else if (!s.all_in_div(g))
      why = s.first_in_not(g) + fmt::format(", not a multiple of group size {}", g);
    else if (!s.all_out_div(32 / l.bits))
      why = s.first_out_not(32 / l.bits) + " (Exllama needs out % (32 / bits) == 0)";
    out.push_back({"vllm", fmt::format("{}Exllama ({})", kVllm, scheme), why.empty(),
                   why.empty() ? "CUDA or ROCm, float16 activations only" : why,
                   fmt::format("{}exllama.py", src_dir)});
  }
}

}  // namespace

std::vector<LoaderVerdict> loader_verdicts(const std::optional<PackedLayout>& layout,
                                           const Coverage& coverage,
                                           bool passed) {
  std::vector<LoaderVerdict> out;
  const std::string failed = "the certificate failed (see failures): no loader is claimed";
  if (!layout) {
    out.push_back({"transformers", "AutoModelForCausalLM (float weights)", passed,
                   passed ? "" : failed, "transformers/modeling_utils.py"});
    out.push_back({"vllm", std::string(kVllm) + "unquantized linears", passed, passed ? "" : failed,
                   "vllm/model_executor/layers/linear.py UnquantizedLinearMethod"});
    return out;
  }
  const PackedLayout& l = *layout;
  Shapes s;
  bool expert_float = false, expert_packed = false;
  for (const StoredLinear& x : coverage.linears) {
    if (x.packed)
      s.linears.push_back(&x);
    if (x.expert)
      (x.packed ? expert_packed : expert_float) = true;
  }
  s.experts = expert_packed;
  s.hidden = coverage.hidden;
  if (!passed) {
    out.push_back({"transformers", "", false, failed, ""});
    out.push_back({"vllm", "", false, failed, ""});
    return out;
  }
  switch (l.format) {
    case SaveFormat::Gptq:
      out.push_back({"transformers", "GPTQModel (GPTQ v1; bits 2/3/4/8, sym or asym, desc_act)",
                     true, "", "transformers/quantizers/quantizer_gptq.py"});
      break;
    case SaveFormat::Awq:
      out.push_back({"transformers", "GPTQModel (AWQ GEMM)", true, "",
                     "transformers/quantizers/quantizer_awq.py"});
      break;
    case SaveFormat::CompressedTensors:
      // compressed-tensors 0.19.0 (requirements.txt) refuses actorder "group"/"dynamic" when it
      // validates QuantizationArgs (quantization/quant_args.py validate_actorder: "has been
      // removed"), before transformers builds a module; vLLM validates with the same class.
      if (l.act_order)
        out.push_back({"transformers", fmt::format("compressed-tensors ({})", l.ct_format()), false,
                       "weights actorder \"group\": compressed-tensors 0.19.0 refuses it (\"has "
                       "been removed\"; only \"weight\" or null); an older compressed-tensors "
                       "may read it",
                       "compressed_tensors/quantization/quant_args.py validate_actorder"});
      else
        out.push_back({"transformers", fmt::format("compressed-tensors ({})", l.ct_format()), true,
                       "", "transformers/quantizers/quantizer_compressed_tensors.py"});
      break;
    case SaveFormat::Fake:
      break;
  }
  if (expert_float && expert_packed) {
    out.push_back({"vllm", std::string(kVllm) + "fused MoE", false,
                   "some routed experts are packed and others float: a fused MoE layer holds one "
                   "format for every expert",
                   "vllm/model_executor/layers/fused_moe/layer.py"});
    return out;
  }
  switch (l.format) {
    case SaveFormat::Gptq:
      if (!l.sym || !in(l.bits, {4, 8})) {
        out.push_back({"vllm", std::string(kVllm) + "AutoGPTQConfig", false,
                       fmt::format("bits={} sym={}: AutoGPTQConfig.TYPE_MAP holds 4- and 8-bit "
                                   "symmetric GPTQ only",
                                   l.bits, l.sym ? "true" : "false"),
                       "vllm/model_executor/layers/quantization/auto_gptq.py"});
        return out;
      }
      if (l.act_order && l.group_size > 0) {
        out.push_back({"vllm", std::string(kVllm) + "AutoGPTQConfig", false,
                       "desc_act: true with groups: vLLM no longer supports GPTQ group activation "
                       "ordering",
                       "vllm/model_executor/layers/quantization/utils/gptq_utils.py"});
        return out;
      }
      mixed_precision_kernels(l, s, "AutoGPTQ", out);
      break;
    case SaveFormat::Awq: {
      const bool marlin = l.group_size > 0 ? in(l.group_size, {-1, 32, 64, 128}) : true;
      out.push_back(
          {"vllm", std::string(kVllm) + (marlin ? "AutoAWQ Marlin" : "AutoAWQ Triton GEMM"), true,
           marlin ? "Marlin on CUDA compute capability >= 7.5, else the Triton AWQ GEMM"
                  : fmt::format("group size {} is no Marlin size: the unoptimised AWQ kernel",
                                l.group_size),
           "vllm/model_executor/layers/quantization/auto_awq.py get_quant_method"});
      break;
    }
    case SaveFormat::CompressedTensors: {
      const std::string src =
          "vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py";
      const std::string fmt_name = l.ct_format();
      if (l.act_order) {
        out.push_back({"vllm", std::string(kVllm) + "CompressedTensorsConfig", false,
                       "weights actorder \"group\": vLLM no longer supports group/dynamic "
                       "activation ordering (static/weight ordering only)",
                       src + " _quantization_scheme_map_from_config"});
        return out;
      }
      if (fmt_name == "naive-quantized") {
        out.push_back({"vllm", std::string(kVllm) + "CompressedTensorsConfig", false,
                       fmt::format("format naive-quantized ({}-bit int codes in int8) is an "
                                   "activation-quantization format to vLLM, which without "
                                   "input_activations takes float (W8A16-FP8) weights only; WNA16 "
                                   "needs pack-quantized",
                                   l.bits),
                       src + " _quantization_scheme_map_from_config"});
        return out;
      }
      if (!l.activations && fmt_name == "pack-quantized" && !l.per_tensor) {
        out.push_back({"vllm", std::string(kVllm) + "CompressedTensorsWNA16", true,
                       "weight-only; the kernel is chosen below",
                       src + " _is_wNa16_group_channel"});
        mixed_precision_kernels(l, s, "CompressedTensorsWNA16", out);
      } else if (l.activations && l.bits == 8 && l.sym && l.group_size <= 0 &&
                 l.activations->granularity == ActGranularity::PerToken) {
        out.push_back({"vllm", std::string(kVllm) + "CompressedTensorsW8A8Int8 (dynamic per-token)",
                       true, "CUTLASS int8 GEMM on CUDA compute capability >= 7.5",
                       src + " _is_dynamic_token_w8a8"});
      } else if (l.activations && l.bits == 4 && l.sym && !l.per_tensor &&
                 l.activations->granularity == ActGranularity::PerToken) {
        out.push_back({"vllm", std::string(kVllm) + "CompressedTensorsW4A8Int (dynamic per-token)",
                       true, "", src + " _is_dynamic_token_w4a8_int"});
      } else {
        std::string why;
        if (l.activations)
          why =
              fmt::format("{}-bit {} weights{} with int{} {} activations match no W8A8/W4A8 scheme",
                          l.bits, l.sym ? "symmetric" : "asymmetric",
                          l.group_size > 0 ? fmt::format(" in groups of {}", l.group_size) : "",
                          l.activations->bits, act_granularity_name(l.activations->granularity));
        else
          why = "per-tensor weight-only scales match no WNA16 strategy (channel or group)";
        out.push_back({"vllm", std::string(kVllm) + "compressed-tensors", false,
                       "no compressed-tensors compatible scheme: " + why,
                       src + " _get_scheme_from_parts"});
      }
      break;
    }
    case SaveFormat::Fake:
      break;
  }
  return out;
}

}  // namespace calq::core
