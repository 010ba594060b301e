//! GGUF reader and quantized kernels against independent references, and hostile inputs.

use pmg::gguf::{GgmlType, Gguf};
use pmg::kernels::q8 as quant;
use pmg::kernels::{QMatrix, cpu};

const QUANTS: &[u8] = include_bytes!("golden/quants.gguf");

fn all_types() -> Vec<&'static str> {
    vec!["f32", "f16", "bf16", "q4_0", "q4_1", "q8_0", "q4_k", "q5_k", "q6_k"]
}

/// Every supported type dequantizes exactly as gguf-py's numpy reference (scripts/golden_quants.py).
#[test]
fn dequantization_matches_gguf_py() {
    let g = Gguf::parse(QUANTS).unwrap();
    for name in all_types() {
        let w = QMatrix::from_gguf(&g, &format!("w.{name}")).unwrap();
        let e = QMatrix::from_gguf(&g, &format!("w.{name}.expected")).unwrap();
        assert_eq!(e.ty, GgmlType::F32);
        assert_eq!((w.rows, w.cols), (e.rows, e.cols), "{name}");
        let (got, want) = (w.dequantize(), e.dequantize());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // Same formulas in f32; only the association of products may differ.
            assert!((a - b).abs() <= 1e-6 + 1e-6 * b.abs(), "{name}[{i}]: {a} vs {b}");
        }
    }
}

/// Quantizing f32 rows to Q8_0 and Q4_0 (what pmg does to a standard checkpoint's linears on load)
/// gives gguf-py's reference blocks byte for byte, zero blocks included.
#[test]
fn quantization_matches_gguf_py() {
    let g = Gguf::parse(QUANTS).unwrap();
    for (name, ty) in [("q8_0", GgmlType::Q8_0), ("q4_0", GgmlType::Q4_0)] {
        let x = QMatrix::from_gguf(&g, &format!("q.{name}.input")).unwrap();
        let want = QMatrix::from_gguf(&g, &format!("q.{name}")).unwrap();
        assert_eq!((want.ty, want.rows, want.cols), (ty, x.rows, x.cols));
        let mut got = Vec::new();
        pmg::gguf::quant::quantize_row(ty, &x.dequantize(), &mut got).unwrap();
        assert_eq!(got, &want.data[..], "{name}");
    }
    assert!(pmg::gguf::quant::quantize_row(GgmlType::Q4K, &[0.0; 256], &mut Vec::new()).is_none());
}

/// The quantized matmul equals the f32 product of the dequantized weight within the error of
/// 8-bit activation quantization, for every type and for 1 and several rows of activations.
#[test]
fn quantized_matmul_matches_f32_reference() {
    let g = Gguf::parse(QUANTS).unwrap();
    for name in all_types() {
        let w = QMatrix::from_gguf(&g, &format!("w.{name}")).unwrap();
        let wf = w.dequantize();
        for m in [1usize, 5] {
            let x: Vec<f32> = (0..m * w.cols).map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0).collect();
            let y = cpu::matmul(&w, &x, m);
            for t in 0..m {
                for r in 0..w.rows {
                    let xr = &x[t * w.cols..(t + 1) * w.cols];
                    let wr = &wf[r * w.cols..(r + 1) * w.cols];
                    let exact: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let scale: f64 = xr.iter().zip(wr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                    let got = y[t * w.rows + r] as f64;
                    let tol = if quant::has_q8_kernel(w.ty) { 0.01 * scale } else { 1e-5 * scale };
                    assert!(
                        (got - exact).abs() <= tol + 1e-6,
                        "{name} m={m} t={t} r={r}: {got} vs {exact} (tol {tol})"
                    );
                }
            }
        }
    }
}

/// The SIMD integer kernels agree with the portable scalar kernel.
#[test]
fn simd_kernels_match_scalar() {
    let g = Gguf::parse(QUANTS).unwrap();
    for name in ["q4_0", "q4_1", "q8_0"] {
        let w = QMatrix::from_gguf(&g, &format!("w.{name}")).unwrap();
        let x: Vec<f32> = (0..w.cols).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let a = quant::Q8Activations::quantize(&x);
        for r in 0..w.rows {
            let s = quant::dot_q8_scalar(w.ty, w.row(r), &a, 0);
            let v = quant::dot_q8(w.ty, w.row(r), &a, 0);
            assert!((s - v).abs() <= 1e-4 * s.abs().max(1.0), "{name} row {r}: scalar {s} simd {v}");
        }
    }
}

#[test]
fn metadata_and_tensor_table_are_read() {
    let g = Gguf::parse(QUANTS).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(
        g.get("pmg.fixture").and_then(|v| v.as_str()),
        Some("random quant blocks with reference dequantization")
    );
    assert_eq!(g.tensors.len(), 22);
    let t = g.tensor("w.q6_k").unwrap();
    assert_eq!(t.dims, vec![512, 3]);
    assert_eq!(t.size, 3 * 2 * 210);
    assert_eq!(t.offset % g.alignment, 0);
}

/// Every truncation of a valid file is an error, never a panic.
#[test]
fn truncated_files_are_errors() {
    for len in (0..QUANTS.len()).step_by(7).chain([QUANTS.len() - 1]) {
        assert!(Gguf::parse(&QUANTS[..len]).is_err(), "truncated at {len} parsed");
    }
}

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b
}

fn gguf_string(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

#[test]
fn lying_headers_are_typed_errors() {
    use pmg::error::GgufError;
    assert!(matches!(Gguf::parse(b"GGUX\x03\0\0\0"), Err(GgufError::BadMagic(_))));
    assert!(matches!(Gguf::parse(&header(0, 0)[..4]), Err(GgufError::Truncated { .. })));
    let mut v1 = header(0, 0);
    v1[4] = 1;
    assert!(matches!(Gguf::parse(&v1), Err(GgufError::UnsupportedVersion(1))));
    assert!(matches!(Gguf::parse(&header(u64::MAX, 0)), Err(GgufError::TooMany { .. })));
    assert!(matches!(Gguf::parse(&header(0, u64::MAX)), Err(GgufError::TooMany { .. })));
    // A string claiming 2^63 bytes.
    let mut b = header(0, 1);
    b.extend((1u64 << 63).to_le_bytes());
    assert!(matches!(Gguf::parse(&b), Err(GgufError::Truncated { .. })));
    // An array claiming 2^60 u64 elements: refused before any allocation.
    let mut b = header(0, 1);
    gguf_string(&mut b, "k");
    b.extend(9u32.to_le_bytes());
    b.extend(10u32.to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    assert!(matches!(Gguf::parse(&b), Err(GgufError::Truncated { .. })));
    // Unknown value type.
    let mut b = header(0, 1);
    gguf_string(&mut b, "k");
    b.extend(99u32.to_le_bytes());
    assert!(matches!(Gguf::parse(&b), Err(GgufError::BadValueType(99))));
    // Deeply nested arrays.
    let mut b = header(0, 1);
    gguf_string(&mut b, "k");
    b.extend(9u32.to_le_bytes());
    for _ in 0..10 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    assert!(Gguf::parse(&b).is_err());
    // A tensor whose dimensions overflow, one with an unknown type, one pointing past the end.
    for (dims, ty, off) in
        [(vec![u64::MAX, 2], 0u32, 0u64), (vec![32], 77, 0), (vec![32], 0, 1 << 40), (vec![33], 2, 0), (vec![], 0, 0)]
    {
        let mut b = header(1, 0);
        gguf_string(&mut b, "t");
        b.extend((dims.len() as u32).to_le_bytes());
        for d in &dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(off.to_le_bytes());
        b.resize(b.len() + 256, 0);
        assert!(Gguf::parse(&b).is_err(), "dims {dims:?} type {ty} offset {off} parsed");
    }
    // Duplicate keys and a bad alignment.
    let mut b = header(0, 2);
    for _ in 0..2 {
        gguf_string(&mut b, "general.alignment");
        b.extend(4u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
    }
    assert!(matches!(Gguf::parse(&b), Err(GgufError::DuplicateKey(_))));
    let mut b = header(0, 1);
    gguf_string(&mut b, "general.alignment");
    b.extend(4u32.to_le_bytes());
    b.extend(3u32.to_le_bytes());
    assert!(matches!(Gguf::parse(&b), Err(GgufError::BadAlignment(3))));
}

/// Deterministic mutation fuzzing (the cargo-fuzz target in fuzz/ runs the same property longer):
/// byte flips, overwrites with boundary values, and splices never panic.
#[test]
fn mutated_files_never_panic() {
    let mut seeds: Vec<Vec<u8>> = vec![QUANTS.to_vec()];
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/gguf_parse"))
        .into_iter()
        .flatten()
        .flatten()
    {
        seeds.push(std::fs::read(entry.path()).unwrap());
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let boundary: [u64; 6] = [0, 1, u32::MAX as u64, u64::MAX, 1 << 31, 1 << 40];
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].clone();
        if b.is_empty() {
            continue;
        }
        for _ in 0..1 + next() % 4 {
            let pos = (next() as usize) % b.len();
            match next() % 3 {
                0 => b[pos] ^= 1 << (next() % 8),
                1 => {
                    let v = boundary[(next() % 6) as usize].to_le_bytes();
                    let n = v.len().min(b.len() - pos);
                    b[pos..pos + n].copy_from_slice(&v[..n]);
                }
                _ => b.truncate(pos),
            }
            if b.is_empty() {
                break;
            }
        }
        // Parsing and dequantizing whatever parsed must not panic.
        if let Ok(g) = Gguf::parse(&b) {
            for t in &g.tensors {
                if let Ok(m) = QMatrix::from_gguf(&g, &t.name)
                    && m.rows * m.cols <= 1 << 16
                {
                    let _ = m.dequantize();
                }
            }
        }
    }
}

/// A header read from a file held elsewhere ([`GgufIndex::read`]) equals the one parsed from all
/// its bytes, also when the header outgrows the first read (a 3 MB metadata string), and a file
/// cut inside its header or its data is the same typed error.
#[test]
fn headers_are_read_a_prefix_at_a_time() {
    use pmg::gguf::GgufIndex;
    let same = |bytes: &[u8]| {
        let whole = Gguf::parse(bytes).unwrap();
        let read = GgufIndex::read(&bytes).unwrap();
        assert_eq!((&read.tensors, &read.keys, read.data_offset), (&whole.tensors, &whole.keys, whole.data_offset));
    };
    same(QUANTS);
    let mut b = header(1, 1);
    gguf_string(&mut b, "long");
    b.extend(8u32.to_le_bytes());
    gguf_string(&mut b, &"x".repeat(3 << 20));
    gguf_string(&mut b, "t");
    b.extend(1u32.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // f32
    b.extend(0u64.to_le_bytes());
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend([0u8; 16]);
    same(&b);
    assert!(b.len() > 3 << 20);
    for cut in [b.len() - 1, 1 << 20, (1 << 20) + 5, 100] {
        let src: &[u8] = &b[..cut];
        assert!(GgufIndex::read(&src).is_err(), "cut at {cut}");
    }
}
