//! Strips: a region of a decoded photo resized to a fixed height, normalised and padded; what
//! the reader reads.
//!
//! The exact recipe, which `onnx/read.py` reimplements in numpy:
//! 1. Decode to RGB floats in [0, 1] (8-bit values / 255).
//! 2. Crop: [`Protocol::Full`] keeps the whole image; [`Protocol::Crop`] takes the union of the
//!    digit boxes, grows it by 30 % in width and height around its centre, and clamps it to the
//!    image (pixel bounds: floor of the left/top, ceil of the right/bottom).
//! 3. Resize to height [`HEIGHT`] and width `round(w · HEIGHT · stretch / h)` clamped to
//!    [1, [`MAX_WIDTH`]] with a separable antialiased triangle filter (PIL's `BILINEAR`: support
//!    `max(scale, 1)`, weights normalised per output pixel). `stretch` is the model's
//!    ([`Geometry::stretch`], metadata `housenum.stretch`; 1 keeps the aspect ratio).
//! 4. Normalise: subtract the strip's mean over all channels and pixels, divide by
//!    `max(std, 0.01)`.
//! 5. If narrower than [`MIN_WIDTH`], pad with zeros, `(MIN_WIDTH - w) / 2` columns on the left and
//!    the rest on the right.

use std::path::{Path, PathBuf};

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::error::Result;
use crate::read::decode::load_image;
use crate::read::region::{protocol_region, protocol_regions, DigitBox, Protocol, Region};

/// Height of every strip, pixels.
pub const HEIGHT: usize = 32;
/// Strips narrower than this are padded (must be ≥ the window width).
pub const MIN_WIDTH: usize = 32;
/// Strips wider than this are squeezed to it.
pub const MAX_WIDTH: usize = 1024;

/// The horizontal stretches a model may use ([`Geometry::stretch`]); the reader refuses a
/// model whose metadata says otherwise.
pub const STRETCH_RANGE: std::ops::RangeInclusive<f32> = 0.25..=8.0;

/// How a model's input strips are laid out: the horizontal stretch of the resize (step 3 of
/// the recipe) and the zero columns the model itself adds on each side
/// ([`crate::engine::crnn::ModelConfig`]; read from an exported model's metadata by
/// [`crate::read::reader::Reader::geometry`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Horizontal scale of the strip relative to the aspect-preserving resize: more time steps
    /// per digit when above 1.
    pub stretch: f32,
    /// Zero columns the model adds on each side of the strip before its windows.
    pub pad: usize,
    /// Width of the model's windows in pixels ([`crate::read::window::WINDOW`] unless the
    /// reader has residual blocks); their stride is [`crate::read::window::STRIDE`].
    pub window: usize,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            stretch: 1.0,
            pad: 0,
            window: crate::read::window::WINDOW,
        }
    }
}

/// A preprocessed strip: `data` is `[3, HEIGHT, width]`, channel-major, normalised values
/// (zero mean, unit variance before padding; padding is 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Strip {
    /// Width in pixels (≥ [`MIN_WIDTH`]).
    pub width: usize,
    /// `[3, HEIGHT, width]` values.
    pub data: Vec<f32>,
}

/// The strips (stretched by `stretch`) of every region `protocol` reads in `img`, with their
/// regions.
pub fn protocol_strips(
    img: &Rgb32FImage,
    protocol: Protocol,
    boxes: &[DigitBox],
    stretch: f32,
) -> Vec<(Region, Strip)> {
    protocol_regions(protocol, img.dimensions(), boxes)
        .into_iter()
        .map(|r| (r, strip_from_region(img, r, stretch)))
        .collect()
}

/// Resampling weights of the antialiased triangle filter for one axis: for each output pixel,
/// the first input index and the normalised weights that follow it.
pub fn triangle_weights(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    (0..out_size)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
            let xmax = (((center + support + 0.5).floor()) as usize).min(in_size);
            let mut w: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let d = ((x as f64 - center + 0.5) / filterscale).abs();
                    (1.0 - d).max(0.0)
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (xmin, w.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Resize `region` of `img` to `out_w × out_h` with [`triangle_weights`], horizontal pass first.
///
/// # Shapes
/// Returns `[3, out_h, out_w]` channel-major values in the image's range.
pub fn resize_region(img: &Rgb32FImage, region: Region, out_w: usize, out_h: usize) -> Vec<f32> {
    channel_major(&resize_rows(img, region, out_w, out_h))
}

/// Interleaved pixels to channel-major planes.
///
/// # Shapes
/// `rows`: `[n, 3]` → `[3, n]`.
fn channel_major(rows: &[f32]) -> Vec<f32> {
    let n = rows.len() / 3;
    let mut out = vec![0f32; rows.len()];
    for (i, px) in rows.chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * n + i] = v;
        }
    }
    out
}

/// [`resize_region`] with the output interleaved like an image's pixels.
///
/// # Shapes
/// Returns `[out_h, out_w, 3]`.
pub fn resize_rows(img: &Rgb32FImage, region: Region, out_w: usize, out_h: usize) -> Vec<f32> {
    let (rw, rh) = (region.width() as usize, region.height() as usize);
    let wx = triangle_weights(rw, out_w);
    let src = img.as_raw();
    let stride = img.width() as usize * 3;
    // Horizontal pass: [rh, out_w, 3].
    let mut tmp = vec![0f32; rh * out_w * 3];
    tmp.par_chunks_mut(out_w * 3)
        .with_min_len(min_rows(taps(&wx)))
        .enumerate()
        .for_each(|(y, dst)| {
            let row = &src[(region.y0 as usize + y) * stride..];
            for (ox, (start, ws)) in wx.iter().enumerate() {
                let mut acc = [0f32; 3];
                for (k, &w) in ws.iter().enumerate() {
                    let p = (region.x0 as usize + start + k) * 3;
                    acc[0] += w * row[p];
                    acc[1] += w * row[p + 1];
                    acc[2] += w * row[p + 2];
                }
                dst[ox * 3..][..3].copy_from_slice(&acc);
            }
        });
    vertical_pass(&tmp, rh, out_w, out_h)
}

/// [`resize_region`] of the whole of `img` framed in a margin of `margin = (mx, my)` pixels on
/// each side, filled with `fill`: the canvas `(w + 2·mx) × (h + 2·my)` resized to `out_w ×
/// out_h`, without making it (a phone photo's canvas would take hundreds of megabytes).
///
/// # Shapes
/// Returns `[3, out_h, out_w]` channel-major values in the image's range.
pub fn resize_in_margin(
    img: &Rgb32FImage,
    margin: (u32, u32),
    fill: [f32; 3],
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (mx, my) = (margin.0 as usize, margin.1 as usize);
    let (cw, ch) = (w + 2 * mx, h + 2 * my);
    let wx = triangle_weights(cw, out_w);
    let src = img.as_raw();
    // Horizontal pass: [ch, out_w, 3]; a canvas row outside the photo is `fill` throughout.
    let mut tmp = vec![0f32; ch * out_w * 3];
    tmp.par_chunks_mut(out_w * 3)
        .with_min_len(min_rows(taps(&wx)))
        .enumerate()
        .for_each(|(y, dst)| {
            let row = (my..my + h)
                .contains(&y)
                .then(|| &src[(y - my) * w * 3..][..w * 3]);
            for (ox, (start, ws)) in wx.iter().enumerate() {
                let mut acc = [0f32; 3];
                for (k, &wt) in ws.iter().enumerate() {
                    let x = start + k;
                    let px = match row {
                        Some(r) if (mx..mx + w).contains(&x) => &r[(x - mx) * 3..][..3],
                        _ => &fill[..],
                    };
                    acc[0] += wt * px[0];
                    acc[1] += wt * px[1];
                    acc[2] += wt * px[2];
                }
                dst[ox * 3..][..3].copy_from_slice(&acc);
            }
        });
    channel_major(&vertical_pass(&tmp, ch, out_w, out_h))
}

/// Rows per rayon task in the resizing passes: large images (a phone photo resized for the
/// localiser or a detector level) are spread over rayon's threads, small ones stay on one (about
/// 64 k multiply-adds per task). The sums are the same either way.
fn min_rows(row_work: usize) -> usize {
    (1 << 16) / row_work.max(1) + 1
}

/// Taps of all outputs of one axis's [`triangle_weights`].
fn taps(w: &[(usize, Vec<f32>)]) -> usize {
    w.iter().map(|(_, ws)| ws.len()).sum()
}

/// The vertical pass of the resizing functions: `tmp` rows resized to `out_h`.
///
/// # Shapes
/// `tmp`: `[in_h, out_w, 3]` → `[out_h, out_w, 3]`.
fn vertical_pass(tmp: &[f32], in_h: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    let wy = triangle_weights(in_h, out_h);
    let mut rows = vec![0f32; out_h * out_w * 3];
    rows.par_chunks_mut(out_w * 3)
        .with_min_len(min_rows(out_w * taps(&wy) / out_h.max(1)))
        .zip(wy.par_iter())
        .for_each(|(dst, (start, ws))| {
            for ox in 0..out_w {
                let mut acc = [0f32; 3];
                for (k, &w) in ws.iter().enumerate() {
                    let p = ((start + k) * out_w + ox) * 3;
                    acc[0] += w * tmp[p];
                    acc[1] += w * tmp[p + 1];
                    acc[2] += w * tmp[p + 2];
                }
                dst[ox * 3..][..3].copy_from_slice(&acc);
            }
        });
    rows
}

/// The mean colour of the photo's border: its first and last rows and columns, each pixel
/// once (every pixel of a photo 1 or 2 pixels wide or high).
pub fn border_mean(img: &Rgb32FImage) -> [f32; 3] {
    let (w, h) = img.dimensions();
    let mut sum = [0f64; 3];
    let mut n = 0usize;
    let mut add = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        (0..3).for_each(|c| sum[c] += p[c] as f64);
        n += 1;
    };
    for x in 0..w {
        add(x, 0);
        if h > 1 {
            add(x, h - 1);
        }
    }
    for y in 1..h.saturating_sub(1) {
        add(0, y);
        if w > 1 {
            add(w - 1, y);
        }
    }
    sum.map(|s| (s / n.max(1) as f64) as f32)
}

/// Output width for a region of `w × h` pixels scaled to [`HEIGHT`] and stretched
/// horizontally by `stretch`.
pub fn target_width(w: u32, h: u32, stretch: f32) -> usize {
    let raw = (w as f64 * HEIGHT as f64 * stretch as f64 / h as f64).round() as usize;
    raw.clamp(1, MAX_WIDTH)
}

/// Normalise `[3, HEIGHT, w]` values in place to zero mean and unit variance (std floored at 0.01).
pub fn normalize(data: &mut [f32]) {
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt().max(0.01);
    data.iter_mut()
        .for_each(|v| *v = ((*v as f64 - mean) / std) as f32);
}

/// Pad a `[3, HEIGHT, w]` strip with zero columns to at least [`MIN_WIDTH`] (centred).
pub fn pad_to_min_width(data: Vec<f32>, width: usize) -> Strip {
    if width >= MIN_WIDTH {
        return Strip { width, data };
    }
    let left = (MIN_WIDTH - width) / 2;
    let mut out = vec![0f32; 3 * HEIGHT * MIN_WIDTH];
    for row in 0..3 * HEIGHT {
        out[row * MIN_WIDTH + left..][..width].copy_from_slice(&data[row * width..][..width]);
    }
    Strip {
        width: MIN_WIDTH,
        data: out,
    }
}

/// Steps 3–5 of the recipe on one region of a decoded image.
pub fn strip_from_region(img: &Rgb32FImage, region: Region, stretch: f32) -> Strip {
    let w = target_width(region.width(), region.height(), stretch);
    let mut data = resize_region(img, region, w, HEIGHT);
    normalize(&mut data);
    pad_to_min_width(data, w)
}

/// The rows of `region` in `img` that hold digits stacked one above the next, found from its
/// row profile: each row's mean horizontal gradient (digits' strokes), smoothed over 3 rows;
/// runs of rows over a quarter of the peak are digits, runs closer than 2 rows merge, and runs
/// shorter than a third of the region's width are dropped. Returns each digit's rows
/// `[start, end)` in image coordinates, top to bottom.
pub fn stacked_rows(img: &Rgb32FImage, region: Region) -> Vec<(u32, u32)> {
    let (w, h) = (region.width(), region.height());
    if w < 2 || h < 2 {
        return Vec::new();
    }
    let lum = |x: u32, y: u32| {
        let p = img.get_pixel(region.x0 + x, region.y0 + y).0;
        0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
    };
    let raw: Vec<f64> = (0..h)
        .map(|y| {
            (1..w)
                .map(|x| (lum(x, y) - lum(x - 1, y)).abs())
                .sum::<f64>()
                / w as f64
        })
        .collect();
    let energy: Vec<f64> = (0..h as usize)
        .map(|y| {
            let (a, b) = (y.saturating_sub(1), (y + 2).min(h as usize));
            raw[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect();
    let peak = energy.iter().cloned().fold(0f64, f64::max);
    if peak <= 0.0 {
        return Vec::new();
    }
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (y, &e) in energy.iter().enumerate() {
        let y = y as u32;
        if e <= 0.25 * peak {
            continue;
        }
        match runs.last_mut() {
            Some(r) if y <= r.1 + 2 => r.1 = y + 1,
            _ => runs.push((y, y + 1)),
        }
    }
    let least = (w / 3).max(2);
    runs.into_iter()
        .filter(|r| r.1 - r.0 >= least)
        .map(|(a, b)| (region.y0 + a, region.y0 + b))
        .collect()
}

/// The strip of a number whose digits are stacked one above the next: each of `rows` of
/// `region` (e.g. [`stacked_rows`] or [`equal_rows`]), grown by a sixth of its height within
/// `region`, resized to [`HEIGHT`] high and its own [`target_width`], the rows laid side by side
/// left to right, normalised together ([`normalize`]) and padded to [`MIN_WIDTH`].
///
/// # Shapes
/// `n` rows → a strip `[3, HEIGHT, Σ wᵢ]` (at most [`MAX_WIDTH`] wide: later rows are dropped).
pub fn unstacked_strip(
    img: &Rgb32FImage,
    region: Region,
    rows: &[(u32, u32)],
    stretch: f32,
) -> Strip {
    let mut parts: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut total = 0;
    for &(a, b) in rows {
        let grow = (b - a) / 6;
        let band = Region {
            x0: region.x0,
            y0: a.saturating_sub(grow).max(region.y0),
            x1: region.x1,
            y1: (b + grow).min(region.y1).max(a + 1),
        };
        let w = target_width(band.width(), band.height(), stretch);
        if total + w > MAX_WIDTH {
            break;
        }
        total += w;
        parts.push((w, resize_region(img, band, w, HEIGHT)));
    }
    let total = total.max(1);
    let mut data = vec![0f32; 3 * HEIGHT * total];
    let mut x = 0;
    for (w, part) in &parts {
        for row in 0..3 * HEIGHT {
            data[row * total + x..][..*w].copy_from_slice(&part[row * w..][..*w]);
        }
        x += w;
    }
    normalize(&mut data);
    pad_to_min_width(data, total)
}

/// `region`'s rows cut into `n` bands of equal height, `[start, end)` top to bottom.
pub fn equal_rows(region: Region, n: usize) -> Vec<(u32, u32)> {
    let (h, n) = (region.height(), n.max(1) as u32);
    (0..n)
        .map(|i| (region.y0 + i * h / n, region.y0 + (i + 1) * h / n))
        .collect()
}

/// How columns of a model's input map back to the image: the strip made from `region`
/// (resized to [`target_width`] with the geometry's stretch, centred in [`MIN_WIDTH`] when
/// narrower) with [`Geometry::pad`] more zero columns on each side added by the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StripColumns {
    x0: f64,
    left: f64,
    width: f64,
    scale: f64,
}

impl StripColumns {
    /// The mapping for a strip of `region` read by a model of geometry `g`.
    pub fn new(region: Region, g: Geometry) -> StripColumns {
        let pad = g.pad;
        let w = target_width(region.width(), region.height(), g.stretch);
        let centring = if w < MIN_WIDTH {
            (MIN_WIDTH - w) / 2
        } else {
            0
        };
        StripColumns {
            x0: region.x0 as f64,
            left: (pad + centring) as f64,
            width: w as f64,
            scale: region.width() as f64 / w as f64,
        }
    }

    /// Image column of model-input column `col`.
    pub fn to_image(&self, col: f64) -> f64 {
        self.x0 + (col - self.left) * self.scale
    }

    /// [`StripColumns::to_image`], clamped to the region (padding maps to its edges).
    pub fn to_image_clamped(&self, col: f64) -> f64 {
        self.x0 + (col - self.left).clamp(0.0, self.width) * self.scale
    }
}

/// The whole recipe for one image file (the first region of `protocol`).
pub fn preprocess_file(
    path: &Path,
    protocol: Protocol,
    boxes: &[DigitBox],
    stretch: f32,
) -> Result<Strip> {
    let img = load_image(path)?;
    let region = protocol_region(protocol, img.dimensions(), boxes);
    Ok(strip_from_region(&img, region, stretch))
}

/// The whole recipe for one image file, every region of `protocol` with its strip (one for
/// crop and full, several for search).
pub fn preprocess_file_all(
    path: &Path,
    protocol: Protocol,
    boxes: &[DigitBox],
    stretch: f32,
) -> Result<Vec<(Region, Strip)>> {
    let img = load_image(path)?;
    Ok(protocol_strips(&img, protocol, boxes, stretch))
}

/// One item of a preprocessing batch: the file and, for [`Protocol::Crop`], its digit boxes.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// Image path.
    pub path: PathBuf,
    /// Digit boxes (may be empty for [`Protocol::Full`]).
    pub boxes: Vec<DigitBox>,
}

/// Preprocess many files in parallel (rayon); results are in input order, one per item, each
/// an error naming its file or a strip. `progress` is advanced once per item.
pub fn preprocess_batch(
    items: &[BatchItem],
    protocol: Protocol,
    stretch: f32,
    progress: &indicatif::ProgressBar,
) -> Vec<Result<Strip>> {
    items
        .par_iter()
        .map(|it| {
            let r = preprocess_file(&it.path, protocol, &it.boxes, stretch);
            progress.inc(1);
            r
        })
        .collect()
}

/// The serial twin of [`preprocess_batch`], kept as the benchmark baseline.
pub fn preprocess_batch_serial(
    items: &[BatchItem],
    protocol: Protocol,
    stretch: f32,
) -> Vec<Result<Strip>> {
    items
        .iter()
        .map(|it| preprocess_file(&it.path, protocol, &it.boxes, stretch))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white `w × h` image with digit-like blocks (vertical black strokes every 4 px) on the
    /// given rows.
    fn blocks(w: u32, h: u32, rows: &[(u32, u32)]) -> Rgb32FImage {
        Rgb32FImage::from_fn(w, h, |x, y| {
            let ink = rows.iter().any(|&(a, b)| y >= a && y < b) && x % 4 < 2 && x > 2 && x < w - 3;
            image::Rgb([if ink { 0.0 } else { 1.0 }; 3])
        })
    }

    /// `img` framed in `(mx, my)` pixels of `fill` on each side, made.
    fn canvas(img: &Rgb32FImage, (mx, my): (u32, u32), fill: [f32; 3]) -> Rgb32FImage {
        let (w, h) = img.dimensions();
        Rgb32FImage::from_fn(w + 2 * mx, h + 2 * my, |x, y| {
            if (mx..mx + w).contains(&x) && (my..my + h).contains(&y) {
                *img.get_pixel(x - mx, y - my)
            } else {
                image::Rgb(fill)
            }
        })
    }

    #[test]
    fn resizing_in_a_margin_is_resizing_the_canvas_table() {
        let img = Rgb32FImage::from_fn(37, 13, |x, y| {
            image::Rgb([x as f32 / 37.0, y as f32 / 13.0, ((x * y) % 5) as f32 / 4.0])
        });
        let fill = [0.2, 0.7, 0.4];
        // (margin, output width × height): shrinking, enlarging, none.
        let cases = [
            ((0, 0), (16, 8)),
            ((5, 1), (128, 64)),
            ((5, 1), (11, 5)),
            ((40, 9), (64, 32)),
        ];
        for (margin, (ow, oh)) in cases {
            let c = canvas(&img, margin, fill);
            let want = resize_region(&c, Region::full(c.width(), c.height()), ow, oh);
            let got = resize_in_margin(&img, margin, fill, ow, oh);
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "margin {margin:?} to {ow}x{oh}: {worst}");
        }
    }

    #[test]
    fn border_mean_table() {
        // (width, height, the pixel values by x + 10 y) → the mean of the border's values.
        let cases: [(u32, u32, f32); 4] = [
            (1, 1, 0.0),
            (3, 1, 1.0),
            (1, 3, 10.0),
            // 3 × 3: all but the centre (11): (0+1+2+10+12+20+21+22) / 8.
            (3, 3, 11.0),
        ];
        for (w, h, want) in cases {
            let img =
                Rgb32FImage::from_fn(w, h, |x, y| image::Rgb([(x + 10 * y) as f32, 1.0, 0.0]));
            assert_eq!(border_mean(&img), [want, 1.0, 0.0], "{w}x{h}");
        }
        let img = Rgb32FImage::from_fn(4, 4, |x, y| {
            image::Rgb([if x == 0 || y == 3 { 1.0 } else { 0.0 }, 0.5, 0.0])
        });
        // 12 border pixels, 7 of them in the first column or the last row.
        assert_eq!(border_mean(&img)[0], 7.0 / 12.0);
    }

    #[test]
    fn stacked_rows_table() {
        // (blocks, region) → the rows found.
        type Case = (Vec<(u32, u32)>, Region, Vec<(u32, u32)>);
        let full = Region {
            x0: 0,
            y0: 0,
            x1: 30,
            y1: 120,
        };
        let cases: [Case; 5] = [
            (vec![(10, 40), (50, 80)], full, vec![(9, 41), (49, 81)]),
            (
                vec![(10, 40), (50, 80), (88, 118)],
                full,
                vec![(9, 41), (49, 81), (87, 119)],
            ),
            (vec![(10, 40)], full, vec![(9, 41)]),
            // A line 4 rows high is under a third of the width: not a digit.
            (vec![(10, 40), (60, 64)], full, vec![(9, 41)]),
            (vec![], full, vec![]),
        ];
        for (rows, region, want) in cases {
            assert_eq!(
                stacked_rows(&blocks(30, 120, &rows), region),
                want,
                "{rows:?}"
            );
        }
        // Rows are in image coordinates when the region is offset.
        let region = Region {
            x0: 0,
            y0: 5,
            x1: 30,
            y1: 120,
        };
        let img = blocks(30, 120, &[(10, 40), (50, 80)]);
        assert_eq!(stacked_rows(&img, region), vec![(9, 41), (49, 81)]);
    }

    #[test]
    fn equal_rows_table() {
        let region = Region {
            x0: 3,
            y0: 10,
            x1: 23,
            y1: 110,
        };
        let cases = [
            (1, vec![(10, 110)]),
            (2, vec![(10, 60), (60, 110)]),
            (3, vec![(10, 43), (43, 76), (76, 110)]),
            (4, vec![(10, 35), (35, 60), (60, 85), (85, 110)]),
        ];
        for (n, want) in cases {
            assert_eq!(equal_rows(region, n), want, "{n}");
        }
    }

    #[test]
    fn unstacked_strip_lays_rows_side_by_side() {
        // A dark top half and a light bottom half, 60 x 80: two rows of 40 px, each grown by
        // 6 px within the region (46 px high) and resized to 32 px high: 42 columns each.
        let img = Rgb32FImage::from_fn(60, 80, |_, y| {
            image::Rgb([if y < 40 { 0.1 } else { 0.9 }; 3])
        });
        let region = Region::full(60, 80);
        let strip = unstacked_strip(&img, region, &equal_rows(region, 2), 1.0);
        assert_eq!(strip.width, 84);
        assert_eq!(strip.data.len(), 3 * HEIGHT * 84);
        let mean = |cols: std::ops::Range<usize>| {
            let n = (cols.len() * HEIGHT) as f32;
            (0..HEIGHT)
                .flat_map(|r| cols.clone().map(move |c| (r, c)))
                .map(|(r, c)| strip.data[r * 84 + c])
                .sum::<f32>()
                / n
        };
        assert!(
            mean(0..42) < 0.0 && mean(42..84) > 0.0,
            "the top row first, on the left"
        );
        // One row is an ordinary strip of that row grown.
        let one = unstacked_strip(&img, region, &[(0, 80)], 1.0);
        assert_eq!(one, strip_from_region(&img, region, 1.0));
    }

    #[test]
    fn triangle_weights_sum_to_one_table() {
        let cases = [(100, 32), (32, 32), (10, 32), (1, 32), (333, 7), (7, 333)];
        for (i, o) in cases {
            let w = triangle_weights(i, o);
            assert_eq!(w.len(), o);
            for (start, ws) in &w {
                let s: f32 = ws.iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "{i}->{o}: sum {s}");
                assert!(start + ws.len() <= i, "{i}->{o}: out of range");
            }
        }
    }

    #[test]
    fn identity_resize_keeps_pixels() {
        let img = Rgb32FImage::from_fn(5, 4, |x, y| image::Rgb([x as f32, y as f32, 0.5]));
        let out = resize_region(&img, Region::full(5, 4), 5, 4);
        assert_eq!(out[2 * 5 + 3], 3.0); // channel 0, y=2, x=3
        assert_eq!(out[4 * 5 + 2 * 5 + 3], 2.0); // channel 1
    }

    #[test]
    fn normalise_and_pad() {
        let mut v: Vec<f32> = (0..3 * HEIGHT * 4).map(|i| i as f32).collect();
        normalize(&mut v);
        let mean: f32 = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 1e-4);
        let s = pad_to_min_width(v.clone(), 4);
        assert_eq!(s.width, MIN_WIDTH);
        let left = (MIN_WIDTH - 4) / 2;
        assert_eq!(s.data[left], v[0]);
        assert_eq!(s.data[0], 0.0);
        // Constant image: no division blow-up.
        let mut c = vec![0.5f32; 3 * HEIGHT * 40];
        normalize(&mut c);
        assert!(c.iter().all(|x| *x == 0.0));
    }

    #[test]
    fn stretch_widens_strips_and_maps_columns_back() {
        // (region w, h, stretch, strip width)
        let cases = [
            (64, 32, 1.0, 64),
            (64, 32, 1.5, 96),
            (30, 60, 1.0, 16),
            (30, 60, 1.4, 22),
            (5, 100, 2.0, 3),
            (4000, 10, 1.5, MAX_WIDTH),
        ];
        for (w, h, stretch, want) in cases {
            assert_eq!(
                target_width(w, h, stretch),
                want,
                "{w}x{h} stretch {stretch}"
            );
            let img = Rgb32FImage::from_pixel(w, h, image::Rgb([0.5, 0.2, 0.1]));
            let s = strip_from_region(&img, Region::full(w, h), stretch);
            assert_eq!(s.width, want.max(MIN_WIDTH));
            assert_eq!(s.data.len(), 3 * HEIGHT * s.width);
        }
        // A 100-px-wide region stretched 1.5 at scale 1: strip column 150 (+ pad) is its right edge.
        let r = Region {
            x0: 10,
            y0: 0,
            x1: 110,
            y1: 32,
        };
        let g = Geometry {
            stretch: 1.5,
            pad: 12,
            ..Geometry::default()
        };
        let c = StripColumns::new(r, g);
        assert!((c.to_image(12.0) - 10.0).abs() < 1e-9);
        assert!((c.to_image(12.0 + 150.0) - 110.0).abs() < 1e-9);
        assert!((c.to_image(12.0 + 75.0) - 60.0).abs() < 1e-9);
        assert_eq!(
            StripColumns::new(r, Geometry::default()),
            StripColumns::new(
                r,
                Geometry {
                    stretch: 1.0,
                    pad: 0,
                    window: crate::read::window::WINDOW,
                }
            )
        );
    }
}
