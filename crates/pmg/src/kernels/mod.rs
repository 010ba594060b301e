//! Our own kernels where burn has no op (GGUF block formats) or its op is the bottleneck.
//!
//! [`QMatrix`] keeps a weight matrix in its GGUF block format; [`cpu::matmul`] multiplies
//! activations by it without expanding it to f32 (integer dot products on 8-bit quantized
//! activations, SIMD, multi-threaded natively).

pub mod cpu;
pub mod q8;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf, quant};

/// A weight matrix `[rows, cols]` stored row-major in a ggml block format.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: Arc<[u8]>,
}

impl QMatrix {
    /// Copies a 2-D tensor's bytes out of a GGUF file. ggml's `dims[0]` is the row length.
    pub fn from_gguf(g: &Gguf<'_>, name: &str) -> Result<Self> {
        let info = g.tensor(name).ok_or_else(|| Error::tensor(name, "missing"))?;
        let (cols, rows) = match info.dims[..] {
            [c, r] => (c as usize, r as usize),
            [c] => (c as usize, 1),
            _ => return Err(Error::tensor(name, format!("expected a matrix, got dims {:?}", info.dims))),
        };
        Ok(QMatrix { ty: info.ggml_type, rows, cols, data: Arc::from(g.tensor_data(info)) })
    }

    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols)
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// One row as f32 (embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        quant::dequantize_row(self.ty, self.row(r), out);
    }

    /// The whole matrix as f32 (tests and tiny matrices only).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row(r, o);
        }
        out
    }
}

/// A linear layer `y = x W^T` whose weight stays quantized; the one op the model calls for every
/// projection. The kernel is chosen by where the activations live.
pub struct QLinear {
    pub weight: QMatrix,
    #[cfg(feature = "wgpu")]
    gpu: Option<wgpu::GpuQMatrix>,
}

impl QLinear {
    pub fn new(weight: QMatrix, dev: &crate::device::PmgDevice) -> Result<Self> {
        let _ = dev;
        Ok(QLinear {
            #[cfg(feature = "wgpu")]
            gpu: match dev.kind {
                crate::device::BackendKind::Wgpu => wgpu::GpuQMatrix::upload(&weight, dev)?,
                crate::device::BackendKind::Cpu => None,
            },
            weight,
        })
    }

    /// The weights in a GPU kernel's layout, when the device is wgpu and the type has a kernel.
    #[cfg(feature = "wgpu")]
    pub fn gpu(&self) -> Option<&wgpu::GpuQMatrix> {
        self.gpu.as_ref()
    }

    /// `x: [m, cols]` -> `[m, rows]`.
    pub fn forward(&self, x: burn::tensor::Tensor<2>) -> Result<burn::tensor::Tensor<2>> {
        use burn::tensor::{Tensor, TensorData};
        let [m, k] = x.dims();
        if k != self.weight.cols {
            return Err(Error::InvalidArgument(format!("linear layer expects {} inputs, got {k}", self.weight.cols)));
        }
        #[cfg(feature = "wgpu")]
        if let Some(gpu) = &self.gpu {
            return wgpu::matmul(gpu, x);
        }
        // CPU kernel (also the fallback for types without a GPU kernel: the result goes back to
        // the activations' device).
        let device = x.device();
        // In the browser a GPU tensor cannot be read back synchronously.
        #[cfg(all(feature = "wgpu", target_family = "wasm"))]
        if wgpu::is_wgpu(&device) {
            return Err(Error::Device {
                device: "webgpu".into(),
                reason: format!("{:?} weights have no WebGPU kernel yet; use the CPU backend", self.weight.ty),
            });
        }
        let xs = crate::device::read_f32(x)?;
        let y = cpu::matmul(&self.weight, &xs, m);
        Ok(Tensor::from_data(TensorData::new(y, [m, self.weight.rows]), &device))
    }
}
