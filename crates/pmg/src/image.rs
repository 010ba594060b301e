//! RGBA images: PNG in and out, and the model's pixel convention.
//!
//! Models see 4 channels in [-1, 1] with **premultiplied** colour (`rgb * alpha`), so every
//! transparent pixel is the same value whatever colour the PNG stored there; `from_model` undoes
//! the premultiplication.

use crate::error::{Error, Result};

/// An 8-bit RGBA image, row-major, `rgba.len() == width * height * 4`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

impl Image {
    pub fn decode_png(bytes: &[u8]) -> Result<Image> {
        let err = |e: &dyn std::fmt::Display| Error::Image(format!("PNG: {e}"));
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8() | png::Transformations::ALPHA);
        let mut reader = decoder.read_info().map_err(|e| err(&e))?;
        let (w, h) = (reader.info().width as usize, reader.info().height as usize);
        if w == 0 || h == 0 || w > 4096 || h > 4096 {
            return Err(Error::Image(format!("PNG of {w}x{h} is outside 1..4096")));
        }
        let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| err(&"image too large"))?];
        let info = reader.next_frame(&mut buf).map_err(|e| err(&e))?;
        let data = &buf[..info.buffer_size()];
        let rgba = match info.color_type {
            png::ColorType::Rgba => data.to_vec(),
            png::ColorType::GrayscaleAlpha => data.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
            other => return Err(Error::Image(format!("PNG colour type {other:?} after expansion"))),
        };
        Ok(Image { width: w, height: h, rgba })
    }

    pub fn encode_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().expect("in-memory PNG header");
        w.write_image_data(&self.rgba).expect("in-memory PNG data");
        drop(w);
        out
    }

    /// Channel-major `[4, h, w]` values in [-1, 1], colour premultiplied by alpha.
    pub fn to_model(&self) -> Vec<f32> {
        let n = self.width * self.height;
        let mut out = vec![0.0; 4 * n];
        for (i, p) in self.rgba.chunks_exact(4).enumerate() {
            let a = p[3] as f32 / 255.0;
            for c in 0..3 {
                out[c * n + i] = (p[c] as f32 / 255.0) * a * 2.0 - 1.0;
            }
            out[3 * n + i] = a * 2.0 - 1.0;
        }
        out
    }

    /// [`Image::to_model`] of this image scaled to `size` x `size` (a site's catalog picture of any
    /// size): each output pixel is the area average of the premultiplied input pixels it covers;
    /// a non-square image is stretched.
    pub fn to_model_resized(&self, size: usize) -> Vec<f32> {
        let src = self.to_model();
        if self.width == size && self.height == size {
            return src;
        }
        let (w, h) = (self.width, self.height);
        let (wx, wy) = (area_weights(w, size), area_weights(h, size));
        let mut out = vec![0.0; 4 * size * size];
        let mut row = vec![0.0f32; size];
        for c in 0..4 {
            let plane = &src[c * w * h..][..w * h];
            for (oy, ys) in wy.iter().enumerate() {
                row.fill(0.0);
                for &(y, fy) in ys {
                    let line = &plane[y * w..][..w];
                    for (ox, xs) in wx.iter().enumerate() {
                        row[ox] += fy * xs.iter().map(|&(x, fx)| fx * line[x]).sum::<f32>();
                    }
                }
                out[(c * size + oy) * size..][..size].copy_from_slice(&row);
            }
        }
        out
    }

    /// Inverse of [`Image::to_model`] (values are clamped; colour is un-premultiplied).
    pub fn from_model(x: &[f32], width: usize, height: usize) -> Image {
        let n = width * height;
        assert_eq!(x.len(), 4 * n, "model image size");
        let unit = |v: f32| ((v + 1.0) * 0.5).clamp(0.0, 1.0);
        let mut rgba = vec![0u8; 4 * n];
        for i in 0..n {
            let a = unit(x[3 * n + i]);
            for c in 0..3 {
                let v = if a > 1.0 / 255.0 { (unit(x[c * n + i]) / a).min(1.0) } else { 0.0 };
                rgba[4 * i + c] = (v * 255.0).round() as u8;
            }
            rgba[4 * i + 3] = (a * 255.0).round() as u8;
        }
        Image { width, height, rgba }
    }

    /// The image drawn over a solid background (for grids and previews).
    pub fn over(&self, bg: [u8; 3]) -> Image {
        let mut rgba = self.rgba.clone();
        for p in rgba.chunks_exact_mut(4) {
            let a = p[3] as u32;
            for c in 0..3 {
                p[c] = ((p[c] as u32 * a + bg[c] as u32 * (255 - a) + 127) / 255) as u8;
            }
            p[3] = 255;
        }
        Image { width: self.width, height: self.height, rgba }
    }

    /// Tile images into a grid of `cols` columns with `gap` background pixels between cells.
    pub fn grid(cells: &[Image], cols: usize, gap: usize, bg: [u8; 3]) -> Image {
        let (cw, ch) = cells.first().map(|c| (c.width, c.height)).unwrap_or((1, 1));
        let rows = cells.len().div_ceil(cols.max(1));
        let width = cols * cw + (cols + 1) * gap;
        let height = rows * ch + (rows + 1) * gap;
        let mut rgba: Vec<u8> = std::iter::repeat_n([bg[0], bg[1], bg[2], 255], width * height).flatten().collect();
        for (k, cell) in cells.iter().enumerate() {
            let cell = cell.over(bg);
            let (x0, y0) = (gap + (k % cols) * (cw + gap), gap + (k / cols) * (ch + gap));
            for y in 0..ch.min(cell.height) {
                let src = &cell.rgba[y * cell.width * 4..][..cw.min(cell.width) * 4];
                rgba[((y0 + y) * width + x0) * 4..][..src.len()].copy_from_slice(src);
            }
        }
        Image { width, height, rgba }
    }
}

/// For each of `m` output cells over `n` input cells: the input cells it covers and the fraction
/// of the output cell each one fills (the fractions sum to 1).
fn area_weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|j| {
            let (a, b) = (j as f64 * scale, (j + 1) as f64 * scale);
            (a.floor() as usize..(b.ceil() as usize).min(n))
                .filter_map(|i| {
                    let cover = b.min(i as f64 + 1.0) - a.max(i as f64);
                    (cover > 0.0).then(|| (i, (cover / scale) as f32))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_model_round_trip() {
        let mut rgba = Vec::new();
        for i in 0..16u8 {
            rgba.extend_from_slice(&[i * 16, 255 - i * 16, 7, if i % 4 == 0 { 0 } else { 255 }]);
        }
        let img = Image { width: 4, height: 4, rgba };
        let back = Image::decode_png(&img.encode_png()).unwrap();
        assert_eq!(back, img);
        let m = Image::from_model(&img.to_model(), 4, 4);
        for (a, b) in m.rgba.chunks_exact(4).zip(img.rgba.chunks_exact(4)) {
            assert_eq!(a[3], b[3]);
            if b[3] == 255 {
                assert_eq!(a, b);
            }
        }
        assert!(Image::decode_png(b"\x89PNG\r\n\x1a\nnot a png").is_err());
    }

    #[test]
    fn resizing_averages_areas() {
        // 2x2 opaque pixels (black, white / white, black) averaged to one grey pixel...
        let img = Image { width: 2, height: 2, rgba: [[0, 0, 0, 255], [255; 4], [255; 4], [0, 0, 0, 255]].concat() };
        let one = img.to_model_resized(1);
        assert_eq!(one, vec![0.0, 0.0, 0.0, 1.0]);
        // ...scaled up, every output pixel is the input pixel it lies in.
        let four = img.to_model_resized(4);
        assert_eq!(&four[..4], &[-1.0, -1.0, 1.0, 1.0]);
        assert_eq!(&four[8..12], &[1.0, 1.0, -1.0, -1.0]);
        // The same size is the plain model input; 3 -> 2 splits the middle pixel.
        assert_eq!(img.to_model_resized(2), img.to_model());
        assert_eq!(
            area_weights(3, 2),
            vec![vec![(0, 2.0 / 3.0), (1, 1.0 / 3.0)], vec![(1, 1.0 / 3.0), (2, 2.0 / 3.0)]]
        );
    }
}
