//! Files read a byte range at a time, wherever they are held: the model readers (GGUF and
//! safetensors) and the folders of checkpoints read through [`ByteSource`].

/// A file's bytes, read a range at a time: a slice natively, or a file held elsewhere (a JS
/// `Uint8Array` in the browser, so a checkpoint is never copied whole into wasm memory).
pub trait ByteSource {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `out.len()` bytes from `start`; callers stay within `len()`.
    fn read_at(&self, start: usize, out: &mut [u8]);
}

impl ByteSource for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read_at(&self, start: usize, out: &mut [u8]) {
        out.copy_from_slice(&self[start..start + out.len()]);
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn read_at(&self, start: usize, out: &mut [u8]) {
        out.copy_from_slice(&self[start..start + out.len()]);
    }
}

/// The whole of a source.
pub fn read_all(src: &dyn ByteSource) -> Vec<u8> {
    let mut out = vec![0; src.len()];
    src.read_at(0, &mut out);
    out
}
