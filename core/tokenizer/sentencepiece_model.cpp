#include "core/tokenizer/sentencepiece_model.h"

#include <cstring>

#include "core/error.h"
#include "core/io/json_text.h"

namespace calq::core {
namespace {

// Protobuf wire types (developers.google.com/protocol-buffers/docs/encoding).
constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kLengthDelimited = 2;
constexpr uint32_t kFixed32 = 5;

// Field numbers from sentencepiece_model.proto.
constexpr uint32_t kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3;
constexpr uint32_t kPieceText = 1, kPieceScore = 2, kPieceType = 3;
constexpr uint32_t kTrainerModelType = 3, kTrainerWhitespaceAsSuffix = 24,
                   kTrainerByteFallback = 35, kTrainerUnkSurface = 44, kTrainerUnkPiece = 45,
                   kTrainerBosPiece = 46, kTrainerEosPiece = 47;
constexpr uint32_t kNormalizerName = 1, kNormalizerCharsmap = 2, kNormalizerDummyPrefix = 3,
                   kNormalizerRemoveSpaces = 4, kNormalizerEscapeSpaces = 5;

// Reads one message's fields in order; every read is bounds-checked so a truncated or foreign
// file fails with the file name instead of reading past the buffer.
class WireReader {
 public:
  WireReader(std::string_view data, const std::string& path) : data_(data), path_(path) {}

  bool done() const { return pos_ >= data_.size(); }

  // The next field's number and wire type.
  std::pair<uint32_t, uint32_t> tag() {
    const uint64_t key = varint();
    check(key >> 3 != 0 && key >> 3 <= UINT32_MAX, "a field number of 0");
    return {static_cast<uint32_t>(key >> 3), static_cast<uint32_t>(key & 7)};
  }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      check(pos_ < data_.size(), "a varint running past the end");
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (byte < 0x80)
        return value;
    }
    check(false, "a varint longer than 10 bytes");
    return 0;
  }

  std::string_view bytes() {
    const uint64_t length = varint();
    check(length <= data_.size() - pos_, "a length past the end");
    const std::string_view out = data_.substr(pos_, static_cast<size_t>(length));
    pos_ += static_cast<size_t>(length);
    return out;
  }

  float fixed32_float() {
    check(data_.size() - pos_ >= 4, "a fixed32 past the end");
    uint32_t bits = 0;
    for (int k = 3; k >= 0; --k)
      bits = bits << 8 | static_cast<unsigned char>(data_[pos_ + k]);
    pos_ += 4;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
  }

  void skip(uint32_t wire_type) {
    if (wire_type == kVarint) {
      varint();
    } else if (wire_type == kLengthDelimited) {
      bytes();
    } else if (wire_type == kFixed64 || wire_type == kFixed32) {
      const size_t size = wire_type == kFixed64 ? 8 : 4;
      check(data_.size() - pos_ >= size, "a fixed-size field past the end");
      pos_ += size;
    } else {
      check(false, "wire type " + std::to_string(wire_type));
    }
  }

  // The value of a field of `expected` wire type; a field of another type is a foreign file.
  void expect(uint32_t wire_type, uint32_t expected) {
    check(wire_type == expected, "a field of unexpected wire type " + std::to_string(wire_type));
  }

 private:
  void check(bool ok, const std::string& what) const {
    CALQ_CHECK(ok,
               "{}: not a SentencePiece model (protobuf has {} at byte {}); expected a "
               "tokenizer.model",
               path_, what, pos_);
  }

  std::string_view data_;
  const std::string& path_;
  size_t pos_ = 0;
};

SentencepieceModel::Piece parse_piece(std::string_view data, const std::string& path) {
  SentencepieceModel::Piece piece;
  WireReader in(data, path);
  while (!in.done()) {
    const auto [field, wire_type] = in.tag();
    if (field == kPieceText) {
      in.expect(wire_type, kLengthDelimited);
      piece.text = std::string(in.bytes());
    } else if (field == kPieceScore) {
      in.expect(wire_type, kFixed32);
      piece.score = in.fixed32_float();
    } else if (field == kPieceType) {
      in.expect(wire_type, kVarint);
      const uint64_t type = in.varint();
      CALQ_CHECK(type >= 1 && type <= 6, "{}: piece {} has type {}; expected 1..6", path,
                 quote_string(piece.text), type);
      piece.type = static_cast<SentencepieceModel::PieceType>(type);
    } else {
      in.skip(wire_type);
    }
  }
  return piece;
}

void parse_trainer_spec(std::string_view data, const std::string& path, SentencepieceModel& m) {
  WireReader in(data, path);
  while (!in.done()) {
    const auto [field, wire_type] = in.tag();
    if (field == kTrainerModelType) {
      in.expect(wire_type, kVarint);
      m.model_type = static_cast<SentencepieceModel::ModelType>(in.varint());
    } else if (field == kTrainerWhitespaceAsSuffix || field == kTrainerByteFallback) {
      in.expect(wire_type, kVarint);
      (field == kTrainerByteFallback ? m.byte_fallback : m.treat_whitespace_as_suffix) =
          in.varint() != 0;
    } else if (field == kTrainerUnkSurface || field == kTrainerUnkPiece ||
               field == kTrainerBosPiece || field == kTrainerEosPiece) {
      in.expect(wire_type, kLengthDelimited);
      std::string& target = field == kTrainerUnkSurface ? m.unk_surface
                            : field == kTrainerUnkPiece ? m.unk_piece
                            : field == kTrainerBosPiece ? m.bos_piece
                                                        : m.eos_piece;
      target = std::string(in.bytes());
    } else {
      in.skip(wire_type);
    }
  }
}

void parse_normalizer_spec(std::string_view data, const std::string& path, SentencepieceModel& m) {
  WireReader in(data, path);
  while (!in.done()) {
    const auto [field, wire_type] = in.tag();
    if (field == kNormalizerName || field == kNormalizerCharsmap) {
      in.expect(wire_type, kLengthDelimited);
      (field == kNormalizerName ? m.normalizer_name : m.precompiled_charsmap) =
          std::string(in.bytes());
    } else if (field == kNormalizerDummyPrefix || field == kNormalizerRemoveSpaces ||
               field == kNormalizerEscapeSpaces) {
      in.expect(wire_type, kVarint);
      const bool value = in.varint() != 0;
      if (field == kNormalizerDummyPrefix)
        m.add_dummy_prefix = value;
      if (field == kNormalizerRemoveSpaces)
        m.remove_extra_whitespaces = value;
      if (field == kNormalizerEscapeSpaces)
        m.escape_whitespaces = value;
    } else {
      in.skip(wire_type);
    }
  }
}

}  // namespace

SentencepieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& path) {
  SentencepieceModel model;
  WireReader in(bytes, path);
  while (!in.done()) {
    const auto [field, wire_type] = in.tag();
    if (field == kModelPieces || field == kModelTrainerSpec || field == kModelNormalizerSpec) {
      in.expect(wire_type, kLengthDelimited);
      const std::string_view message = in.bytes();
      if (field == kModelPieces)
        model.pieces.push_back(parse_piece(message, path));
      if (field == kModelTrainerSpec)
        parse_trainer_spec(message, path, model);
      if (field == kModelNormalizerSpec)
        parse_normalizer_spec(message, path, model);
    } else {
      in.skip(wire_type);
    }
  }
  CALQ_CHECK(!model.pieces.empty(), "{}: no pieces; expected a SentencePiece tokenizer.model",
             path);
  return model;
}

}  // namespace calq::core
