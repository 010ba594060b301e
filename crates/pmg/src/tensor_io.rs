//! Weights of our own models (autoencoder, denoiser, scorer) as safetensors: the format is a
//! little-endian u64 header length, a JSON header `{name: {dtype, shape, data_offsets}, "__metadata__":
//! {..}}`, then the raw tensor bytes (<https://github.com/huggingface/safetensors>, "Format").
//! Written and read here in a few lines so the same loader runs natively and in wasm, with every
//! offset checked before use. Parameters are named by their path in the burn module tree
//! (`down.0.conv1.weight`), which is also how a file is matched to a module on load.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use half::f16;

use crate::bytes::ByteSource;
use crate::error::{Error, Result};

/// Storage type of the tensors in a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F16,
    F32,
    /// Integers in [-128, 127] (quantized data with its scales in another tensor); values are
    /// rounded and clamped on write.
    I8,
}

impl Dtype {
    fn width(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::I8 => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "F16",
            Dtype::F32 => "F32",
            Dtype::I8 => "I8",
        }
    }
}

/// One named tensor, always held as f32 in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The tensors and string metadata of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    pub tensors: BTreeMap<String, NamedTensor>,
    pub metadata: BTreeMap<String, String>,
}

/// Header JSON larger than this is refused before parsing (a 100M-parameter file needs ~10 KB).
const MAX_HEADER: u64 = 16 << 20;

fn bad(file: &str, problem: impl Into<String>) -> Error {
    Error::Weights { file: file.to_string(), problem: problem.into() }
}

impl Weights {
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        self.tensors.insert(name.into(), NamedTensor { shape, data });
    }

    pub fn get(&self, file: &str, name: &str) -> Result<&NamedTensor> {
        self.tensors.get(name).ok_or_else(|| bad(file, format!("missing tensor `{name}`")))
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The tensors whose names start with `prefix` (`"encoder."`), renamed without it.
    pub fn prefixed(&self, prefix: &str) -> Weights {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        Weights { tensors, metadata: BTreeMap::new() }
    }

    /// The model configuration stored as JSON in the `config` metadata.
    pub fn config<T: serde::de::DeserializeOwned>(&self, file: &str) -> Result<T> {
        let json = self.meta("config").ok_or_else(|| bad(file, "no `config` metadata"))?;
        serde_json::from_str(json).map_err(|e| bad(file, format!("config metadata: {e}")))
    }

    pub fn num_params(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }

    /// Serialize; names are written in sorted order, so equal weights give equal bytes.
    pub fn to_bytes(&self, dtype: Dtype) -> Vec<u8> {
        self.to_bytes_as(|_| dtype)
    }

    /// Serialise with a storage type per tensor name.
    pub fn to_bytes_as(&self, dtype_of: impl Fn(&str) -> Dtype) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            header.insert("__metadata__".into(), serde_json::to_value(&self.metadata).expect("string map"));
        }
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            let dtype = dtype_of(name);
            let len = t.data.len() * dtype.width();
            header.insert(
                name.clone(),
                serde_json::json!({
                    "dtype": dtype.name(),
                    "shape": t.shape,
                    "data_offsets": [offset, offset + len],
                }),
            );
            offset += len;
        }
        let mut json = serde_json::to_vec(&header).expect("json");
        // The data section starts 8-byte aligned (the reference writer pads with spaces).
        while !(8 + json.len()).is_multiple_of(8) {
            json.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + json.len() + offset);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for (name, t) in &self.tensors {
            match dtype_of(name) {
                Dtype::F16 => t.data.iter().for_each(|&x| out.extend_from_slice(&f16::from_f32(x).to_le_bytes())),
                Dtype::F32 => t.data.iter().for_each(|&x| out.extend_from_slice(&x.to_le_bytes())),
                Dtype::I8 => t.data.iter().for_each(|&x| out.push(x.round().clamp(-128.0, 127.0) as i8 as u8)),
            }
        }
        out
    }

    /// Parse a safetensors file (F16, BF16, F32 or I8 tensors). `file` names it in errors.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        let view = SafetensorsView::parse(file, &bytes)?;
        let mut w = Weights { tensors: BTreeMap::new(), metadata: view.metadata.clone() };
        for (name, e) in &view.entries {
            w.insert(name.clone(), e.shape.clone(), view.values(name)?);
        }
        Ok(w)
    }
}

/// Where model code reads its tensors from by name: decoded [`Weights`], or a file's
/// [`SafetensorsView`] decoding each tensor when asked (a checkpoint is then never held twice).
pub trait TensorSource {
    /// The tensor's shape, `None` when the source has no tensor of that name.
    fn shape(&self, name: &str) -> Option<&[usize]>;
    /// The tensor's values as f32 (an error when missing).
    fn values(&self, name: &str) -> Result<Vec<f32>>;
    /// A matrix the file holds in a GGUF block format our kernels multiply by (Q8_0, Q4_0,
    /// Q4_1), as those blocks; `None` for a tensor stored as floats (or in another format).
    fn quantized(&self, _name: &str) -> Option<Result<crate::kernels::QMatrix>> {
        None
    }
}

impl TensorSource for Weights {
    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    fn values(&self, name: &str) -> Result<Vec<f32>> {
        self.tensors.get(name).map(|t| t.data.clone()).ok_or_else(|| bad("weights", format!("missing tensor `{name}`")))
    }
}

/// A safetensors file's header over its bytes: every entry's dtype, shape and offsets checked
/// against the file when parsed; values read and decoded to f32 one tensor at a time.
pub struct SafetensorsView<'a> {
    file: String,
    src: &'a dyn ByteSource,
    /// Where the data section starts.
    data_start: usize,
    entries: BTreeMap<String, Entry>,
    pub metadata: BTreeMap<String, String>,
}

struct Entry {
    /// Bytes per value: 2 (F16, BF16 with `bf16`), 4 (F32), 1 (I8).
    width: usize,
    bf16: bool,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

impl<'a> SafetensorsView<'a> {
    pub fn parse(file: &str, src: &'a dyn ByteSource) -> Result<Self> {
        let len = src.len();
        if len < 8 {
            return Err(bad(file, format!("{len} bytes is too short for a safetensors header")));
        }
        let mut n = [0u8; 8];
        src.read_at(0, &mut n);
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n > (len - 8) as u64 {
            return Err(bad(file, format!("header length {n} exceeds the file ({len} bytes) or the limit")));
        }
        let mut json = vec![0; n as usize];
        src.read_at(8, &mut json);
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&json).map_err(|e| bad(file, format!("header JSON: {e}")))?;
        let data_start = 8 + n as usize;
        let data_len = len - data_start;
        let mut view =
            SafetensorsView { file: file.into(), src, data_start, entries: BTreeMap::new(), metadata: BTreeMap::new() };
        for (name, v) in header {
            if name == "__metadata__" {
                view.metadata = serde_json::from_value(v).map_err(|e| bad(file, format!("metadata: {e}")))?;
                continue;
            }
            let dtype = v["dtype"].as_str().ok_or_else(|| bad(file, format!("`{name}`: no dtype")))?;
            let width = match dtype {
                "F16" | "BF16" => 2,
                "F32" => 4,
                "I8" => 1,
                other => return Err(bad(file, format!("`{name}`: unsupported dtype {other}"))),
            };
            let shape: Vec<usize> =
                serde_json::from_value(v["shape"].clone()).map_err(|e| bad(file, format!("`{name}` shape: {e}")))?;
            let [start, end]: [usize; 2] = serde_json::from_value(v["data_offsets"].clone())
                .map_err(|e| bad(file, format!("`{name}` offsets: {e}")))?;
            let count = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad(file, format!("`{name}`: shape overflows")))?;
            if start > end || end > data_len || count.checked_mul(width) != Some(end - start) {
                return Err(bad(
                    file,
                    format!(
                        "`{name}`: offsets {start}..{end} do not hold {count} {dtype} values in {data_len} data bytes"
                    ),
                ));
            }
            view.entries.insert(name, Entry { width, bf16: dtype == "BF16", shape, start, end });
        }
        Ok(view)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

impl TensorSource for SafetensorsView<'_> {
    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Decoded now; a non-finite value is an error.
    fn values(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entries.get(name).ok_or_else(|| bad(&self.file, format!("missing tensor `{name}`")))?;
        let mut raw = vec![0; e.end - e.start];
        self.src.read_at(self.data_start + e.start, &mut raw);
        let values: Vec<f32> = match (e.width, e.bf16) {
            (2, false) => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            (2, true) => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            (1, _) => raw.iter().map(|&b| b as i8 as f32).collect(),
            _ => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        };
        if values.iter().any(|x| !x.is_finite()) {
            return Err(bad(&self.file, format!("`{name}` holds a non-finite value")));
        }
        Ok(values)
    }
}

/// Every float parameter of `module` by its path, as f32 on the host.
pub fn module_weights<M: Module>(module: &M) -> Weights {
    struct Collect {
        path: Vec<String>,
        out: Weights,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            let data = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data");
            self.out.insert(self.path.join("."), shape, data);
        }
    }
    let mut c = Collect { path: Vec::new(), out: Weights::default() };
    module.visit(&mut c);
    c.out
}

/// Replace every float parameter of `module` by the tensor of the same path in `weights`.
/// Missing tensors, wrong shapes and tensors the module does not have are all errors.
pub fn load_module<M: Module>(module: M, weights: &Weights, file: &str) -> Result<M> {
    struct Load<'a> {
        path: Vec<String>,
        weights: &'a Weights,
        used: usize,
        errors: Vec<String>,
    }
    impl ModuleMapper for Load<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.path.join(".");
            let Some(t) = self.weights.tensors.get(&name) else {
                self.errors.push(format!("missing tensor `{name}`"));
                return param;
            };
            self.used += 1;
            param.map(|old| {
                let dims = old.dims();
                if t.shape.as_slice() != dims.as_slice() {
                    self.errors.push(format!("`{name}` has shape {:?}, the model expects {:?}", t.shape, dims));
                    return old;
                }
                let device = old.device();
                let new = Tensor::<D>::from_data(TensorData::new(t.data.clone(), dims), &device);
                if old.is_require_grad() { new.require_grad() } else { new }
            })
        }
    }
    let mut l = Load { path: Vec::new(), weights, used: 0, errors: Vec::new() };
    let module = module.map(&mut l);
    if l.used != weights.tensors.len() && l.errors.is_empty() {
        l.errors.push(format!("{} tensors in the file are not in the model", weights.tensors.len() - l.used));
    }
    if !l.errors.is_empty() {
        return Err(bad(file, l.errors.join("; ")));
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_headers() {
        let mut w = Weights::default();
        w.insert("a.weight", vec![2, 3], vec![1.0, -2.0, 0.5, 3.25, 0.0, 7.0]);
        w.insert("b", vec![1], vec![0.125]);
        w.metadata.insert("k".into(), "v".into());
        for dtype in [Dtype::F16, Dtype::F32] {
            let bytes = w.to_bytes(dtype);
            assert_eq!(Weights::from_bytes("t", &bytes).unwrap(), w);
        }
        // Mixed storage: I8 keeps integers and clamps what does not fit.
        let mut q = w.clone();
        q.insert("q", vec![4], vec![-128.0, 127.0, 3.0, 0.0]);
        let back = Weights::from_bytes("t", &q.to_bytes_as(|n| if n == "q" { Dtype::I8 } else { Dtype::F32 })).unwrap();
        assert_eq!(back, q);
        q.insert("q", vec![2], vec![300.0, -2.6]);
        let back = Weights::from_bytes("t", &q.to_bytes_as(|n| if n == "q" { Dtype::I8 } else { Dtype::F32 })).unwrap();
        assert_eq!(back.tensors["q"].data, vec![127.0, -3.0]);
        let bytes = w.to_bytes(Dtype::F32);
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            assert!(matches!(Weights::from_bytes("t", &bytes[..cut]), Err(Error::Weights { .. })), "cut {cut}");
        }
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Weights::from_bytes("t", &huge).is_err());
        let evil = br#"{"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#;
        let mut f = (evil.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(evil);
        assert!(Weights::from_bytes("t", &f).is_err());
    }
}
