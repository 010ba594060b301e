//! GGUF reader working on a byte slice (native: the file's bytes; browser: a fetched buffer), or
//! reading only the header of a file held elsewhere ([`GgufIndex::read`]).
//!
//! Format reference: ggml's `docs/gguf.md` (header, key/value metadata, tensor infos, aligned data).
//! Every count, offset and size read from the file is checked against the bytes actually present
//! before it is used, so a truncated or lying file gives a [`GgufError`], never a panic, and no
//! allocation is larger than the input.

pub mod quant;

use std::collections::HashMap;

use crate::bytes::ByteSource;
use crate::error::GgufError;
pub use quant::GgmlType;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// Integer view of any integer-typed value (GGUF writers disagree on widths).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (a matrix row's length).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Size in bytes of the tensor's data.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A GGUF file's header: metadata and where each tensor lies, every tensor checked to fit in
/// the file.
#[derive(Debug)]
pub struct GgufIndex {
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    /// Metadata keys in file order (for dumps).
    pub keys: Vec<String>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

/// A parsed GGUF file borrowing its tensor data from the input bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    index: GgufIndex,
    bytes: &'a [u8],
}

impl std::ops::Deref for Gguf<'_> {
    type Target = GgufIndex;
    fn deref(&self) -> &GgufIndex {
        &self.index
    }
}

/// Upper bounds on header counts. Real files stay far below these; they only cap work on hostile input.
const MAX_TENSORS: u64 = 1 << 20;
const MAX_KV: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_DEPTH: u32 = 4;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() as u64 {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.bytes.len() as u64,
            });
        }
        let n = n as usize;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let offset = self.pos as u64;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::BadUtf8 { what: what.to_string(), offset })
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => Value::Bool(self.array::<1>(key)?[0] != 0),
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::TooMany {
                        what: format!("array nesting in `{key}`"),
                        count: depth as u64 + 1,
                        limit: MAX_ARRAY_DEPTH as u64,
                    });
                }
                let elem_ty = self.u32(key)?;
                let count = self.u64(key)?;
                // Every element takes at least one byte, so a count above the remaining bytes is a lie:
                // refuse it before allocating.
                let min_size = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(GgufError::BadValueType(t)),
                };
                if count.saturating_mul(min_size) > self.remaining() as u64 {
                    return Err(GgufError::Truncated {
                        what: format!("array `{key}` of {count} elements"),
                        offset: self.pos as u64,
                        needed: count.saturating_mul(min_size),
                        len: self.bytes.len() as u64,
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            t => return Err(GgufError::BadValueType(t)),
        })
    }
}

impl<'a> Gguf<'a> {
    /// Parse the header, metadata and tensor table; tensor data stays in `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        Ok(Gguf { index: GgufIndex::parse_prefix(bytes, bytes.len() as u64)?, bytes })
    }

    /// The raw (possibly quantized) bytes of a tensor; bounds were checked in [`Gguf::parse`].
    pub fn tensor_data(&self, info: &TensorInfo) -> &'a [u8] {
        &self.bytes[info.offset as usize..(info.offset + info.size) as usize]
    }
}

/// Header bytes read first by [`GgufIndex::read`] (an SD checkpoint's ~1100 tensors take ~100 KB).
const FIRST_READ: u64 = 1 << 20;

impl GgufIndex {
    /// The header of a file held elsewhere (a JS `Uint8Array`): its first bytes are read, more
    /// when the header runs past them, never more than the file.
    pub fn read(src: &dyn ByteSource) -> Result<Self, GgufError> {
        let len = src.len() as u64;
        let mut want = FIRST_READ.min(len);
        loop {
            let mut prefix = vec![0; want as usize];
            src.read_at(0, &mut prefix);
            match Self::parse_prefix(&prefix, len) {
                // The header runs past the bytes read, and the file has what it needs.
                Err(GgufError::Truncated { offset, needed, .. })
                    if want < len && offset.saturating_add(needed) <= len =>
                {
                    want = (2 * want).max(offset + needed).min(len);
                }
                other => return other,
            }
        }
    }

    /// Parse a header from `bytes`, the start of a file of `file_len` bytes (tensor data is
    /// checked to fit in the file, not in `bytes`).
    pub fn parse_prefix(bytes: &[u8], file_len: u64) -> Result<Self, GgufError> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = c.array("magic")?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic(magic));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > MAX_TENSORS {
            return Err(GgufError::TooMany { what: "tensors".into(), count: n_tensors, limit: MAX_TENSORS });
        }
        if n_kv > MAX_KV {
            return Err(GgufError::TooMany { what: "metadata keys".into(), count: n_kv, limit: MAX_KV });
        }
        let mut metadata = HashMap::new();
        let mut keys = Vec::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32(&key)?;
            let value = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::DuplicateKey(key));
            }
            keys.push(key);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => {
                let a = v.as_u64().unwrap_or(0);
                if a == 0 || !a.is_power_of_two() || a > 65536 {
                    return Err(GgufError::BadAlignment(a));
                }
                a
            }
        };
        let mut raw = Vec::new();
        let mut names = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::BadShape {
                    tensor: name,
                    problem: format!("{n_dims} dimensions (1..=4 supported)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&name)?);
            }
            let ty = c.u32(&name)?;
            let ggml_type = GgmlType::from_u32(ty)
                .ok_or_else(|| GgufError::UnknownTensorType { tensor: name.clone(), ggml_type: ty })?;
            let offset = c.u64(&name)?;
            if !names.insert(name.clone()) {
                return Err(GgufError::DuplicateTensor(name));
            }
            raw.push((name, dims, ggml_type, offset));
        }
        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let len = file_len;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ggml_type, rel) in raw {
            if dims.contains(&0) {
                return Err(GgufError::BadShape { tensor: name, problem: format!("empty dimension in {dims:?}") });
            }
            let mut n: u64 = 1;
            for &d in &dims {
                n = n.checked_mul(d).filter(|&n| n <= len.saturating_mul(8)).ok_or_else(|| GgufError::BadShape {
                    tensor: name.clone(),
                    problem: format!("dimensions {dims:?} overflow or exceed the file"),
                })?;
            }
            let block = ggml_type.block_size() as u64;
            if dims[0] % block != 0 {
                return Err(GgufError::BadShape {
                    tensor: name,
                    problem: format!(
                        "row length {} is not a multiple of the {ggml_type:?} block size {block}",
                        dims[0]
                    ),
                });
            }
            let size = n / block * ggml_type.type_size() as u64;
            if rel % alignment != 0 {
                return Err(GgufError::BadShape {
                    tensor: name,
                    problem: format!("data offset {rel} not aligned to {alignment}"),
                });
            }
            let offset = data_offset.saturating_add(rel);
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(GgufError::Truncated { what: format!("tensor `{name}` data"), offset, needed: size, len });
            }
            tensors.push(TensorInfo { name, dims, ggml_type, offset, size });
        }
        Ok(GgufIndex { version, metadata, keys, tensors, alignment, data_offset })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}
