#!/usr/bin/env python3
"""Writes the hand-made fuzz seeds seeds/gguf/mini.gguf and seeds/safetensors/mini.safetensors.

quantized_<kind>.safetensors: one weight of each pre-quantized fixture (tests/fixtures/quantized), layer
0's k_proj, with the side tensors that dequantize it (bitsandbytes 4-bit and 8-bit, FP8, compressed-tensors,
GPTQ, AWQ).

mini.gguf: GGUF v3 with string, u32, bool, f64, string-array, f32-array and array-of-arrays metadata
and four small tensors (F32, Q8_0, BF16, F16). mini.safetensors: F32, F16 (inf, a subnormal), BF16
(a NaN), I8 and an empty [0, 3] tensor, with __metadata__. The other seeds are files the tools
wrote (./init_model, ./convert, ./export, ./train) or trimmed tokenizer.json files.

--nested N OUT: a GGUF whose one metadata value is N arrays nested in each other (N = 170000, a
2 MB file, overflowed the stack of the recursive array skipper before its depth was limited).
"""
import json
import os
import struct
import sys


def s(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b


def nested_gguf(depth):
    body = s('k') + struct.pack('<I', 9) + struct.pack('<IQ', 9, 1) * depth + struct.pack('<IQ', 4, 0)
    return b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + body


def mini_gguf():
    def kv_str(k, v): return s(k) + struct.pack('<I', 8) + s(v)
    def kv_u32(k, v): return s(k) + struct.pack('<II', 4, v)

    def kv_arr(k, et, vals, fmt):
        out = s(k) + struct.pack('<IIQ', 9, et, len(vals))
        for v in vals:
            out += s(v) if et == 8 else struct.pack(fmt, v)
        return out
    kvs = [kv_str('general.architecture', 'llama'), kv_u32('general.alignment', 32),
           kv_arr('tokenizer.ggml.tokens', 8, ['a', 'b', 'ab'], None),
           kv_arr('tokenizer.ggml.scores', 6, [0.0, -1.0, -2.0], '<f'),
           s('nested') + struct.pack('<IIQ', 9, 9, 1) + struct.pack('<IQ', 4, 2) + struct.pack('<II', 7, 8),
           s('flag') + struct.pack('<IB', 7, 1), s('f64') + struct.pack('<Id', 12, 1.5)]
    f32 = struct.pack('<4f', 1, 2, 3, 4)
    q8 = struct.pack('<H', 0x3c00) + bytes(range(32))
    bf16 = struct.pack('<4H', 0x3f80, 0x4000, 0xbf80, 0)
    f16 = struct.pack('<4H', 0x3c00, 0x4000, 0xbc00, 0)
    tensors = [('a', [4], 0, f32), ('b', [32], 8, q8), ('c', [2, 2], 30, bf16), ('d', [4], 1, f16)]
    infos, data = b'', b''
    for name, dims, t, d in tensors:
        data += b'\0' * (-len(data) % 32)
        infos += s(name) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', x) for x in dims)
        infos += struct.pack('<IQ', t, len(data))
        data += d
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs)) + b''.join(kvs) + infos
    head += b'\0' * (-len(head) % 32)
    return head + data


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} of a safetensors file, in its order."""
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop('__metadata__', None)
    return {k: (v['dtype'], v['shape'], raw[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]]) for k, v in hdr.items()}


def write_safetensors(tens):
    hdr, body = {'__metadata__': {'format': 'pt'}}, b''
    for n, (dt, shape, d) in tens.items():
        hdr[n] = {'dtype': dt, 'shape': shape, 'data_offsets': [len(body), len(body) + len(d)]}
        body += d
    h = json.dumps(hdr).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + body


def quantized_seed(fixture):
    """Layer 0's k_proj weight and its side tensors (every tensor named after that module)."""
    t = read_safetensors(os.path.join(fixture, 'model.safetensors'))
    return write_safetensors({k: v for k, v in t.items() if k.startswith('model.layers.0.self_attn.k_proj.')})


def mini_safetensors():
    tens = {'w.f32': ('F32', [2, 2], struct.pack('<4f', 1, 2, 3, 4)),
            'w.f16': ('F16', [3], struct.pack('<3H', 0x3c00, 0x7c00, 0x0001)),
            'w.bf16': ('BF16', [1, 2], struct.pack('<2H', 0x3f80, 0x7fc0)),
            'w.i8': ('I8', [2], b'\x01\xff'),
            'w.empty': ('F32', [0, 3], b'')}
    return write_safetensors(tens)


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--nested':
        open(sys.argv[3], 'wb').write(nested_gguf(int(sys.argv[2])))
        sys.exit(0)
    seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seeds')
    open(os.path.join(seeds, 'gguf', 'mini.gguf'), 'wb').write(mini_gguf())
    open(os.path.join(seeds, 'safetensors', 'mini.safetensors'), 'wb').write(mini_safetensors())
    quantized = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'quantized')
    for kind in ('bnb_nf4_dq', 'bnb_nf4', 'bnb_int8', 'fp8', 'ct_fp8_channel', 'ct_int8_group', 'ct_w4_asym', 'ct_w3_channel',
                 'gptq_w4_asym_actorder', 'gptq_w8', 'awq_w4'):
        open(os.path.join(seeds, 'safetensors', f'quantized_{kind}.safetensors'), 'wb').write(
            quantized_seed(os.path.join(quantized, kind)))
