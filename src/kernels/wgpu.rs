//! Quantized matmul on burn's wgpu runtime (placeholder until the cubecl kernel lands).

use burn::tensor::Tensor;

use super::QMatrix;
use crate::device::{BackendKind, PmgDevice};
use crate::error::{Error, Result};

pub struct GpuQMatrix {}

impl GpuQMatrix {
    pub fn upload(_w: &QMatrix, _dev: &PmgDevice) -> Result<Self> {
        Ok(GpuQMatrix {})
    }
}

pub fn matmul(_w: &GpuQMatrix, _x: Tensor<2>) -> Result<Tensor<2>> {
    Err(Error::Device { device: "wgpu".into(), reason: "quantized kernel not implemented".into() })
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
