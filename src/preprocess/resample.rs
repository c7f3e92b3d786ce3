//! Bicubic resizing of 8-bit RGB images that gives the same bytes as Pillow's
//! `Image.resize(size, Image.BICUBIC)`, which is what `CLIPImageProcessor` calls.
//!
//! Pillow resizes separably: one pass per axis, each output pixel a weighted sum over a window of
//! input pixels whose weights come from the cubic kernel (a = -0.5) stretched by the downscale
//! factor (that stretch is the anti-aliasing). The weights are normalised in double precision,
//! then rounded to fixed point with 22 fractional bits; sums start at one half and are shifted and
//! clamped to 0..=255, and the image between the passes is 8-bit again. Matching each of those
//! steps is what makes the result exact rather than within a few levels.

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

/// For each output pixel along one axis: the first input pixel of its window and the window's
/// fixed-point weights.
struct Coefficients {
    starts: Vec<usize>,
    window: usize,
    /// `window` weights per output pixel; unused tail entries are zero.
    weights: Vec<i32>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = CUBIC_SUPPORT * filter_scale;
        let window = support.ceil() as usize * 2 + 1;
        let mut starts = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * window];
        let mut row = vec![0f64; window];
        for (out, out_weights) in weights.chunks_exact_mut(window).enumerate() {
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
        }
        Self {
            starts,
            window,
            weights,
        }
    }

    fn taps(&self, out: usize) -> (usize, &[i32]) {
        (
            self.starts[out],
            &self.weights[out * self.window..(out + 1) * self.window],
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

fn resize_horizontal(src: &Rgb8, width: usize) -> Rgb8 {
    let coeffs = Coefficients::new(src.width, width);
    let mut data = vec![0u8; width * src.height * 3];
    for (src_row, dst_row) in src
        .data
        .chunks_exact(src.width * 3)
        .zip(data.chunks_exact_mut(width * 3))
    {
        for (x, dst) in dst_row.chunks_exact_mut(3).enumerate() {
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
        width,
        height: src.height,
        data,
    }
}

fn resize_vertical(src: &Rgb8, height: usize) -> Rgb8 {
    let coeffs = Coefficients::new(src.height, height);
    let stride = src.width * 3;
    let mut data = vec![0u8; stride * height];
    let mut sums = vec![0i32; stride];
    for (y, dst_row) in data.chunks_exact_mut(stride).enumerate() {
        let (start, weights) = coeffs.taps(y);
        sums.fill(HALF);
        let rows = src.data[start * stride..].chunks_exact(stride);
        for (src_row, &w) in rows.zip(weights) {
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
        height,
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
    let horizontal = |img: &Rgb8| {
        if img.width == width {
            img.clone()
        } else {
            resize_horizontal(img, width)
        }
    };
    let vertical = |img: &Rgb8| {
        if img.height == height {
            img.clone()
        } else {
            resize_vertical(img, height)
        }
    };
    if vertical_first(src, width, height) {
        horizontal(&vertical(src))
    } else {
        vertical(&horizontal(src))
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
            let c = Coefficients::new(i, o);
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
