// The fields of a SentencePiece tokenizer.model (sentencepiece_model.proto ModelProto) that BPE
// encoding needs, read with a small protobuf wire-format parser. calq does not link
// libsentencepiece: Debian's build bundles protobuf-lite 3.14 with exported symbols that clash
// with LibTorch's libprotobuf 3.21, and any process loading both crashes at startup.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace calq::core {

struct SentencepieceModel {
  // sentencepiece_model.proto ModelProto.SentencePiece.Type
  enum class PieceType : int32_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6,
  };
  // TrainerSpec.ModelType
  enum class ModelType : int32_t { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::kNormal;
  };

  std::vector<Piece> pieces;
  // TrainerSpec (defaults as in the .proto)
  ModelType model_type = ModelType::kUnigram;
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  std::string unk_surface = " \xE2\x81\x87 ";
  std::string unk_piece = "<unk>";
  std::string bos_piece = "<s>";
  std::string eos_piece = "</s>";
  // NormalizerSpec
  std::string normalizer_name;
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

/// Parses a serialized ModelProto; `path` names the file in errors.
SentencepieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& path);

}  // namespace calq::core
