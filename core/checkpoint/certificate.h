// The certificate of a quantized checkpoint directory (issue 20 part 3; docs/formats.md §8,
// "Certificate"): config.json's quantization_config read against its schema, the packed tensors
// re-read and held against it (shapes, dtypes, packing, g_idx, finite scales), every decoder
// linear and MoE expert of the family's layer schema present and quantized as declared, ignore
// lists and lm_head consistent, and which loaders take it through which kernel. `calq verify`
// prints it; `calq run` writes it into report.json and the exported directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace calq::core {

/// One loader's verdict on the checkpoint (certificate_loaders.cpp holds the rules and their
/// sources).
struct LoaderVerdict {
  std::string loader;  ///< "transformers" or "vllm"
  std::string via;     ///< library or kernel: "gptqmodel", "Marlin", "CompressedTensorsWNA16", ...
  bool loads = false;
  std::string reason;  ///< why not (or a condition, e.g. the GPU it needs)
  std::string source;  ///< the file whose rule this is
};

struct Certificate {
  std::string path;
  /// "gptq", "awq", "compressed-tensors (pack-quantized)", "fake (float16)" or "float".
  std::string format;
  std::string scheme;  ///< "4-bit, group 128, asymmetric, act-order" ("" for float checkpoints)
  std::string model_type;
  int64_t layers = 0;
  int64_t linears_expected = 0;  ///< decoder linears of the family schema, experts included
  int64_t linears_quantized = 0;
  int64_t linears_float = 0;  ///< kept float and declared so (routers, ignore lists)
  int64_t experts = 0;        ///< routed expert linears among linears_expected
  bool lm_head_quantized = false;
  int64_t tensors_checked = 0;  ///< tensors whose values were read (scales, g_idx, zeros, codes)
  std::vector<std::string> checks;  ///< the checks that ran, in order
  /// One line each: "<file>: <field or tensor>: <what is wrong>; expected <what>".
  std::vector<std::string> failures;
  std::vector<LoaderVerdict> loaders;

  bool passed() const { return failures.empty(); }
  std::string json() const;  ///< the certificate as JSON text (calq_certificate.json, report.json)
  std::string text() const;  ///< the human summary `calq verify` prints, lines ending in '\n'
};

/// The file calq writes the certificate to inside an exported model directory.
constexpr const char* kCertificateFile = "calq_certificate.json";

/// Certifies the HF model directory `dir`. Problems with the checkpoint land in failures (all of
/// them, up to a cap); only a `dir` that is no directory throws calq::Error.
Certificate certify_checkpoint(const std::string& dir);

/// certify_checkpoint(dir) written to dir/calq_certificate.json (temporary name, then rename),
/// its "path" set to `shown_path` (the export's final name when `dir` is its temporary one).
Certificate write_certificate(const std::string& dir, const std::string& shown_path);

}  // namespace calq::core
