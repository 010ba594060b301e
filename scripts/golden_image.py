#!/usr/bin/env python3
"""Render the reference image of the cross-backend tests natively on the CPU and store its RGBA
bytes in crates/pmg/tests/golden/image.json (read by crates/pmg/tests/image.rs and web/tests/browser.mjs).

    python3 scripts/golden_image.py     # after the generator weights in models/ change

The PNG is decoded here with zlib and the PNG filter definitions (RFC 2083, section 6), so the
golden does not depend on the crate's own decoder."""
import hashlib, json, os, re, struct, subprocess, sys, tempfile, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A held-out emoji (models/emoji-split.json): never seen in training.
PROMPT, SEED, STEPS, GUIDANCE, STRENGTH = "rabbit face", 1, 20, 3.0, 0.6


def decode_png(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, color, interlace) == (8, 6, 0), "expects 8-bit RGBA, not interlaced"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, bpp, stride = zlib.decompress(idat), 4, w * 4
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return w, h, bytes(out)


def main():
    pmg = os.environ.get("PMG_BIN", os.path.join(ROOT, "target/release/pmg"))
    with tempfile.TemporaryDirectory() as d:
        png = os.path.join(d, "golden.png")
        run = subprocess.run([pmg, "image", "--device", "cpu", "--prompt", PROMPT, "--seed", str(SEED), "--steps", str(STEPS),
                              "--guidance", str(GUIDANCE), "--strength", str(STRENGTH), "--out", png],
                             check=True, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(run.stderr)
        # "nearest training emoji (the denoiser's references): name (0.71), name, with comma (0.65), ..."
        line = next(l for l in run.stderr.splitlines() if l.startswith("nearest training emoji"))
        references = [{"name": n, "similarity": float(v)}
                      for n, v in re.findall(r"(.+?) \((-?\d+\.\d+)\)(?:, |$)", line.split(": ", 1)[1])]
        w, h, rgba = decode_png(open(png, "rb").read())
    weights = {f: hashlib.sha256(open(os.path.join(ROOT, "models", f), "rb").read()).hexdigest()
               for f in ("emoji-autoencoder.safetensors", "emoji-denoiser.safetensors")}
    out = {
        "prompt": PROMPT, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE, "strength": STRENGTH, "width": w, "height": h,
        # The training emoji the retrieval picks for the prompt, best first (2 decimals). Other backends
        # must start from the same first one; near-tied later ones may swap, so they are compared by
        # their similarity at each rank.
        "references": references,
        "weights_sha256": weights,
        # Other backends must match within: mean |difference| over all RGBA bytes (0-255), and the
        # fraction of bytes within 16 of the reference. Rounding differences between backends grow
        # over 20 guided steps (measured wgpu/lavapipe vs CPU: 5.3 and 0.948); a different seed
        # differs by far more, which crates/pmg/tests/image.rs also checks.
        "tolerance": {"mean_abs": 8.0, "within_16": 0.90},
        "rgba_hex": rgba.hex(),
    }
    path = os.path.join(ROOT, "crates/pmg/tests/golden/image.json")
    json.dump(out, open(path, "w"), indent=1)
    print(f"wrote {path}: {w}x{h} for {PROMPT!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
