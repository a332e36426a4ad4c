//! Training-time augmentation of real images: crop jitter (tight to loose), aspect and scale
//! jitter, small rotation and shear, colour changes (gain, contrast, inversion, greyscale),
//! noise, and optionally lost resolution (blur of an upscaled small image) and cut-out patches.
//! One call makes one normalised strip, deterministic given the [`Rng`]; the optional steps draw
//! nothing from it when their share is 0, so older recipes give the same strips.

use image::Rgb32FImage;

use crate::read::DigitBox;
use crate::read::{self, Strip, HEIGHT};
use crate::rng::Rng;

/// Augmentation strengths.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Probability of a loose crop (much more background, like the `full` protocol).
    pub loose_prob: f32,
    /// Maximum rotation, degrees.
    pub max_rotation_deg: f32,
    /// Maximum horizontal shear (x shift per unit of height).
    pub max_shear: f32,
    /// Maximum strip width in pixels: training uses bounded sequence lengths.
    pub max_width: usize,
    /// Share of strips made from a copy shrunk 1.5–3× first (so the strip is an upscaled small
    /// image, as SVHN's blurry, low-resolution numbers are). 0 in configs made before it existed.
    #[serde(default)]
    pub lowres_prob: f32,
    /// Share of strips with one cut-out patch (6–14 px high, 3–8 px wide at the 32-px strip
    /// height: part of a digit at most) filled with a random flat colour. 0 in configs made
    /// before it existed.
    #[serde(default)]
    pub cutout_prob: f32,
    /// Share of strips of labelled numbers (not whole-image pseudo labels) rotated by up to
    /// `max_tilt_deg` instead of `max_rotation_deg`, cropped to the rotated number's bounding
    /// box: slanted numbers made from upright ones. 0 in configs made before it existed.
    #[serde(default)]
    pub tilt_prob: f32,
    /// Largest tilt, degrees (with `tilt_prob`).
    #[serde(default = "default_max_tilt_deg")]
    pub max_tilt_deg: f32,
}

fn default_max_tilt_deg() -> f32 {
    30.0
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            loose_prob: 0.25,
            max_rotation_deg: 6.0,
            max_shear: 0.25,
            max_width: 160,
            lowres_prob: 0.0,
            cutout_prob: 0.0,
            tilt_prob: 0.0,
            max_tilt_deg: default_max_tilt_deg(),
        }
    }
}

/// The part of an image that augmentation can ever reach: the digit union grown 3.5× in width
/// and 2.6× in height (so training images can be kept in memory pre-cut). Returns the cut image
/// and the boxes moved into its coordinates.
pub fn reachable_part(img: &Rgb32FImage, boxes: &[DigitBox]) -> (Rgb32FImage, Vec<DigitBox>) {
    if boxes.is_empty() {
        return (img.clone(), Vec::new());
    }
    let r = read::expand_region(read::boxes_union(boxes), 3.5, 2.6, img.dimensions());
    let cut = image::imageops::crop_imm(img, r.x0, r.y0, r.width(), r.height()).to_image();
    let moved = boxes
        .iter()
        .map(|b| DigitBox {
            left: b.left - r.x0 as f32,
            top: b.top - r.y0 as f32,
            ..*b
        })
        .collect();
    (cut, moved)
}

/// Bilinear sample of channel-major `[3, h, w]` data at (x, y) in pixel-centre coordinates,
/// clamped at the edges.
fn sample(src: &[f32], w: usize, h: usize, x: f32, y: f32) -> [f32; 3] {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let mut out = [0f32; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let p = |yy: usize, xx: usize| src[(c * h + yy) * w + xx];
        let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
        let bot = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
        *o = top * (1.0 - fy) + bot * fy;
    }
    out
}

/// One augmented, normalised strip of the number whose digit `boxes` lie in `img`, stretched
/// horizontally by `stretch` (the model's [`crate::read::Geometry::stretch`]) on top of
/// the random aspect change.
pub fn augment(
    img: &Rgb32FImage,
    boxes: &[DigitBox],
    cfg: &AugmentConfig,
    stretch: f32,
    rng: &mut Rng,
) -> Strip {
    let (iw, ih) = img.dimensions();
    let whole = boxes.is_empty();
    // Without boxes (pseudo-labelled images) the whole image plays the role of the digit union.
    let (l, t, r, b) = if whole {
        (0.0, 0.0, iw as f32, ih as f32)
    } else {
        read::boxes_union(boxes)
    };
    let (bw, bh) = ((r - l).max(1.0), (b - t).max(1.0));
    let (fx, fy) = if whole {
        (rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1))
    } else if rng.chance(cfg.loose_prob) {
        (rng.uniform(1.3, 3.2), rng.uniform(1.3, 2.4))
    } else {
        (rng.uniform(1.05, 1.6), rng.uniform(1.1, 1.55))
    };
    let (mut cw, mut ch) = (bw * fx, bh * fy);
    let cx = (l + r) / 2.0 + rng.uniform(-0.5, 0.5) * (fx - 1.0).abs() / 2.0 * bw;
    let cy = (t + b) / 2.0 + rng.uniform(-0.5, 0.5) * (fy - 1.0).abs() / 2.0 * bh;
    let aspect = rng.uniform(0.8, 1.2) * stretch;
    let mut theta = rng
        .uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg)
        .to_radians();
    let shear = rng.uniform(-cfg.max_shear, cfg.max_shear);
    // At share 0 no draw is made, so older recipes make the same strips.
    if cfg.tilt_prob > 0.0 && !whole && rng.chance(cfg.tilt_prob) {
        theta = rng
            .uniform(-cfg.max_tilt_deg, cfg.max_tilt_deg)
            .to_radians();
        // The strip's axes turn by theta against the photo's, so the number appears turned by
        // −theta in it: crop its bounding box in the strip's axes, grown as before.
        let (tw, th) = turned_extent(bw, bh, theta);
        (cw, ch) = (tw * fx, th * fy);
    }
    let out_w = ((cw / ch * HEIGHT as f32 * aspect).round() as usize).clamp(8, cfg.max_width);
    // Pre-scale the reachable region with the antialiased resize so that the affine sampling
    // below works near 1:1 (no aliasing when shrinking large photos).
    let mut k = (HEIGHT as f32 / ch).min(1.0);
    if cfg.lowres_prob > 0.0 && rng.chance(cfg.lowres_prob) {
        k /= rng.uniform(1.5, 3.0);
    }
    let reach = (cw.max(ch) * 0.75 + ch * cfg.max_shear).max(2.0);
    let region = read::expand_region(
        (cx - reach, cy - reach, cx + reach, cy + reach),
        1.0,
        1.0,
        (iw, ih),
    );
    let (sw, sh) = (
        ((region.width() as f32 * k).round() as usize).max(1),
        ((region.height() as f32 * k).round() as usize).max(1),
    );
    let src = read::resize_region(img, region, sw, sh);
    let (kx, ky) = (
        sw as f32 / region.width() as f32,
        sh as f32 / region.height() as f32,
    );
    let (cs, sn) = (theta.cos(), theta.sin());
    let mut data = vec![0f32; 3 * HEIGHT * out_w];
    for v in 0..HEIGHT {
        let vn = ((v as f32 + 0.5) / HEIGHT as f32 - 0.5) * ch;
        for u in 0..out_w {
            let un = ((u as f32 + 0.5) / out_w as f32 - 0.5) * cw + shear * vn;
            let x = cx + cs * un - sn * vn;
            let y = cy + sn * un + cs * vn;
            let sx = (x - region.x0 as f32) * kx - 0.5;
            let sy = (y - region.y0 as f32) * ky - 0.5;
            let px = sample(&src, sw, sh, sx, sy);
            for c in 0..3 {
                data[(c * HEIGHT + v) * out_w + u] = px[c];
            }
        }
    }
    if cfg.cutout_prob > 0.0 && rng.chance(cfg.cutout_prob) {
        cutout(&mut data, out_w, rng);
    }
    colour(&mut data, rng);
    read::normalize(&mut data);
    let mut strip = read::pad_to_min_width(data, out_w);
    if strip.width < crate::read::window::WINDOW {
        strip = read::pad_to_min_width(strip.data, strip.width);
    }
    strip
}

/// Width and height of the bounding box, in axes turned by `theta` radians, of a `bw × bh`
/// rectangle.
fn turned_extent(bw: f32, bh: f32, theta: f32) -> (f32, f32) {
    let (c, s) = (theta.cos().abs(), theta.sin().abs());
    (c * bw + s * bh, s * bw + c * bh)
}

/// Fills one random patch (6–14 rows, 3–8 columns, clipped to the strip) of channel-major
/// `[3, HEIGHT, w]` data with a random flat colour.
fn cutout(data: &mut [f32], w: usize, rng: &mut Rng) {
    let ph = 6 + rng.below(9);
    let pw = (3 + rng.below(6)).min(w);
    let y0 = rng.below(HEIGHT - ph + 1);
    let x0 = rng.below(w - pw + 1);
    let fill = [
        rng.uniform(0.0, 1.0),
        rng.uniform(0.0, 1.0),
        rng.uniform(0.0, 1.0),
    ];
    for (c, &v) in fill.iter().enumerate() {
        for y in y0..y0 + ph {
            data[(c * HEIGHT + y) * w + x0..][..pw].fill(v);
        }
    }
}

fn colour(data: &mut [f32], rng: &mut Rng) {
    let plane = data.len() / 3;
    if rng.chance(0.15) {
        for i in 0..plane {
            let g = (data[i] + data[plane + i] + data[2 * plane + i]) / 3.0;
            data[i] = g;
            data[plane + i] = g;
            data[2 * plane + i] = g;
        }
    }
    for c in 0..3 {
        let gain = rng.uniform(0.75, 1.25);
        let off = rng.uniform(-0.1, 0.1);
        for v in &mut data[c * plane..(c + 1) * plane] {
            *v = *v * gain + off;
        }
    }
    if rng.chance(0.15) {
        data.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    let sigma = rng.uniform(0.0, 0.04);
    if sigma > 0.0 {
        data.iter_mut().for_each(|v| *v += sigma * rng.normal());
    }
}

/// A batch of strips padded to a common width: zeros are added on both sides, the split drawn
/// from `rng`.
///
/// # Shapes
/// Returns (`[n, 3, HEIGHT, w]`, `w`).
pub fn pad_batch(strips: &[Strip], rng: &mut Rng) -> (Vec<f32>, usize) {
    let w = strips
        .iter()
        .map(|s| s.width)
        .max()
        .unwrap_or(read::MIN_WIDTH);
    let per = 3 * HEIGHT * w;
    let mut out = vec![0f32; strips.len() * per];
    for (i, s) in strips.iter().enumerate() {
        let left = rng.below(w - s.width + 1);
        for row in 0..3 * HEIGHT {
            out[i * per + row * w + left..][..s.width]
                .copy_from_slice(&s.data[row * s.width..][..s.width]);
        }
    }
    (out, w)
}

/// The colour changes of the localiser's and the detector's samples: inverted with chance 0.3,
/// channels permuted, then clipped to `[0, 1]` and raised to a gamma in `[0.7, 1.4)`.
///
/// # Shapes
/// `x`: `[3, plane]` → `[3, plane]`.
pub fn jitter_colours(mut x: Vec<f32>, plane: usize, rng: &mut Rng) -> Vec<f32> {
    if rng.chance(0.3) {
        x.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    let mut perm = [0usize, 1, 2];
    rng.shuffle(&mut perm);
    let mut out = vec![0f32; 3 * plane];
    for (c, &p) in perm.iter().enumerate() {
        out[c * plane..][..plane].copy_from_slice(&x[p * plane..][..plane]);
    }
    let gamma = rng.uniform(0.7, 1.4);
    out.iter_mut()
        .for_each(|v| *v = v.clamp(0.0, 1.0).powf(gamma));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A grey `w × h` photo shaded by `shade(x, y)` with one "number" box `[left, top, width,
    /// height]`.
    fn photo(
        (w, h): (u32, u32),
        [left, top, width, height]: [f32; 4],
        shade: impl Fn(u32, u32) -> f32,
    ) -> (Rgb32FImage, Vec<DigitBox>) {
        let img = Rgb32FImage::from_fn(w, h, |x, y| {
            let v = shade(x, y);
            Rgb([v, v, v])
        });
        let boxes = vec![DigitBox {
            left,
            top,
            width,
            height,
        }];
        (img, boxes)
    }

    /// A 200×100 photo of vertical stripes 4 px wide with one 60×40 "number" box in the middle.
    fn striped() -> (Rgb32FImage, Vec<DigitBox>) {
        photo((200, 100), [70.0, 30.0, 60.0, 40.0], |x, _| {
            if (x / 4) % 2 == 0 {
                0.9
            } else {
                0.1
            }
        })
    }

    /// Mean absolute difference between horizontally adjacent values (sharpness of a
    /// normalised strip).
    fn sharpness(s: &Strip) -> f64 {
        let (w, mut sum, mut n) = (s.width, 0.0f64, 0usize);
        for row in s.data.chunks(w) {
            for p in row.windows(2) {
                sum += (p[1] - p[0]).abs() as f64;
                n += 1;
            }
        }
        sum / n as f64
    }

    fn mean_sharpness(cfg: &AugmentConfig) -> f64 {
        let (img, boxes) = striped();
        (0..24)
            .map(|seed| sharpness(&augment(&img, &boxes, cfg, 1.0, &mut Rng::new(seed))))
            .sum::<f64>()
            / 24.0
    }

    /// The strip and the next draw of the random stream after it, for one seed.
    fn strip_and_next_draw(cfg: &AugmentConfig, seed: u64) -> (Vec<f32>, u64) {
        let (img, boxes) = striped();
        let mut rng = Rng::new(seed);
        let strip = augment(&img, &boxes, cfg, 1.4, &mut rng).data;
        (strip, rng.next_u64())
    }

    #[test]
    fn optional_steps_at_zero_share_draw_nothing() {
        // A share too small to ever fire still draws its coin, which moves every later draw;
        // at exactly 0 the step must not draw, or older recipes would make other strips.
        let zero = AugmentConfig::default();
        assert_eq!(
            (zero.lowres_prob, zero.cutout_prob, zero.tilt_prob),
            (0.0, 0.0, 0.0)
        );
        let tiny_lowres = AugmentConfig {
            lowres_prob: 1e-9,
            ..zero.clone()
        };
        let tiny_cutout = AugmentConfig {
            cutout_prob: 1e-9,
            ..zero.clone()
        };
        let tiny_tilt = AugmentConfig {
            tilt_prob: 1e-9,
            ..zero.clone()
        };
        for seed in 0..8 {
            let base = strip_and_next_draw(&zero, seed);
            assert_eq!(base, strip_and_next_draw(&zero, seed), "deterministic");
            for tiny in [&tiny_lowres, &tiny_cutout, &tiny_tilt] {
                let (strip, next) = strip_and_next_draw(tiny, seed);
                assert_ne!(next, base.1, "a positive share draws");
                assert_eq!(strip.len(), base.0.len());
            }
        }
    }

    #[test]
    fn lost_resolution_blurs_the_strip() {
        let plain = AugmentConfig {
            loose_prob: 0.0,
            ..AugmentConfig::default()
        };
        let lowres = AugmentConfig {
            lowres_prob: 1.0,
            ..plain.clone()
        };
        let (sharp, blurred) = (mean_sharpness(&plain), mean_sharpness(&lowres));
        assert!(
            blurred < 0.9 * sharp,
            "lowres {blurred:.3} vs plain {sharp:.3}"
        );
    }

    #[test]
    fn cutout_fills_one_bounded_flat_patch() {
        for (seed, w) in [(1u64, 40usize), (2, 8), (3, 120), (4, 3)] {
            let mut data = vec![-1.0f32; 3 * HEIGHT * w];
            cutout(&mut data, w, &mut Rng::new(seed));
            for c in 0..3 {
                let plane = &data[c * HEIGHT * w..(c + 1) * HEIGHT * w];
                let hit: Vec<(usize, usize)> = (0..HEIGHT)
                    .flat_map(|y| (0..w).map(move |x| (y, x)))
                    .filter(|&(y, x)| plane[y * w + x] != -1.0)
                    .collect();
                let rows: std::collections::BTreeSet<usize> = hit.iter().map(|p| p.0).collect();
                let cols: std::collections::BTreeSet<usize> = hit.iter().map(|p| p.1).collect();
                assert!((6..=14).contains(&rows.len()), "{} rows", rows.len());
                assert!((1..=8).contains(&cols.len()) && cols.len() <= w);
                assert_eq!(hit.len(), rows.len() * cols.len(), "one rectangle");
                assert_eq!(rows.last().unwrap() - rows.first().unwrap() + 1, rows.len());
                assert_eq!(cols.last().unwrap() - cols.first().unwrap() + 1, cols.len());
                let v = plane[hit[0].0 * w + hit[0].1];
                assert!((0.0..=1.0).contains(&v));
                assert!(hit.iter().all(|&(y, x)| plane[y * w + x] == v), "flat");
            }
        }
    }

    #[test]
    fn a_turned_rectangle_fits_its_turned_extent() {
        // Table: (width, height, degrees); the four corners, turned, lie inside the extent.
        for (bw, bh, deg) in [
            (100.0f32, 20.0f32, 0.0f32),
            (100.0, 20.0, 30.0),
            (100.0, 20.0, -30.0),
            (20.0, 40.0, 12.0),
            (60.0, 30.0, 90.0),
        ] {
            let t = deg.to_radians();
            let (w, h) = turned_extent(bw, bh, t);
            let (mut mx, mut my) = (0f32, 0f32);
            for (x, y) in [(-bw, -bh), (bw, -bh), (-bw, bh), (bw, bh)] {
                let (x, y) = (x / 2.0, y / 2.0);
                mx = mx.max((x * t.cos() + y * t.sin()).abs());
                my = my.max((-x * t.sin() + y * t.cos()).abs());
            }
            assert!((2.0 * mx - w).abs() < 1e-3 && (2.0 * my - h).abs() < 1e-3);
        }
    }

    #[test]
    fn tilted_strips_of_a_wide_number_are_taller_and_boxless_images_never_tilt() {
        // A wide number turned by up to 30 degrees needs a taller crop: its strips come out
        // narrower (at 32 px high). Whole-image pseudo labels (no boxes) are never tilted.
        let (img, boxes) = photo((400, 200), [140.0, 90.0, 120.0, 20.0], |x, y| {
            if (140..260).contains(&x) && (90..110).contains(&y) {
                0.9
            } else {
                0.1
            }
        });
        let plain = AugmentConfig {
            loose_prob: 0.0,
            max_width: 2000,
            ..AugmentConfig::default()
        };
        let tilted = AugmentConfig {
            tilt_prob: 1.0,
            ..plain.clone()
        };
        let mean_width = |cfg: &AugmentConfig, boxes: &[DigitBox]| {
            (0..32)
                .map(|seed| augment(&img, boxes, cfg, 1.0, &mut Rng::new(seed)).width as f64)
                .sum::<f64>()
                / 32.0
        };
        let (w0, w1) = (mean_width(&plain, &boxes), mean_width(&tilted, &boxes));
        assert!(w1 < 0.6 * w0, "tilted {w1:.1} vs plain {w0:.1}");
        for seed in 0..8 {
            let a = augment(&img, &[], &plain, 1.0, &mut Rng::new(seed));
            let b = augment(&img, &[], &tilted, 1.0, &mut Rng::new(seed));
            assert_eq!(a.data, b.data, "seed {seed}: a whole image was tilted");
        }
    }
}
