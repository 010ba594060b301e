//! Quantized matmul on burn's wgpu runtime: our own CubeCL kernels read GGUF blocks from a u32
//! buffer on the device and dequantize inside the dot product (no f32 copy of the weights).
//!
//! Device layout (u32 little-endian words, each block starting on a word boundary):
//! - Q4_1 as in the file: 5 words = `d | m << 16` (two f16), then 16 bytes of nibbles.
//! - Q4_0 repacked to Q4_1 at upload with `m = -8 d` (exact in f16: a power-of-two scale).
//! - Q8_0 repacked from 34 to 36 bytes: word 0 = `d` (f16, upper half zero), words 1..9 = 32
//!   signed bytes.
//! Other types (K-quants, floats) run the CPU kernel on a host copy of the activations: correct,
//! and slower; a GPU kernel for them is future work.
//!
//! One invocation computes a few output rows for a few tokens; no shared memory or barriers
//! (barriers are very slow on software GPUs such as SwiftShader and lavapipe).

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Cube, CubeDevice, DispatchDevice};
use burn::tensor::{DType, Int, Shape, Tensor, TensorData};
use cubecl::prelude::*;

use super::QMatrix;
#[cfg(not(target_family = "wasm"))]
use crate::device::BackendKind;
use crate::device::PmgDevice;
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::gguf::quant::QK;

/// Invocations per workgroup (8-64 measured alike on lavapipe).
const WG: u32 = 16;

/// f16 bits (low 16 bits of `h`) to f32 without shader f16 support; subnormals included, inf/NaN
/// not (GGUF scales are finite).
#[cube]
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u32) << 16u32;
    let exp = (h >> 10u32) & 0x1Fu32;
    let mant = h & 0x3FFu32;
    let normal = f32::reinterpret(sign | ((exp + 112u32) << 23u32) | (mant << 13u32));
    let sub_mag = f32::cast_from(mant) * 5.960_464_5e-8f32;
    let sub = select(sign != 0u32, -sub_mag, sub_mag);
    select(exp == 0u32, sub, normal)
}

/// Signed byte `k` (0..4) of `q` as f32.
#[cube]
fn sbyte(q: u32, #[comptime] k: u32) -> f32 {
    let b = (q >> (8u32 * k)) & 0xFFu32;
    f32::cast_from(b) - select(b >= 128u32, 256.0f32, 0.0f32)
}

/// `out[t, r] = sum_c x[t, c] * W[r, c]` for Q4_1 blocks (5 words: `d | m << 16`, 16 bytes of
/// nibbles) or, with `q8`, repacked Q8_0 blocks (9 words: `d`, 32 signed bytes).
///
/// One invocation computes `rpt` consecutive rows for `tb` consecutive tokens; every weight word
/// and activation is loaded once per invocation and reused from registers (on SIMD-on-CPU drivers
/// such as lavapipe and SwiftShader every buffer load is a per-lane gather, and loads dominate).
#[cube(launch_unchecked)]
fn qmatmul_kernel(
    x: &[f32],
    w: &[u32],
    out: &mut [f32],
    m: u32,
    rows: u32,
    nb: u32,
    #[comptime] tb: usize,
    #[comptime] rpt: usize,
    #[comptime] q8: bool,
) {
    let qw = comptime!(if q8 { 8usize } else { 4usize });
    let rows = rows as usize;
    let r0 = (ABSOLUTE_POS_X as usize) * rpt;
    if r0 >= rows {
        terminate!();
    }
    let t0 = (CUBE_POS_Y as usize) * tb;
    let m = m as usize;
    let nb = nb as usize;
    let cols = nb * 32;
    let mut acc = Array::<f32>::new(comptime!(tb * rpt));
    #[unroll]
    for i in 0..tb * rpt {
        acc[i] = 0.0f32;
    }
    let mut wq = Array::<u32>::new(comptime!(rpt * qw));
    let mut dd = Array::<f32>::new(rpt);
    let mut mm = Array::<f32>::new(rpt);
    let mut xv = Array::<f32>::new(32usize);
    for b in 0..nb {
        #[unroll]
        for rr in 0..rpt {
            // Rows past the end read the last row and are not written.
            let row = select(r0 + rr < rows, r0 + rr, rows - 1);
            let base = (row * nb + b) * (qw + 1);
            let dm = w[base];
            dd[rr] = f16_bits_to_f32(dm & 0xFFFFu32);
            // Q8_0 has no min: its upper half-word is zero padding, which decodes to 0.0.
            mm[rr] = f16_bits_to_f32(dm >> 16u32);
            #[unroll]
            for k in 0..qw {
                wq[rr * qw + k] = w[base + 1 + k];
            }
        }
        #[unroll]
        for ti in 0..tb {
            // Tokens past the end read the last token and are not written.
            let t = select(t0 + ti < m, t0 + ti, m - 1);
            let xo = t * cols + b * 32;
            let mut xs = 0.0f32;
            #[unroll]
            for j in 0..32usize {
                let v = x[xo + j];
                xv[j] = v;
                xs += v;
            }
            #[unroll]
            for rr in 0..rpt {
                let mut dot = 0.0f32;
                if q8 {
                    #[unroll]
                    for k in 0..8usize {
                        let q = wq[rr * 8 + k];
                        dot += xv[4 * k] * sbyte(q, 0u32) + xv[4 * k + 1] * sbyte(q, 1u32) + xv[4 * k + 2] * sbyte(q, 2u32) + xv[4 * k + 3] * sbyte(q, 3u32);
                    }
                } else {
                    // Word k holds bytes 4k..4k+4: low nibbles are elements 4k+i, high nibbles 16+4k+i.
                    #[unroll]
                    for k in 0..4usize {
                        let q = wq[rr * 4 + k];
                        dot += xv[4 * k] * f32::cast_from(q & 0xFu32)
                            + xv[4 * k + 1] * f32::cast_from((q >> 8u32) & 0xFu32)
                            + xv[4 * k + 2] * f32::cast_from((q >> 16u32) & 0xFu32)
                            + xv[4 * k + 3] * f32::cast_from((q >> 24u32) & 0xFu32)
                            + xv[16 + 4 * k] * f32::cast_from((q >> 4u32) & 0xFu32)
                            + xv[16 + 4 * k + 1] * f32::cast_from((q >> 12u32) & 0xFu32)
                            + xv[16 + 4 * k + 2] * f32::cast_from((q >> 20u32) & 0xFu32)
                            + xv[16 + 4 * k + 3] * f32::cast_from(q >> 28u32);
                    }
                }
                // sum_j x_j (d q_j + m) = d * sum_j x_j q_j + m * sum_j x_j
                acc[ti * rpt + rr] += dd[rr] * dot + mm[rr] * xs;
            }
        }
    }
    #[unroll]
    for ti in 0..tb {
        #[unroll]
        for rr in 0..rpt {
            let t = t0 + ti;
            let row = r0 + rr;
            if t < m && row < rows {
                out[t * rows + row] = acc[ti * rpt + rr];
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Q4_1,
    Q8_0,
}

/// A weight matrix on the GPU, in a kernel's block layout.
pub struct GpuQMatrix {
    words: Tensor<1, Int>,
    layout: Layout,
    rows: usize,
    cols: usize,
    /// Output rows per invocation: many on software GPUs (loads are gathers), few on hardware
    /// GPUs (enough invocations to fill the device).
    rpt: usize,
}

fn f16_bits(b: &[u8], i: usize) -> u32 {
    u16::from_le_bytes([b[i], b[i + 1]]) as u32
}

impl GpuQMatrix {
    /// Upload `w` for a kernel; `None` when no GPU kernel handles its type yet.
    pub fn upload(w: &QMatrix, dev: &PmgDevice) -> Result<Option<Self>> {
        let ts = w.ty.type_size();
        let (layout, words): (Layout, Vec<u32>) = match w.ty {
            GgmlType::Q4_1 => (Layout::Q4_1, w.data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            GgmlType::Q4_0 => {
                let mut v = Vec::with_capacity(w.data.len() / ts * 5);
                for b in w.data.chunks_exact(ts) {
                    let d = half::f16::from_bits(f16_bits(b, 0) as u16);
                    let m = half::f16::from_f32(-8.0 * d.to_f32());
                    v.push(d.to_bits() as u32 | (m.to_bits() as u32) << 16);
                    v.extend(b[2..18].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                }
                (Layout::Q4_1, v)
            }
            GgmlType::Q8_0 => {
                let mut v = Vec::with_capacity(w.data.len() / ts * 9);
                for b in w.data.chunks_exact(ts) {
                    v.push(f16_bits(b, 0));
                    v.extend(b[2..34].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                }
                (Layout::Q8_0, v)
            }
            _ => return Ok(None),
        };
        let n = words.len();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        // An explicit dtype: burn would otherwise convert to the device's default int type.
        let data = TensorData::from_bytes_vec(bytes, [n], DType::U32);
        let words = Tensor::<1, Int>::from_data(data, (&dev.device, DType::U32));
        let rpt = if dev.is_software { 8 } else { 2 };
        Ok(Some(GpuQMatrix { words, layout, rows: w.rows, cols: w.cols, rpt }))
    }
}

/// `x: [m, cols]` (on the wgpu device) -> `[m, rows]`.
pub fn matmul(w: &GpuQMatrix, x: Tensor<2>) -> Result<Tensor<2>> {
    let [m, cols] = x.dims();
    debug_assert_eq!(cols, w.cols);
    let nb = cols / QK;
    let rows = w.rows;
    let wrong = |what: &str| Error::Device { device: "wgpu".into(), reason: format!("{what} is not a wgpu tensor") };
    // The kernel indexes x as dense row-major memory.
    let x: CubeTensor = x.try_into_primitive::<Cube>().map_err(|_| wrong("activation"))?;
    let x = if x.is_contiguous() { x } else { burn_cubecl_contiguous(x) };
    let wt: CubeTensor = w.words.clone().try_into_primitive::<Cube>().map_err(|_| wrong("weight"))?;
    let client = x.client.clone();
    let out_handle = client.empty(m * rows * size_of::<f32>());
    let out = CubeTensor::new_contiguous(client.clone(), x.device.clone(), Shape::new([m, rows]), out_handle, DType::F32);
    // Several tokens per invocation reuse each dequantized block during prefill.
    let tb: usize = if m == 1 { 1 } else { 4 };
    let rpt = w.rpt;
    let count = CubeCount::Static((rows.div_ceil(rpt) as u32).div_ceil(WG), m.div_ceil(tb) as u32, 1);
    let dim = CubeDim::new_1d(WG);
    // SAFETY: buffer sizes follow from the shapes checked above; the kernels guard r < rows and
    // t < m and read only x rows < m and weight blocks < rows * nb.
    let q8 = w.layout == Layout::Q8_0;
    unsafe {
        qmatmul_kernel::launch_unchecked(&client, count, dim, x.into_buffer_arg(), wt.into_buffer_arg(), out.clone().into_buffer_arg(), m as u32, rows as u32, nb as u32, tb, rpt, q8)
    };
    Ok(Tensor::<2>::from_primitive::<Cube>(out))
}

/// A contiguous copy through burn (for views such as transposes).
fn burn_cubecl_contiguous(x: CubeTensor) -> CubeTensor {
    let t = Tensor::<2>::from_primitive::<Cube>(x);
    // An elementwise op writes a fresh, contiguous buffer.
    t.add_scalar(0.0).try_into_primitive::<Cube>().unwrap_or_else(|_| unreachable!("stays on wgpu"))
}

/// Whether a burn device is burn's wgpu runtime.
pub fn is_wgpu(device: &burn::tensor::Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Cube(CubeDevice::Wgpu(_)))
}

#[cfg(not(target_family = "wasm"))]
pub fn init_native() -> Result<PmgDevice> {
    let (device, setup) = burn::tensor::Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| Error::Device { device: "wgpu".into(), reason: e.to_string() })?;
    let info = setup.adapter.get_info();
    let is_software = info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu;
    Ok(PmgDevice { device, kind: BackendKind::Wgpu, adapter: format!("{} ({:?}, {})", info.name, info.backend, info.driver), is_software })
}
