//! Bicubic resizing of 8-bit RGB images that gives the same bytes as Pillow's
//! `Image.resize(size, Image.BICUBIC)`, which is what `CLIPImageProcessor` calls.
//!
//! Pillow resizes separably: one pass per axis, each output pixel a weighted sum over a window of
//! input pixels whose weights come from the cubic kernel (a = -0.5) stretched by the downscale
//! factor (that stretch is the anti-aliasing). The weights are normalised in double precision,
//! then rounded to fixed point with 22 fractional bits; sums start at one half and are shifted and
//! clamped to 0..=255, and the image between the passes is 8-bit again. Matching each of those
//! steps is what makes the result exact rather than within a few levels.

use std::ops::Range;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const CUBIC_A: f64 = -0.5;
const CUBIC_SUPPORT: f64 = 2.0;

fn cubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * CUBIC_A
    } else {
        0.0
    }
}

/// For each output pixel of a range along one axis: the first input pixel of its window and the
/// window's fixed-point weights.
struct Coefficients {
    outputs: Range<usize>,
    starts: Vec<usize>,
    /// The input pixels all the windows together read.
    span: Range<usize>,
    window: usize,
    /// `window` weights per output pixel; unused tail entries are zero.
    weights: Vec<i32>,
}

impl Coefficients {
    /// Coefficients of the outputs in `outputs` when `in_size` pixels become `out_size`.
    fn new(in_size: usize, out_size: usize, outputs: Range<usize>) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = CUBIC_SUPPORT * filter_scale;
        let window = support.ceil() as usize * 2 + 1;
        let mut starts = Vec::with_capacity(outputs.len());
        let mut weights = vec![0i32; outputs.len() * window];
        let mut row = vec![0f64; window];
        let (mut span_start, mut span_end) = (usize::MAX, 0);
        for (out, out_weights) in outputs.clone().zip(weights.chunks_exact_mut(window)) {
            let center = (out as f64 + 0.5) * scale;
            // Pillow truncates toward zero here, then clamps.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = end.saturating_sub(first);
            let mut total = 0.0;
            for (i, w) in row.iter_mut().enumerate().take(count) {
                *w = cubic((i as f64 + first as f64 - center + 0.5) / filter_scale);
                total += *w;
            }
            for (w, fixed) in row.iter().zip(out_weights.iter_mut()).take(count) {
                let w = if total != 0.0 { w / total } else { *w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                // Round half away from zero, as Pillow's normalize_coeffs_8bpc does.
                *fixed = if scaled < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                };
            }
            starts.push(first);
            span_start = span_start.min(first);
            span_end = span_end.max(first + count);
        }
        Self {
            outputs,
            starts,
            span: span_start.min(span_end)..span_end,
            window,
            weights,
        }
    }

    /// The window of output pixel `out` (an index into the whole output axis).
    fn taps(&self, out: usize) -> (usize, &[i32]) {
        let i = out - self.outputs.start;
        (
            self.starts[i],
            &self.weights[i * self.window..(i + 1) * self.window],
        )
    }
}

fn clamp8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// An 8-bit image with three interleaved channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    fn crop(&self, cols: Range<usize>, rows: Range<usize>) -> Rgb8 {
        let data = rows
            .clone()
            .flat_map(|y| {
                &self.data[(y * self.width + cols.start) * 3..(y * self.width + cols.end) * 3]
            })
            .copied()
            .collect();
        Rgb8 {
            width: cols.len(),
            height: rows.len(),
            data,
        }
    }
}

/// Columns `cols` of the image resized horizontally to `width`.
fn resize_horizontal(src: &Rgb8, width: usize, cols: Range<usize>) -> Rgb8 {
    if src.width == width {
        return src.crop(cols, 0..src.height);
    }
    let coeffs = Coefficients::new(src.width, width, cols.clone());
    let out_width = cols.len();
    let mut data = vec![0u8; out_width * src.height * 3];
    for (src_row, dst_row) in src
        .data
        .chunks_exact(src.width * 3)
        .zip(data.chunks_exact_mut(out_width * 3))
    {
        for (x, dst) in cols.clone().zip(dst_row.chunks_exact_mut(3)) {
            let (start, weights) = coeffs.taps(x);
            let mut sums = [HALF; 3];
            let pixels = src_row[start * 3..].chunks_exact(3);
            for (pixel, &w) in pixels.zip(weights) {
                for c in 0..3 {
                    sums[c] += i32::from(pixel[c]) * w;
                }
            }
            for c in 0..3 {
                dst[c] = clamp8(sums[c]);
            }
        }
    }
    Rgb8 {
        width: out_width,
        height: src.height,
        data,
    }
}

/// Rows `rows` of an image of `in_height` rows resized vertically to `height`, where `src` holds
/// only the input rows from `first_row` on (at least those the output rows read).
fn resize_vertical(
    src: &Rgb8,
    in_height: usize,
    first_row: usize,
    height: usize,
    rows: Range<usize>,
) -> Rgb8 {
    if in_height == height {
        return src.crop(0..src.width, rows.start - first_row..rows.end - first_row);
    }
    let coeffs = Coefficients::new(in_height, height, rows.clone());
    let stride = src.width * 3;
    let mut data = vec![0u8; stride * rows.len()];
    let mut sums = vec![0i32; stride];
    for (y, dst_row) in rows.clone().zip(data.chunks_exact_mut(stride)) {
        let (start, weights) = coeffs.taps(y);
        sums.fill(HALF);
        let src_rows = src.data[(start - first_row) * stride..].chunks_exact(stride);
        for (src_row, &w) in src_rows.zip(weights) {
            if w == 0 {
                continue;
            }
            for (sum, &v) in sums.iter_mut().zip(src_row) {
                *sum += i32::from(v) * w;
            }
        }
        for (dst, &sum) in dst_row.iter_mut().zip(&sums) {
            *dst = clamp8(sum);
        }
    }
    Rgb8 {
        width: src.width,
        height: rows.len(),
        data,
    }
}

/// Pillow (13) resizes vertically first only when that axis shrinks by clearly more than the
/// other; the order changes the 8-bit intermediate, so it changes the result.
fn vertical_first(src: &Rgb8, width: usize, height: usize) -> bool {
    let dh = src.height as i64 - height as i64;
    let dw = src.width as i64 - width as i64;
    dh > 0 && dh > 2 * dw
}

/// Resizes to `width` x `height` exactly as Pillow's bicubic filter does.
pub fn resize_bicubic(src: &Rgb8, width: usize, height: usize) -> Rgb8 {
    resize_bicubic_region(src, width, height, 0..width, 0..height)
}

/// The region `cols` x `rows` of `resize_bicubic(src, width, height)`, computing only what the
/// region needs: every output pixel depends on its own window alone, so the bytes are the same,
/// and a crop of a huge resize (a 1 x 100,000 picture scaled to 224 wide) costs only the crop.
pub fn resize_bicubic_region(
    src: &Rgb8,
    width: usize,
    height: usize,
    cols: Range<usize>,
    rows: Range<usize>,
) -> Rgb8 {
    assert!(
        cols.end <= width && rows.end <= height,
        "region outside the resized image"
    );
    if vertical_first(src, width, height) {
        let vertical = resize_vertical(src, src.height, 0, height, rows);
        resize_horizontal(&vertical, width, cols)
    } else {
        // Only the input rows that the vertical pass will read need the horizontal pass.
        let needed = if src.height == height {
            rows.clone()
        } else {
            Coefficients::new(src.height, height, rows.clone()).span
        };
        let band = src.crop(0..src.width, needed.clone());
        let horizontal = resize_horizontal(&band, width, cols);
        resize_vertical(&horizontal, src.height, needed.start, height, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: usize, height: usize) -> Rgb8 {
        let data = (0..height)
            .flat_map(|y| {
                (0..width).flat_map(move |x| {
                    [
                        (x * 7 % 256) as u8,
                        (y * 5 % 256) as u8,
                        ((x + y) % 256) as u8,
                    ]
                })
            })
            .collect();
        Rgb8 {
            width,
            height,
            data,
        }
    }

    #[test]
    fn weights_of_every_window_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 7), (7, 100), (1000, 224), (224, 224), (3, 1)] {
            let c = Coefficients::new(i, o, 0..o);
            for out in 0..o {
                let (_, w) = c.taps(out);
                let total: i64 = w.iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (total - (1 << PRECISION_BITS)).abs() <= c.window as i64,
                    "{i}->{o} at {out}"
                );
            }
        }
    }

    #[test]
    fn a_region_equals_the_same_crop_of_the_whole_resize() {
        let img = gradient(97, 61);
        for (w, h) in [(40, 30), (200, 20), (20, 200), (97, 61), (97, 10)] {
            let whole = resize_bicubic(&img, w, h);
            let (cols, rows) = (w / 4..w - w / 5, h / 3..h - h / 6);
            let region = resize_bicubic_region(&img, w, h, cols.clone(), rows.clone());
            assert_eq!(region, whole.crop(cols, rows), "{w}x{h}");
        }
    }

    #[test]
    fn a_crop_of_an_extreme_upscale_costs_only_the_crop() {
        let thin = gradient(1, 100_000);
        let (w, h) = (224, 22_400_000);
        let region = resize_bicubic_region(&thin, w, h, 0..224, h / 2 - 112..h / 2 + 112);
        assert_eq!((region.width, region.height), (224, 224));
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = gradient(33, 17);
        assert_eq!(resize_bicubic(&img, 33, 17), img);
    }

    #[test]
    fn a_flat_image_stays_flat_at_any_scale() {
        let img = Rgb8 {
            width: 40,
            height: 30,
            data: vec![77; 40 * 30 * 3],
        };
        for (w, h) in [(7, 5), (80, 60), (40, 3), (1, 1)] {
            let out = resize_bicubic(&img, w, h);
            assert!(out.data.iter().all(|&v| v == 77), "{w}x{h}");
        }
    }
}
