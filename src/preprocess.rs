//! Image loading and preprocessing: decode (with limits), crop by protocol, resize to a fixed
//! height keeping the aspect ratio, normalise, pad.
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

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageReader, Limits, Rgb32FImage};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::svhn::DigitBox;

/// Height of every strip, pixels.
pub const HEIGHT: usize = 32;
/// Strips narrower than this are padded (must be ≥ the window width).
pub const MIN_WIDTH: usize = 32;
/// Strips wider than this are squeezed to it.
pub const MAX_WIDTH: usize = 1024;
/// Largest image side the decoder accepts.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation, bytes.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// The horizontal stretches a model may use ([`Geometry::stretch`]); the reader refuses a
/// model whose metadata says otherwise.
pub const STRETCH_RANGE: std::ops::RangeInclusive<f32> = 0.25..=8.0;

/// How a model's input strips are laid out: the horizontal stretch of the resize (step 3 of
/// the recipe) and the zero columns the model itself adds on each side
/// ([`crate::model::ModelConfig`]; read from an exported model's metadata by
/// [`crate::infer::Reader::geometry`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Horizontal scale of the strip relative to the aspect-preserving resize: more time steps
    /// per digit when above 1.
    pub stretch: f32,
    /// Zero columns the model adds on each side of the strip before its windows.
    pub pad: usize,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            stretch: 1.0,
            pad: 0,
        }
    }
}

/// What part of the image the reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The standard SVHN protocol: the union of the digit boxes grown by 30 %.
    Crop,
    /// The image as given.
    Full,
    /// The whole image and [`SEARCH_CROPS`] centred crops of it, each read; the readings of the
    /// whole image and of the crops that keep its central number vote (see [`crate::search`];
    /// `housenum read --protocol search`). Needs no boxes.
    Search,
    /// The box the localiser predicts ([`crate::locate`]) grown by 30 %, like `Crop` with a
    /// predicted box instead of the labelled one. Needs no boxes, but the localiser: only
    /// [`crate::Reader::strips`] reads it (the functions here read the whole image for it).
    /// What `housenum read` does.
    Locate,
}

/// The centred crops [`Protocol::Search`] reads besides the whole image, as (width, height)
/// fractions of the image. Photos are usually framed on the number but carry other text,
/// neighbouring digits and clutter to its sides; a tighter crop removes them, the whole image
/// stays a candidate for numbers that are not centred. Chosen on the training split (the
/// validation split was not used), see the README.
pub const SEARCH_CROPS: [(f32, f32); 5] = [
    (0.7, 1.0),
    (0.5, 1.0),
    (0.7, 0.85),
    (0.5, 0.85),
    (0.35, 0.85),
];

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Crop => "crop",
            Protocol::Full => "full",
            Protocol::Search => "search",
            Protocol::Locate => "locate",
        })
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

/// A pixel rectangle `[x0, x1) × [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Left, inclusive.
    pub x0: u32,
    /// Top, inclusive.
    pub y0: u32,
    /// Right, exclusive.
    pub x1: u32,
    /// Bottom, exclusive.
    pub y1: u32,
}

impl Region {
    /// The whole `width × height` image.
    pub fn full(width: u32, height: u32) -> Region {
        Region {
            x0: 0,
            y0: 0,
            x1: width,
            y1: height,
        }
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
}

/// Decode an image file to RGB floats in [0, 1], with decoder limits against huge images.
///
/// # Errors
/// [`Error::Io`] (missing, directory, permissions), [`Error::Decode`] (empty, truncated,
/// unknown format), [`Error::Limits`] (larger than [`MAX_SIDE`] or [`MAX_ALLOC`]).
pub fn load_image(path: &Path) -> Result<Rgb32FImage> {
    if path.is_dir() {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            reason: "is a directory, not an image file".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, path)
}

/// Decode image bytes (any supported format, detected from content); `path` names the source
/// in errors (use e.g. `"<stdin>"`).
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<Rgb32FImage> {
    let decode_err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("empty file".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(decode_err("unknown image format".into()));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && jpeg_is_truncated(bytes) {
        return Err(decode_err(
            "truncated JPEG (no end-of-image marker after the scan data)".into(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => Error::Limits {
            path: path.to_path_buf(),
            reason: format!("image exceeds decoder limits ({l}; at most {MAX_SIDE} px a side)"),
        },
        other => decode_err(other.to_string()),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(decode_err("image has zero width or height".into()));
    }
    Ok(img.to_rgb32f())
}

/// Whether JPEG bytes stop before the end-of-image marker that must follow the last scan. The
/// JPEG decoder fills a truncated scan with grey instead of failing; this catches that case.
/// (Entropy-coded data cannot contain `FF D9`: byte stuffing forbids it.)
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(p) => !bytes[p..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => true,
    }
}

/// The region a protocol reads first from an image of size `(width, height)` with digit
/// `boxes` (the only one for [`Protocol::Crop`] and [`Protocol::Full`]; boxes are ignored by
/// the others, and an empty box list gives the full image).
pub fn protocol_region(protocol: Protocol, size: (u32, u32), boxes: &[DigitBox]) -> Region {
    let (w, h) = size;
    if protocol != Protocol::Crop || boxes.is_empty() {
        return Region::full(w, h);
    }
    expand_region(boxes_union(boxes), 1.3, 1.3, size)
}

/// Every region a protocol reads (the first is [`protocol_region`]'s); [`crate::search::choose`]
/// picks the answer among their readings.
pub fn protocol_regions(protocol: Protocol, size: (u32, u32), boxes: &[DigitBox]) -> Vec<Region> {
    let first = protocol_region(protocol, size, boxes);
    if protocol != Protocol::Search {
        return vec![first];
    }
    let (w, h) = size;
    let centred = |fw: f32, fh: f32| {
        let cw = ((w as f32 * fw).round() as u32).clamp(1, w);
        let ch = ((h as f32 * fh).round() as u32).clamp(1, h);
        let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
        Region {
            x0,
            y0,
            x1: x0 + cw,
            y1: y0 + ch,
        }
    };
    std::iter::once(first)
        .chain(SEARCH_CROPS.iter().map(|&(fw, fh)| centred(fw, fh)))
        .collect()
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

/// The union of digit boxes as `(left, top, right, bottom)`.
pub fn boxes_union(boxes: &[DigitBox]) -> (f32, f32, f32, f32) {
    boxes.iter().fold(
        (
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ),
        |(l, t, r, b), x| {
            (
                l.min(x.left),
                t.min(x.top),
                r.max(x.right()),
                b.max(x.bottom()),
            )
        },
    )
}

/// Grow the float rectangle `(l, t, r, b)` by factors `fx`, `fy` around its centre, round outwards
/// and clamp to the image; never empty.
pub fn expand_region(rect: (f32, f32, f32, f32), fx: f32, fy: f32, size: (u32, u32)) -> Region {
    let (l, t, r, b) = rect;
    let (cx, cy) = ((l + r) / 2.0, (t + b) / 2.0);
    let (hw, hh) = ((r - l) * fx / 2.0, (b - t) * fy / 2.0);
    let clamp = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi);
    let x0 = clamp((cx - hw).floor(), size.0 - 1);
    let y0 = clamp((cy - hh).floor(), size.1 - 1);
    let x1 = clamp((cx + hw).ceil(), size.0).max(x0 + 1);
    let y1 = clamp((cy + hh).ceil(), size.1).max(y0 + 1);
    Region { x0, y0, x1, y1 }
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
    let (rw, rh) = (region.width() as usize, region.height() as usize);
    let wx = triangle_weights(rw, out_w);
    let wy = triangle_weights(rh, out_h);
    let src = img.as_raw();
    let stride = img.width() as usize * 3;
    // Horizontal pass: [rh, out_w, 3].
    let mut tmp = vec![0f32; rh * out_w * 3];
    for y in 0..rh {
        let row = &src[(region.y0 as usize + y) * stride..];
        for (ox, (start, ws)) in wx.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (k, &w) in ws.iter().enumerate() {
                let p = (region.x0 as usize + start + k) * 3;
                acc[0] += w * row[p];
                acc[1] += w * row[p + 1];
                acc[2] += w * row[p + 2];
            }
            tmp[(y * out_w + ox) * 3..][..3].copy_from_slice(&acc);
        }
    }
    // Vertical pass into channel-major output.
    let mut out = vec![0f32; 3 * out_h * out_w];
    for (oy, (start, ws)) in wy.iter().enumerate() {
        for ox in 0..out_w {
            let mut acc = [0f32; 3];
            for (k, &w) in ws.iter().enumerate() {
                let p = ((start + k) * out_w + ox) * 3;
                acc[0] += w * tmp[p];
                acc[1] += w * tmp[p + 1];
                acc[2] += w * tmp[p + 2];
            }
            for (c, a) in acc.iter().enumerate() {
                out[(c * out_h + oy) * out_w + ox] = *a;
            }
        }
    }
    out
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
    fn crop_region_grows_by_thirty_percent_and_clamps() {
        let b = DigitBox {
            left: 10.0,
            top: 10.0,
            width: 20.0,
            height: 40.0,
        };
        let r = protocol_region(Protocol::Crop, (100, 100), &[b]);
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (7, 4, 33, 56));
        let edge = DigitBox {
            left: 0.0,
            top: 0.0,
            width: 100.0,
            height: 100.0,
        };
        let r = protocol_region(Protocol::Crop, (100, 100), &[edge]);
        assert_eq!(r, Region::full(100, 100));
        assert_eq!(
            protocol_region(Protocol::Full, (50, 60), &[b]),
            Region::full(50, 60)
        );
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
    fn protocol_regions_table() {
        let boxes = [DigitBox {
            left: 40.0,
            top: 20.0,
            width: 10.0,
            height: 20.0,
        }];
        let full = Region::full(100, 60);
        // (protocol, boxes?, number of regions, first region)
        let crop = protocol_region(Protocol::Crop, (100, 60), &boxes);
        let cases = [
            (Protocol::Crop, true, 1, crop),
            (Protocol::Crop, false, 1, full),
            (Protocol::Full, true, 1, full),
            (Protocol::Search, true, 1 + SEARCH_CROPS.len(), full),
            (Protocol::Search, false, 1 + SEARCH_CROPS.len(), full),
        ];
        for (protocol, with_boxes, n, first) in cases {
            let b: &[DigitBox] = if with_boxes { &boxes } else { &[] };
            let r = protocol_regions(protocol, (100, 60), b);
            assert_eq!(r.len(), n, "{protocol}");
            assert_eq!(r[0], first, "{protocol}");
        }
        assert_eq!((crop.x0, crop.x1, crop.y0, crop.y1), (38, 52, 17, 43));
        // Search crops: inside the image, centred, of the listed fractions.
        for (w, h) in [(100, 60), (1, 1), (7, 3), (333, 101)] {
            let r = protocol_regions(Protocol::Search, (w, h), &[]);
            for (reg, (fw, fh)) in r[1..].iter().zip(SEARCH_CROPS) {
                assert!(reg.x1 <= w && reg.y1 <= h && reg.width() >= 1 && reg.height() >= 1);
                assert!((reg.x0 + reg.x1).abs_diff(w) <= 1 && (reg.y0 + reg.y1).abs_diff(h) <= 1);
                assert!((reg.width() as f32 - w as f32 * fw).abs() <= 1.0);
                assert!((reg.height() as f32 - h as f32 * fh).abs() <= 1.0);
            }
        }
        assert_eq!(
            protocol_regions(Protocol::Search, (100, 60), &[])[2],
            Region {
                x0: 25,
                y0: 0,
                x1: 75,
                y1: 60
            }
        );
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
                    pad: 0
                }
            )
        );
    }

    #[test]
    fn decode_errors_name_the_file() {
        let p = Path::new("some/where.png");
        let e = decode_image(b"", p).unwrap_err().to_string();
        assert!(e.contains("some/where.png") && e.contains("empty"), "{e}");
        let e = decode_image(b"hello, I am text", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("some/where.png"), "{e}");
    }
}
