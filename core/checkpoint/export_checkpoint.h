// Writing a quantized model as a complete HF model directory (docs/formats.md §7): packed GPTQ, AWQ
// GEMM or compressed-tensors linears (codes straight from the quantizer), or fake-quantized float
// weights; config.json with quantization_config; tokenizer and generation files carried over;
// shards with an index when large. llama2.c models come out in HF Llama layout (their q/k rows
// are already in HF order in memory, llama2c.h). Everything is written under a temporary name in
// the target's parent, re-read and compared bit for bit with the in-memory model, and renamed at
// the end, so an interrupted export leaves nothing under the final name.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/packed_layout.h"
#include "core/quant/activation_quant.h"
#include "core/quant/quantized_tensor.h"
#include "core/recipe.h"

namespace calq::core {

class Model;
class DecoderLayer;

/// Per decoder layer, by uniform linear name: the run's quantized tensors.
using QuantizedLinears = std::vector<std::map<std::string, QuantizedTensor>>;

struct ExportOptions {
  SaveFormat format = SaveFormat::Fake;
  std::string path;
  std::optional<c10::ScalarType> fake_dtype;  ///< fake: default the model's storage dtype
  std::optional<ActQuantSpec> activations;    ///< the scheme's dynamic activation quantization
  int64_t max_shard_bytes = int64_t{4} << 30;
  /// Replace an existing directory at `path` even if calq did not write it (--overwrite); a
  /// file is never replaced (core/io/output_dir.h).
  bool overwrite = false;
  /// Called with "written" once every file is in the temporary directory, before the re-read
  /// and the rename (tests interrupt the export there).
  std::function<void(const std::string& stage)> on_stage;
  /// Writes further files into the temporary directory (given) before the re-read and the rename,
  /// so they appear atomically with the checkpoint (the LoRC adapter).
  std::function<void(const std::string& dir)> extra_files;
};

struct ExportResult {
  std::string format;
  std::string path;
  int64_t files = 0;  ///< safetensors shards
  int64_t bytes = 0;  ///< tensor bytes written
  int64_t quantized_linears = 0;
  int64_t reread_tensors = 0;  ///< tensors compared after the re-read (all bit-equal)
  std::vector<std::string> warnings;  ///< kernel-compatibility lint
  /// The checkpoint's certificate as JSON text (certificate.h), also written into the directory
  /// as calq_certificate.json before the rename.
  std::string certificate;
  std::string json() const;  ///< report.json "export"
};

struct LinearShape {
  std::string name;  ///< for messages: "attn.q" or a checkpoint prefix
  int64_t out = 0;
  int64_t in = 0;
};

/// Where the checkpoint will miss vLLM's fast kernels (docs/formats.md §2.8, §3.4, §4.6):
/// asymmetric or 2/3-bit GPTQ, group sizes outside {−1, 32, 64, 128}, act-order g_idx, Marlin
/// tile minima.
std::vector<std::string> kernel_lint(const PackedLayout& layout, const std::vector<LinearShape>& linears);

/// Refuses, before any work, a scheme the format cannot store (one line naming save.format and
/// the scheme key): AWQ needs 4-bit asymmetric groups, GPTQ/AWQ float16 scales and no activation
/// quantization, compressed-tensors dynamic activations only.
void check_save_scheme(const SaveSection& save, const SchemeSection& scheme, const std::string& file);

/// Refuses, before any work, linear shapes the format cannot pack under the scheme (GPTQ's
/// in_features % 32 and qzeros word packing, AWQ's out_features % 8, a group size that does not
/// divide in_features), naming the linear: the same rules the exporter applies (shape_reason).
void check_save_shapes(const SaveSection& save, const SchemeSection& scheme,
                       const std::vector<LinearShape>& linears, const std::string& file);

/// Exports `model` (quantized in place by a run: its linears hold the dequantized weights) with
/// the run's integer tensors. Rounds the model's other modified float tensors (norms folded by
/// SmoothQuant/AWQ, biases) to the stored dtype first, so the in-memory model is the exported one.
ExportResult export_checkpoint(Model& model, const QuantizedLinears& quantized,
                               const ExportOptions& options);

/// What export_checkpoint does to the in-memory model, without writing anything: a rank that
/// does not write the checkpoint (core/dist) evaluates the exported model as rank 0 does.
void round_to_export(Model& model, const QuantizedLinears& quantized, const ExportOptions& options);

/// The same checkpoint written while the model is quantized (`calq run --stream`): each decoder
/// layer goes to a shard of its own as soon as it is done, so the caller can free it; the
/// embeddings, final norm and head go to the last shard in finish(). Files and checks as
/// export_checkpoint, except that the re-read compares each shard with the tensors written to it
/// (the layers are gone by the end). Destroyed unfinished, it removes its temporary directory.
class StreamingExport {
 public:
  StreamingExport(const Model& model, ExportOptions options);
  ~StreamingExport();
  StreamingExport(const StreamingExport&) = delete;
  StreamingExport& operator=(const StreamingExport&) = delete;

  /// Rounds the layer to what the checkpoint stores (as export_checkpoint does), packs and writes it.
  void write_layer(const Model& model, int64_t index, DecoderLayer& layer,
                   const std::map<std::string, QuantizedTensor>& quantized);
  ExportResult finish(const Model& model);

 private:
  struct State;
  ExportOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace calq::core
