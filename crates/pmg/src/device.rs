//! Compute device chosen at run time: burn's wgpu runtime (Vulkan/Metal/DX12 natively, WebGPU in the
//! browser) or burn's CPU backend (flex) with our SIMD kernels.

use std::fmt;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// wgpu on a real GPU if one is present, else the CPU.
    #[default]
    Auto,
    #[serde(alias = "webgpu", alias = "gpu")]
    Wgpu,
    Cpu,
}

crate::from_str_by_serde_name!(DeviceChoice, "device");

/// Which kernels a device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Wgpu,
}

/// A ready device: the burn device plus what we know about it.
#[derive(Clone)]
pub struct PmgDevice {
    pub device: Device,
    pub kind: BackendKind,
    /// Adapter description (name, driver), or "cpu".
    pub adapter: String,
    /// True for software GPUs (lavapipe, SwiftShader): correct, but slower than the CPU path.
    pub is_software: bool,
}

impl fmt::Debug for PmgDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PmgDevice({:?}, {})", self.kind, self.adapter)
    }
}

impl PmgDevice {
    pub fn cpu() -> Self {
        #[cfg(not(target_family = "wasm"))]
        let threads = crate::kernels::pool::Pool::global().threads();
        #[cfg(target_family = "wasm")]
        let threads = 1;
        let plural = if threads == 1 { "" } else { "s" };
        let adapter =
            format!("cpu (burn flex + pmg {} kernels, {threads} thread{plural})", crate::gguf::quant::kernel_name());
        PmgDevice { device: Device::flex(), kind: BackendKind::Cpu, adapter, is_software: false }
    }

    /// A GPU device as wgpu opened it: the one place such a `PmgDevice` is built.
    pub fn from_wgpu(device: Device, adapter: String, is_software: bool) -> Self {
        PmgDevice { device, kind: BackendKind::Wgpu, adapter, is_software }
    }

    /// The one policy for a choice, whatever opens the GPU (`gpu`: natively wgpu's default adapter, in
    /// the browser WebGPU): `Wgpu` insists on it; `Auto` takes it on a hardware adapter and the CPU
    /// otherwise (a software GPU emulation is slower than our CPU kernels).
    pub async fn choose<F: std::future::Future<Output = Result<Self>>>(
        choice: DeviceChoice,
        gpu: impl FnOnce() -> F,
    ) -> Result<Self> {
        match choice {
            DeviceChoice::Cpu => Ok(Self::cpu()),
            DeviceChoice::Wgpu => gpu().await,
            DeviceChoice::Auto => match gpu().await {
                Ok(d) if !d.is_software => Ok(d),
                _ => Ok(Self::cpu()),
            },
        }
    }

    /// Resolve a choice natively ([`PmgDevice::choose`] with wgpu's default adapter).
    #[cfg(not(target_family = "wasm"))]
    pub fn new(choice: DeviceChoice) -> Result<Self> {
        crate::host::block_on(Self::choose(choice, || async { Self::wgpu() }))
    }

    #[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
    pub fn wgpu() -> Result<Self> {
        crate::kernels::wgpu::init_native()
    }

    #[cfg(all(not(feature = "wgpu"), not(target_family = "wasm")))]
    pub fn wgpu() -> Result<Self> {
        Err(Error::Device { device: "wgpu".into(), reason: "pmg was built without the `wgpu` feature".into() })
    }
}

fn readback_error(e: impl fmt::Debug) -> Error {
    Error::Device { device: "readback".into(), reason: format!("{e:?}") }
}

/// Reads an f32 tensor back to the host, blocking (native, and the CPU backend anywhere).
pub fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_data().map_err(readback_error)?.try_into_vec::<f32>().map_err(readback_error)
}

/// Reads an f32 tensor back to the host without blocking (the only way on WebGPU in a browser).
pub async fn read_f32_async<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async().await.map_err(readback_error)?.try_into_vec::<f32>().map_err(readback_error)
}
