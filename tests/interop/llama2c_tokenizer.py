"""The llama2.c tokenizer (tok512.bin of stories260K) in Python, so that transformers can be fed
exactly the token ids calq evaluates: the family fixtures have no tokenizer of their own.

Written from calq's own reading of the format (core/tokenizer/llama2c_tokenizer.cpp, after
karpathy/llama2.c run.c `encode`): the file holds max_token_length (int32) then, per token, its
score (float32), byte length (int32) and bytes. encode(): BOS, the dummy-prefix piece " ", each
UTF-8 code point as its piece or as byte pieces (<0xNN> = id byte + 3), then repeatedly merge the
adjacent pair whose joined piece has the highest score (leftmost among equal scores) until no pair
is a piece. `calq eval --logits` writes the ids calq used, and the suite checks they are equal.
"""
import struct

BOS = 1
BYTE_OFFSET = 3


class Llama2cTokenizer:
    def __init__(self, path, n_tokens):
        self.pieces, self.scores = [], []
        with open(path, "rb") as f:
            f.read(4)  # max_token_length
            for _ in range(n_tokens):
                score, length = struct.unpack("<fi", f.read(8))
                self.scores.append(score)
                self.pieces.append(f.read(length))
        self.ids = {}
        for i, p in enumerate(self.pieces):
            self.ids.setdefault(p, i)  # the first of repeated pieces, as calq

    def encode(self, text):
        data = text.encode("utf-8")
        tokens = [BOS]
        if data:
            tokens.append(self.ids.get(b" ", BYTE_OFFSET + ord(" ")))
        i = 0
        while i < len(data):
            n = 1
            while i + n < len(data) and n < 4 and (data[i + n] & 0xC0) == 0x80:
                n += 1
            cp = data[i:i + n]
            if cp in self.ids:
                tokens.append(self.ids[cp])
            else:
                tokens.extend(BYTE_OFFSET + b for b in cp)
            i += n
        while True:
            best, best_k, best_id = None, -1, -1
            for k in range(len(tokens) - 1):
                j = self.ids.get(self.pieces[tokens[k]] + self.pieces[tokens[k + 1]])
                if j is not None and self.scores[j] > -1e10 and (best is None or self.scores[j] > best):
                    best, best_k, best_id = self.scores[j], k, j
            if best is None:
                return tokens
            tokens[best_k:best_k + 2] = [best_id]
