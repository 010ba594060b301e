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

crate::names_from_serde!(DeviceChoice, "device");

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
    /// The largest buffer one tensor may take on a GPU (the device's storage-binding and buffer
    /// limits, as cubecl sizes its pages); `None` on the CPU.
    pub max_tensor_bytes: Option<u64>,
}

impl fmt::Debug for PmgDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PmgDevice({:?}, {})", self.kind, self.adapter)
    }
}

impl PmgDevice {
    pub fn cpu() -> Self {
        #[cfg(not(target_family = "wasm"))]
        let threads = crate::host::pool::Pool::global().threads();
        #[cfg(target_family = "wasm")]
        let threads = 1;
        let plural = if threads == 1 { "" } else { "s" };
        let adapter = format!("cpu (burn flex + pmg {} kernels, {threads} thread{plural})", crate::host::cpu_kernels());
        PmgDevice {
            device: Device::flex(),
            kind: BackendKind::Cpu,
            adapter,
            is_software: false,
            max_tensor_bytes: None,
        }
    }

    /// A GPU device as wgpu opened it: the one place such a `PmgDevice` is built.
    #[cfg(feature = "wgpu")]
    pub fn from_wgpu(
        device: Device,
        adapter: String,
        is_software: bool,
        limits: &burn::tensor::wgpu::wgpu::Limits,
    ) -> Self {
        let max_tensor_bytes = Some(limits.max_storage_buffer_binding_size.min(limits.max_buffer_size));
        PmgDevice { device, kind: BackendKind::Wgpu, adapter, is_software, max_tensor_bytes }
    }

    /// A typed error when a tensor of `bytes` cannot live on this device (`what` needs it).
    pub fn check_tensor_bytes(&self, bytes: usize, what: &str) -> Result<()> {
        const MIB: f64 = (1 << 20) as f64;
        match self.max_tensor_bytes {
            Some(max) if bytes as u64 > max => Err(Error::Device {
                device: self.adapter.clone(),
                reason: format!(
                    "{what} needs {:.1} MiB tensors; this device holds at most {:.1} MiB in one",
                    bytes as f64 / MIB,
                    max as f64 / MIB
                ),
            }),
            _ => Ok(()),
        }
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
        init_native()
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

/// Most launches cubecl batches into one command buffer (`tasks_max`): a decode step is ~280
/// launches, so the whole step goes out in one submission, ended by the token-id readback.
/// (cubecl's default, 32, cut a step into 9 submissions.)
#[cfg(feature = "wgpu")]
pub const TASKS_MAX: usize = 1024;

/// burn's wgpu options as pmg wants them (natively and in the browser):
/// `wgpu_options().init_with_setup_async().await`.
#[cfg(feature = "wgpu")]
pub fn wgpu_options() -> burn::tensor::wgpu::WgpuOptions {
    Device::wgpu_options().tasks_max(TASKS_MAX)
}

/// burn's wgpu runtime on the default adapter, initialised once per process (burn refuses a second
/// initialisation; later calls return the same device).
#[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
fn init_native() -> Result<PmgDevice> {
    static DEVICE: std::sync::Mutex<Option<PmgDevice>> = std::sync::Mutex::new(None);
    let mut slot = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = slot.as_ref() {
        return Ok(d.clone());
    }
    let d = init_native_once()?;
    *slot = Some(d.clone());
    Ok(d)
}

#[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
fn init_native_once() -> Result<PmgDevice> {
    let (device, setup) =
        wgpu_options().init_with_setup().map_err(|e| Error::Device { device: "wgpu".into(), reason: e.to_string() })?;
    let info = setup.adapter.get_info();
    let is_software = info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu;
    let name = format!("{} ({:?}, {})", info.name, info.backend, info.driver);
    Ok(PmgDevice::from_wgpu(device, name, is_software, &setup.device.limits()))
}
