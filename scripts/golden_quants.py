#!/usr/bin/env python3
"""Write crates/pmg/tests/golden/quants.gguf: random blocks of every ggml type pmg reads, each followed by
its dequantization computed by the `gguf` Python package (gguf-py's numpy reference), as an F32
tensor named `<name>.expected`. pmg's dequantizers must reproduce these exactly (crates/pmg/tests/gguf.rs).

    pip install gguf==0.19.0 numpy && python3 scripts/golden_quants.py
"""
import os
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, quants

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "pmg", "tests", "golden", "quants.gguf")
rng = np.random.default_rng(1234)

# Byte offsets of the f16 scale fields inside each block, which must hold finite values.
SCALES = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q8_0: [0], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}

w = gguf.GGUFWriter(OUT, "pmg-test")
w.add_string("pmg.fixture", "random quant blocks with reference dequantization")
rows = 3
for t in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
    bs, ts = gguf.GGML_QUANT_SIZES[t]
    cols = 512
    if t == T.F32:
        vals = rng.standard_normal((rows, cols)).astype(np.float32)
        w.add_tensor(f"w.{t.name.lower()}", vals)
        w.add_tensor(f"w.{t.name.lower()}.expected", vals)
        continue
    if t == T.F16:
        raw = rng.standard_normal((rows, cols)).astype(np.float16).view(np.uint8)
    elif t == T.BF16:
        f = rng.standard_normal((rows, cols)).astype(np.float32)
        raw = (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    else:
        raw = rng.integers(0, 256, size=(rows, cols // bs, ts), dtype=np.uint8)
        for off in SCALES[t]:
            s = (rng.standard_normal((rows, cols // bs)) * 0.05).astype(np.float16)
            raw[:, :, off:off + 2] = s.view(np.uint8).reshape(rows, cols // bs, 2)
        raw = raw.reshape(rows, -1)
    expected = quants.dequantize(raw, t).astype(np.float32)
    assert expected.shape == (rows, cols), (t, expected.shape)
    w.add_tensor(f"w.{t.name.lower()}", raw, raw_dtype=t)
    w.add_tensor(f"w.{t.name.lower()}.expected", expected)
# Quantization (pmg quantizes standard checkpoints' linears on load): f32 rows, and their Q8_0 and
# Q4_0 blocks by gguf-py's reference quantizer. A separate generator keeps the tensors above as they were.
qrng = np.random.default_rng(99)
for t in [T.Q8_0, T.Q4_0]:
    # Four rows: whole 32-byte alignment units, so the file ends with tensor data (no padding).
    x = (qrng.standard_normal((4, 256)) * qrng.uniform(0.01, 3.0, size=(4, 1))).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block (scale 0)
    w.add_tensor(f"q.{t.name.lower()}.input", x)
    w.add_tensor(f"q.{t.name.lower()}", quants.quantize(x, t), raw_dtype=t)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")

# Fuzz seeds: a tiny file with every metadata value type (nested arrays too) and one small tensor
# of each block type, so mutations reach every branch of the reader.
SEED = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "gguf_parse", "tiny_all_types.gguf")
os.makedirs(os.path.dirname(SEED), exist_ok=True)
w = gguf.GGUFWriter(SEED, "llama")
w.add_uint8("k.u8", 7); w.add_int8("k.i8", -7); w.add_uint16("k.u16", 700); w.add_int16("k.i16", -700)
w.add_uint32("k.u32", 70000); w.add_int32("k.i32", -70000); w.add_float32("k.f32", 0.5); w.add_bool("k.bool", True)
w.add_string("k.str", "héllo"); w.add_uint64("k.u64", 1 << 40); w.add_int64("k.i64", -(1 << 40)); w.add_float64("k.f64", 0.25)
w.add_array("k.arr", [1, 2, 3]); w.add_array("k.strs", ["a", "bc"]); w.add_array("k.nested", [[1, 2], [3]])
for t in [T.F32, T.F16, T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
    bs, ts = gguf.GGML_QUANT_SIZES[t]
    if t == T.F32:
        w.add_tensor("t.f32", np.arange(32, dtype=np.float32))
    elif t == T.F16:
        w.add_tensor("t.f16", np.arange(32, dtype=np.float16))
    else:
        w.add_tensor(f"t.{t.name.lower()}", np.full((1, ts), 0x11, dtype=np.uint8), raw_dtype=t)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", os.path.normpath(SEED), os.path.getsize(SEED), "bytes")
