#!/usr/bin/env python3
"""Writes tiny.model, the fuzz seed for fuzz_spm_model: a SentencePiece BPE tokenizer.model small
enough for libFuzzer (<unk> <s> </s>, the 256 byte-fallback pieces, a few merged pieces), in
protobuf wire format written by hand (the field numbers are in tokenizer/sentencepiece.cpp)."""
import os
import struct


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def piece(text, score, kind):  # kind: NORMAL 1, UNKNOWN 2, CONTROL 3, BYTE 6
    body = field(1, 2, text.encode()) + field(2, 5, struct.pack("<f", score))
    if kind != 1:
        body += field(3, 0, varint(kind))
    return field(1, 2, body)


pieces = [("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3)]
pieces += [("<0x%02X>" % b, 0, 6) for b in range(256)]
merged = ["\u2581t", "he", "\u2581the", "in", "\u2581a", "er", "on", "\u2581\u2581", "\u2581w", "or", "\u2581wor", "ld", "\u2581world"]
pieces += [(m, -float(i), 1) for i, m in enumerate(merged)]
pieces += [(c, -100.0 - i, 1) for i, c in enumerate("\u2581abdehilnortw")]
out = b"".join(piece(*p) for p in pieces)
out += field(2, 2, field(3, 0, varint(2)) + field(35, 0, varint(1)))  # trainer_spec: BPE, byte_fallback
out += field(3, 2, field(1, 2, b"identity") + field(3, 0, varint(1)) + field(4, 0, varint(0)))  # normalizer_spec
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "spm", "tiny.model"), "wb") as f:
    f.write(out)
print(len(out), "bytes")
