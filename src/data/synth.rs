//! Synthetic house numbers: digits of 61 open fonts laid out with the geometry of real SVHN
//! numbers, on real wall backgrounds (cut from the digit-free parts of labelled photos) or
//! procedural ones, with plates, shadows, distractor digits at the frame edge, keystone
//! perspective, rotation, lighting gradients, blur, noise and JPEG artefacts.
//!
//! Every image is a pure function of `(seed, index)`, so a set can be regenerated or extended
//! and training can draw samples on the fly without touching disk. The boxes are the ink boxes
//! of the glyphs as drawn (after the geometric warp), in the same convention as SVHN's.
//!
//! Geometry comes from [`Geometry::builtin`], a table derived from the labels of all 33,402
//! official train images by `data/derive_geometry.py` (see `data/README.md`).

use ab_glyph::{Font, FontRef, PxScale};
use image::{Rgb, Rgb32FImage};

use crate::read::DigitBox;
use crate::read::{self, Strip};
use crate::rng::Rng;

macro_rules! fonts {
    ($($name:literal),* $(,)?) => {
        /// The embedded fonts: digit-only subsets (see `data/fonts/LICENSES.md`), by name.
        pub const FONTS: &[(&str, &[u8])] = &[
            $(($name, include_bytes!(concat!("../../data/fonts/", $name, ".ttf")))),*
        ];
    };
}

fonts!(
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-ExtraLight",
    "DejaVuSansCondensed-Bold",
    "DejaVuSerif",
    "DejaVuSerifCondensed-Bold",
    "DejaVuSansMono",
    "LiberationSans-Regular",
    "LiberationSans-Bold",
    "LiberationSansNarrow-Regular",
    "LiberationSansNarrow-Bold",
    "LiberationSerif-Regular",
    "LiberationSerif-Bold",
    "LiberationMono-Regular",
    "FreeSans",
    "FreeSansBold",
    "FreeSerif",
    "FreeSerifBold",
    "FreeMonoBold",
    "Roboto-Regular",
    "Roboto-Black",
    "Roboto-Thin",
    "RobotoCondensed-Bold",
    "RobotoCondensed-Regular",
    "Arimo-Bold",
    "Tinos-Regular",
    "Cousine-Bold",
    "Carlito-Regular",
    "Cantarell-Regular",
    "Cantarell-ExtraBold",
    "ComicNeue-Regular",
    "ComicNeue-Bold",
    "LeagueSpartan-Regular",
    "LeagueSpartan-Black",
    "BebasNeue-Regular",
    "BebasNeue-Bold",
    "Go-Regular",
    "Go-Bold",
    "Go-Mono",
    "Gentium-R",
    "Hack-Bold",
    "Quicksand-Bold",
    "Quicksand-Light",
    "DancingScript-Regular",
    "DancingScript-Bold",
    "OldStandard-Regular",
    "OldStandard-Bold",
    "Cabin-Regular",
    "Cabin-Bold",
    "Comfortaa-Bold",
    "YanoneKaffeesatz-Regular",
    "YanoneKaffeesatz-Bold",
    "LinLibertine_R",
    "LinLibertine_RB",
    "LinBiolinum_RB",
    "OpenSans-Regular",
    "OpenSans-ExtraBold",
    "OpenSans-CondBold",
    "GilliusADF-BoldCond",
    "UniversalisADFStd-Bold",
    "UniversalisADFStd-Cond",
);

/// Font families never drawn in training (`train --synth`), so that synthetic numbers in
/// them measure how the reader reads styles it has not seen (`synth --fonts held-out`): a
/// geometric sans, a condensed one, rounded, script, serif and monospaced designs, 15 fonts.
pub const HELD_OUT_FAMILIES: &[&str] = &[
    "Cabin",
    "DancingScript",
    "Go",
    "LeagueSpartan",
    "OldStandard",
    "Quicksand",
    "YanoneKaffeesatz",
];

/// Which of the embedded fonts a generator draws from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FontSet {
    /// Every font.
    #[default]
    All,
    /// The fonts outside [`HELD_OUT_FAMILIES`]: what training draws.
    Training,
    /// Only [`HELD_OUT_FAMILIES`].
    HeldOut,
}

impl FontSet {
    /// Whether the font called `name` (a [`FONTS`] name) is in this set.
    pub fn contains(self, name: &str) -> bool {
        let family = name.split(['-', '_']).next().unwrap_or(name);
        let held_out = HELD_OUT_FAMILIES.contains(&family);
        match self {
            FontSet::All => true,
            FontSet::Training => !held_out,
            FontSet::HeldOut => held_out,
        }
    }
}

/// Empirical distributions of real number geometry, each as 101 quantiles (see the module docs).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Geometry {
    /// How many real numbers have 1, 2, ... digits.
    pub length: std::collections::BTreeMap<String, u64>,
    /// Digit box height, pixels.
    pub digit_height: Vec<f32>,
    /// Digit box width / height.
    pub aspect: Vec<f32>,
    /// Gap between consecutive boxes / their mean height.
    pub gap: Vec<f32>,
    /// Top difference of consecutive boxes / height.
    pub dy: Vec<f32>,
    /// Height ratio of consecutive boxes.
    pub dh: Vec<f32>,
    /// Image width / digit-union width.
    pub margin_x: Vec<f32>,
    /// Image height / digit-union height.
    pub margin_y: Vec<f32>,
    /// Union centre / image width.
    pub centre_x: Vec<f32>,
    /// Union centre / image height.
    pub centre_y: Vec<f32>,
}

impl Geometry {
    /// The table shipped in `data/geometry.json`.
    pub fn builtin() -> Geometry {
        serde_json::from_str(include_str!("../../data/geometry.json"))
            .expect("data/geometry.json is valid (checked by a test)")
    }

    /// One draw from a quantile table, by inverse CDF between the 2nd and 98th percentiles
    /// (the outermost percentiles are label noise).
    fn draw(table: &[f32], rng: &mut Rng) -> f32 {
        let pos = rng.uniform(0.02, 0.98) * (table.len() - 1) as f32;
        let i = pos as usize;
        let j = (i + 1).min(table.len() - 1);
        table[i] + (table[j] - table[i]) * (pos - i as f32)
    }

    /// A length from the real histogram, restricted to `[lo, hi]`; `None` when the histogram has
    /// nothing there.
    fn real_length(&self, lo: usize, hi: usize, rng: &mut Rng) -> Option<usize> {
        let rows: Vec<(usize, u64)> = self
            .length
            .iter()
            .filter_map(|(k, &v)| k.parse::<usize>().ok().map(|k| (k, v)))
            .filter(|&(k, _)| k >= lo && k <= hi)
            .collect();
        let total: u64 = rows.iter().map(|r| r.1).sum();
        if total == 0 {
            return None;
        }
        let mut pick = rng.next_u64() % total;
        for (k, v) in rows {
            if pick < v {
                return Some(k);
            }
            pick -= v;
        }
        None
    }
}

/// What the generator draws, and how often.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// Fewest digits in a number.
    pub min_len: usize,
    /// Most digits in a number.
    pub max_len: usize,
    /// Share of numbers whose length follows the real histogram (within the bounds); the rest
    /// are uniform over `[min_len, max_len]`, so long numbers appear.
    pub real_length_prob: f32,
    /// Digit heights above this are scaled down to it (pixels): 30 for training strips, larger
    /// for images written to disk.
    pub max_digit_height: f32,
    /// Probability of a real background (when a pool is given), else procedural.
    pub real_background_prob: f32,
    /// Probability of a plate behind the number.
    pub plate_prob: f32,
    /// Probability of a drop shadow or outline under the digits.
    pub shadow_prob: f32,
    /// Probability of a distractor digit cut by each side of the frame.
    pub distractor_prob: f32,
    /// Probability of keystone perspective plus rotation and shear.
    pub warp_prob: f32,
    /// Probability of a blur.
    pub blur_prob: f32,
    /// Probability of JPEG compression artefacts.
    pub jpeg_prob: f32,
    /// Largest standard deviation of pixel noise (0..1 scale).
    pub max_noise: f32,
    /// Probability of losing resolution like a small, distant SVHN number: the image is shrunk
    /// 2–4× and scaled back up.
    #[serde(default)]
    pub low_res_prob: f32,
    /// Image size / digit-union size is drawn from the real table but capped at this (real
    /// photos reach 6× in width): 1.6 renders little beyond what a training crop needs.
    pub max_margin: f32,
    /// The fonts drawn from.
    #[serde(default)]
    pub fonts: FontSet,
    /// Share of numbers set as type is set: the digits at one font size with their ink on one
    /// line, each followed by its font's advance (so a `1` keeps the wide space around it that
    /// most fonts give it, as on printed plates and shop-bought digits), with a tracking of
    /// −2 % to +25 % of the height; the rest follow SVHN's measured gaps between ink boxes. At 0
    /// no draw is made, so older recipes make the same numbers.
    #[serde(default)]
    pub typeset_prob: f32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            min_len: 1,
            max_len: 10,
            real_length_prob: 0.6,
            max_digit_height: 30.0,
            real_background_prob: 0.8,
            plate_prob: 0.5,
            shadow_prob: 0.2,
            distractor_prob: 0.15,
            warp_prob: 0.6,
            blur_prob: 0.3,
            jpeg_prob: 0.15,
            max_noise: 0.04,
            low_res_prob: 0.5,
            max_margin: 6.0,
            fonts: FontSet::All,
            typeset_prob: 0.0,
        }
    }
}

impl SynthConfig {
    /// No effects at all: flat procedural background, no plate, shadow, distractor, warp, blur,
    /// noise or JPEG. Used by tests that check what was drawn against the labels.
    pub fn clean() -> SynthConfig {
        SynthConfig {
            real_background_prob: 0.0,
            plate_prob: 0.0,
            shadow_prob: 0.0,
            distractor_prob: 0.0,
            warp_prob: 0.0,
            blur_prob: 0.0,
            jpeg_prob: 0.0,
            max_noise: 0.0,
            low_res_prob: 0.0,
            ..SynthConfig::default()
        }
    }
}

/// One loaded font with the ink size of each digit per pixel of font height.
struct LoadedFont {
    name: &'static str,
    font: FontRef<'static>,
    /// (ink width, ink height) of each digit per unit of `PxScale` (both axes).
    ink: [(f32, f32); 10],
    /// (left, right) side bearing of each digit per unit of `PxScale`: the space the font
    /// leaves between its ink and the edges of its advance (wide around a `1`).
    side: [(f32, f32); 10],
}

/// One synthetic image and its labels.
#[derive(Debug, Clone)]
pub struct SynthImage {
    /// The picture, RGB in [0, 1].
    pub image: Rgb32FImage,
    /// The number, left to right.
    pub digits: Vec<u8>,
    /// One box per digit: the ink as drawn, clamped to the image.
    pub boxes: Vec<DigitBox>,
    /// The font the digits were drawn in.
    pub font: &'static str,
}

/// The generator: fonts, geometry table, background pool and configuration.
pub struct Synth {
    config: SynthConfig,
    geometry: Geometry,
    fonts: Vec<LoadedFont>,
    backgrounds: Vec<Rgb32FImage>,
}

/// Which side of the number a part of a photo lies on (see [`background_patches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Left of the number, the photo's full height.
    Left,
    /// Right of it, the full height.
    Right,
    /// Above it, the full width.
    Above,
    /// Below it, the full width.
    Below,
}

impl Side {
    /// All four, in the order [`background_patches`] cuts them.
    pub const ALL: [Side; 4] = [Side::Left, Side::Right, Side::Above, Side::Below];

    /// `left`, `right`, `above` or `below`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
            Side::Above => "above",
            Side::Below => "below",
        }
    }
}

/// Digit-free parts of a labelled photo, usable as backgrounds: the strips left of, right of,
/// above and below the digit union (grown by a quarter of the digit height), each at least
/// 12 × 12 pixels.
pub fn background_patches(img: &Rgb32FImage, boxes: &[DigitBox]) -> Vec<Rgb32FImage> {
    background_parts(img, boxes)
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// [`background_patches`], each with the side of the number it lies on.
pub fn background_parts(img: &Rgb32FImage, boxes: &[DigitBox]) -> Vec<(Side, Rgb32FImage)> {
    if boxes.is_empty() {
        return Vec::new();
    }
    let (w, h) = img.dimensions();
    let (l, t, r, b) = read::boxes_union(boxes);
    let pad = 0.25 * (b - t);
    let (l, t) = ((l - pad).max(0.0) as u32, (t - pad).max(0.0) as u32);
    let (r, b) = (
        ((r + pad).ceil().max(0.0) as u32).min(w),
        ((b + pad).ceil().max(0.0) as u32).min(h),
    );
    let rects = [
        (0, 0, l, h),
        (r, 0, w.saturating_sub(r), h),
        (0, 0, w, t),
        (0, b, w, h.saturating_sub(b)),
    ];
    Side::ALL
        .iter()
        .zip(rects)
        .filter(|&(_, (_, _, rw, rh))| rw >= 12 && rh >= 12)
        .map(|(&side, (x, y, rw, rh))| {
            (
                side,
                image::imageops::crop_imm(img, x, y, rw, rh).to_image(),
            )
        })
        .collect()
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn random_colour(rng: &mut Rng) -> [f32; 3] {
    if rng.chance(0.4) {
        let g = rng.f32();
        let tint = rng.uniform(-0.05, 0.05);
        [g + tint, g, g - tint].map(|v| v.clamp(0.0, 1.0))
    } else {
        [rng.f32(), rng.f32(), rng.f32()]
    }
}

/// A colour whose luminance differs from `bg`'s by at least `min_contrast`.
fn contrasting_colour(bg: [f32; 3], min_contrast: f32, rng: &mut Rng) -> [f32; 3] {
    let c = random_colour(rng);
    let (lb, lc) = (luminance(bg), luminance(c));
    if (lb - lc).abs() >= min_contrast {
        return c;
    }
    let target = if lb > 0.5 {
        rng.uniform(0.0, (lb - min_contrast).max(0.0))
    } else {
        rng.uniform((lb + min_contrast).min(1.0), 1.0)
    };
    let shift = target - lc;
    c.map(|v| (v + shift).clamp(0.0, 1.0))
}

/// Bilinear sample of an RGB float image at pixel-centre coordinates, clamped at the edges.
fn bilinear(img: &Rgb32FImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = img.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |xx, yy| img.get_pixel(xx, yy).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    std::array::from_fn(|k| {
        (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy) + (c[k] * (1.0 - fx) + d[k] * fx) * fy
    })
}

/// Forward geometric warp: an affine map (rotation, shear, scale about the centre) followed by
/// a keystone (vertical scale varying linearly along x). Invertible in closed form.
struct Warp {
    centre: (f32, f32),
    /// Forward 2×2 matrix of the affine part.
    m: [f32; 4],
    /// Keystone strength per pixel of x from the centre.
    k: f32,
}

impl Warp {
    fn forward(&self, x: f32, y: f32) -> (f32, f32) {
        let (cx, cy) = self.centre;
        let (dx, dy) = (x - cx, y - cy);
        let (ax, ay) = (
            self.m[0] * dx + self.m[1] * dy,
            self.m[2] * dx + self.m[3] * dy,
        );
        (cx + ax, cy + ay * (1.0 + self.k * ax))
    }

    fn inverse(&self, u: f32, v: f32) -> (f32, f32) {
        let (cx, cy) = self.centre;
        let ax = u - cx;
        let ay = (v - cy) / (1.0 + self.k * ax);
        let det = self.m[0] * self.m[3] - self.m[1] * self.m[2];
        let dx = (self.m[3] * ax - self.m[1] * ay) / det;
        let dy = (-self.m[2] * ax + self.m[0] * ay) / det;
        (cx + dx, cy + dy)
    }
}

impl Synth {
    /// The real backgrounds it draws from (see [`background_patches`]).
    pub fn backgrounds(&self) -> &[Rgb32FImage] {
        &self.backgrounds
    }

    /// A generator drawing backgrounds from `backgrounds` (see [`background_patches`]; may be
    /// empty: procedural backgrounds only).
    pub fn new(config: SynthConfig, backgrounds: Vec<Rgb32FImage>) -> Synth {
        let fonts = FONTS
            .iter()
            .filter(|(name, _)| config.fonts.contains(name))
            .map(|&(name, bytes)| {
                let font = FontRef::try_from_slice(bytes).expect("embedded fonts parse (tested)");
                let unit = font.height_unscaled();
                // Per digit: (ink width, ink height) and (left, right) side bearing.
                let metrics: [_; 10] = std::array::from_fn(|d| {
                    let gid = font.glyph_id(char::from(b'0' + d as u8));
                    let b = font
                        .outline(gid)
                        .expect("every embedded font has digits")
                        .bounds;
                    let advance = font.h_advance_unscaled(gid);
                    (
                        (b.width().abs() / unit, b.height().abs() / unit),
                        (b.min.x.max(0.0) / unit, (advance - b.max.x).max(0.0) / unit),
                    )
                });
                let ink = metrics.map(|m| m.0);
                let side = metrics.map(|m| m.1);
                LoadedFont {
                    name,
                    font,
                    ink,
                    side,
                }
            })
            .collect();
        Synth {
            config,
            geometry: Geometry::builtin(),
            fonts,
            backgrounds,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    /// Number of embedded fonts.
    pub fn num_fonts(&self) -> usize {
        self.fonts.len()
    }

    /// Image `index` of the set generated from `seed`.
    pub fn render_nth(&self, seed: u64, index: u64) -> SynthImage {
        self.render(&mut Rng::derive(seed ^ 0x5717_7e5e, index))
    }

    /// The coverage (0..1) of `digit` in font `font`, drawn with its ink box scaled to
    /// `w × h` pixels; row-major `[h, w]`. Used to check labels against what was drawn.
    pub fn glyph_coverage(&self, font: usize, digit: u8, w: u32, h: u32) -> Vec<f32> {
        let mut out = vec![0f32; (w * h) as usize];
        let f = &self.fonts[font];
        let (iw, ih) = f.ink[digit as usize];
        let scale = PxScale {
            x: w as f32 / iw.max(1e-3),
            y: h as f32 / ih.max(1e-3),
        };
        if let Some(g) = f
            .font
            .outline_glyph(f.font.glyph_id(char::from(b'0' + digit)).with_scale(scale))
        {
            g.draw(|x, y, c| {
                if x < w && y < h {
                    out[(y * w + x) as usize] = c;
                }
            });
        }
        out
    }

    /// Index of the font called `name`.
    pub fn font_index(&self, name: &str) -> Option<usize> {
        self.fonts.iter().position(|f| f.name == name)
    }

    fn length(&self, rng: &mut Rng) -> usize {
        let (lo, hi) = (
            self.config.min_len.max(1),
            self.config.max_len.max(self.config.min_len.max(1)),
        );
        if rng.chance(self.config.real_length_prob) {
            if let Some(n) = self.geometry.real_length(lo, hi, rng) {
                return n;
            }
        }
        lo + rng.below(hi - lo + 1)
    }

    fn background(&self, w: u32, h: u32, rng: &mut Rng) -> Rgb32FImage {
        if !self.backgrounds.is_empty() && rng.chance(self.config.real_background_prob) {
            let src = &self.backgrounds[rng.below(self.backgrounds.len())];
            let (sw, sh) = (src.width() as f32, src.height() as f32);
            // A random sub-rectangle of the patch with the target's aspect, at least half its size.
            let frac = rng.uniform(0.5, 1.0);
            let (mut cw, mut ch) = (sw * frac, sw * frac * h as f32 / w as f32);
            if ch > sh * frac {
                ch = sh * frac;
                cw = ch * w as f32 / h as f32;
            }
            let x0 = rng.uniform(0.0, (sw - cw).max(0.0));
            let y0 = rng.uniform(0.0, (sh - ch).max(0.0));
            let (kx, ky) = (cw / w as f32, ch / h as f32);
            let flip = rng.chance(0.5);
            return Rgb32FImage::from_fn(w, h, |x, y| {
                let xf = if flip { w - 1 - x } else { x } as f32;
                Rgb(bilinear(
                    src,
                    x0 + (xf + 0.5) * kx - 0.5,
                    y0 + (y as f32 + 0.5) * ky - 0.5,
                ))
            });
        }
        // Procedural: a base colour, a linear gradient, and horizontal or vertical banding
        // (siding, bricks, wood).
        let base = random_colour(rng);
        let (gx, gy) = (rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3));
        let band_amp = if rng.chance(0.5) {
            rng.uniform(0.0, 0.12)
        } else {
            0.0
        };
        let band_period = rng.uniform(3.0, 12.0);
        let vertical = rng.chance(0.3);
        Rgb32FImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
            let t = if vertical { x } else { y } as f32;
            let band = band_amp * ((t / band_period) * std::f32::consts::TAU).sin();
            let s = 1.0 + gx * u + gy * v;
            Rgb(base.map(|c| (c * s + band).clamp(0.0, 1.0)))
        })
    }

    /// Draw digit `d` of `font` with its ink box at `(left, top)` sized `w × h`, blending
    /// `colour` by coverage (times `alpha`). Returns the ink box actually covered.
    #[allow(clippy::too_many_arguments)]
    fn draw_digit(
        &self,
        img: &mut Rgb32FImage,
        font: &LoadedFont,
        d: u8,
        (left, top): (f32, f32),
        (w, h): (f32, f32),
        colour: [f32; 3],
        alpha: f32,
    ) -> DigitBox {
        let (iw, ih) = font.ink[d as usize];
        let scale = PxScale {
            x: w / iw.max(1e-3),
            y: h / ih.max(1e-3),
        };
        let glyph = font.font.glyph_id(char::from(b'0' + d)).with_scale(scale);
        let Some(g) = font.font.outline_glyph(glyph) else {
            return DigitBox {
                left,
                top,
                width: 0.0,
                height: 0.0,
            };
        };
        // `draw` reports pixels relative to the ink's top-left: put that at (left, top).
        let (dx, dy) = (left.round() as i64, top.round() as i64);
        let (iw_img, ih_img) = (img.width() as i64, img.height() as i64);
        let (mut x0, mut y0, mut x1, mut y1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
        g.draw(|x, y, c| {
            if c <= 0.0 {
                return;
            }
            let (px, py) = (dx + x as i64, dy + y as i64);
            if px < 0 || py < 0 || px >= iw_img || py >= ih_img {
                return;
            }
            let a = (c * alpha).min(1.0);
            let p = img.get_pixel_mut(px as u32, py as u32);
            for (v, k) in p.0.iter_mut().zip(colour) {
                *v = *v * (1.0 - a) + k * a;
            }
            if c > 0.25 {
                x0 = x0.min(px);
                y0 = y0.min(py);
                x1 = x1.max(px + 1);
                y1 = y1.max(py + 1);
            }
        });
        if x0 > x1 {
            return DigitBox {
                left,
                top,
                width: 0.0,
                height: 0.0,
            };
        }
        DigitBox {
            left: x0 as f32,
            top: y0 as f32,
            width: (x1 - x0) as f32,
            height: (y1 - y0) as f32,
        }
    }

    /// One synthetic image from `rng`.
    pub fn render(&self, rng: &mut Rng) -> SynthImage {
        let cfg = &self.config;
        let geo = &self.geometry;
        let len = self.length(rng);
        let font = &self.fonts[rng.below(self.fonts.len())];
        let digits: Vec<u8> = (0..len).map(|_| rng.below(10) as u8).collect();

        // Layout in number coordinates.
        let h0 = Geometry::draw(&geo.digit_height, rng).clamp(10.0, cfg.max_digit_height.max(10.0));
        let mean_aspect: f32 = font.ink.iter().map(|&(w, h)| w / h).sum::<f32>() / 10.0;
        let stretch = (Geometry::draw(&geo.aspect, rng) / mean_aspect).clamp(0.75, 1.35);
        let mut layout: Vec<(f32, f32, f32, f32)> = Vec::with_capacity(len); // (x, y, w, h)
        let (mut x, mut y, mut h) = (0f32, 0f32, h0);
        // Set as type: the tracking, a share of the height.
        let typeset = (cfg.typeset_prob > 0.0 && rng.chance(cfg.typeset_prob))
            .then(|| rng.uniform(-0.02, 0.25));
        // Pixels per font unit when set as type: the first digit's ink is h0 high.
        let px = h0
            / digits
                .first()
                .map_or(1.0, |&d| font.ink[d as usize].1)
                .max(1e-3);
        for (i, &d) in digits.iter().enumerate() {
            let (iw, ih) = font.ink[d as usize];
            if let Some(tracking) = typeset {
                if i > 0 {
                    let space = font.side[digits[i - 1] as usize].1 + font.side[d as usize].0;
                    x += layout[i - 1].2 + (space * px * stretch) + tracking * h0;
                }
                // One baseline, which the digits' ink sits on.
                let dh = ih * px;
                layout.push((x, h0 - dh, (iw * px * stretch).max(1.0), dh));
                continue;
            }
            if i > 0 {
                let pw = layout[i - 1].2;
                let nh =
                    (h * Geometry::draw(&geo.dh, rng).clamp(0.9, 1.12)).clamp(h0 * 0.8, h0 * 1.25);
                // Real boxes are a little looser than ink boxes: shift the gap up by 0.05.
                let gap = (Geometry::draw(&geo.gap, rng) + 0.05).clamp(-0.03, 0.5) * (h + nh) / 2.0;
                x += pw + gap;
                y += Geometry::draw(&geo.dy, rng).clamp(-0.12, 0.12) * h;
                h = nh;
            }
            let w = (h * iw / ih * stretch).max(1.0);
            layout.push((x, y, w, h));
        }
        let min_y = layout.iter().map(|l| l.1).fold(f32::INFINITY, f32::min);
        let max_b = layout
            .iter()
            .map(|l| l.1 + l.3)
            .fold(f32::NEG_INFINITY, f32::max);
        let (uw, uh) = (
            layout.last().map(|l| l.0 + l.2).unwrap_or(1.0),
            max_b - min_y,
        );
        // Image size and number position.
        let mx = Geometry::draw(&geo.margin_x, rng).clamp(1.15, cfg.max_margin.max(1.15));
        let my = Geometry::draw(&geo.margin_y, rng).clamp(1.1, cfg.max_margin.clamp(1.1, 3.0));
        let iw = ((uw * mx).max(uw + 6.0).ceil() as u32).clamp(16, read::MAX_WIDTH as u32);
        let ih = ((uh * my).max(uh + 4.0).ceil() as u32).max(16);
        let cxr = Geometry::draw(&geo.centre_x, rng);
        let cyr = Geometry::draw(&geo.centre_y, rng);
        let ux = (cxr * iw as f32 - uw / 2.0).clamp(2.0, (iw as f32 - uw - 2.0).max(2.0));
        let uy = (cyr * ih as f32 - uh / 2.0).clamp(1.0, (ih as f32 - uh - 1.0).max(1.0)) - min_y;

        let mut img = self.background(iw, ih, rng);
        let (ul, ut, ur, ub) = (ux, uy + min_y, ux + uw, uy + min_y + uh);
        let mut behind = mean_colour(&img, ul, ut, ur, ub);
        if rng.chance(cfg.plate_prob) {
            let pad_x = h0 * rng.uniform(0.15, 0.7);
            let pad_y = h0 * rng.uniform(0.1, 0.45);
            let plate = contrasting_colour(behind, 0.15, rng);
            let border = rng.chance(0.4).then(|| contrasting_colour(plate, 0.3, rng));
            let (px0, py0) = ((ul - pad_x).max(0.0), (ut - pad_y).max(0.0));
            let (px1, py1) = ((ur + pad_x).min(iw as f32), (ub + pad_y).min(ih as f32));
            let bw = (h0 * 0.06).max(1.0);
            for yy in py0 as u32..py1 as u32 {
                for xx in px0 as u32..px1 as u32 {
                    let (xf, yf) = (xx as f32, yy as f32);
                    let edge = xf < px0 + bw || xf >= px1 - bw || yf < py0 + bw || yf >= py1 - bw;
                    let c = match border {
                        Some(b) if edge => b,
                        _ => plate,
                    };
                    img.put_pixel(xx, yy, Rgb(c));
                }
            }
            behind = plate;
        }
        let ink = contrasting_colour(behind, 0.3, rng);
        let shadow = rng.chance(cfg.shadow_prob).then(|| {
            let off = (h0 * rng.uniform(0.03, 0.08)).max(1.0);
            (contrasting_colour(ink, 0.3, rng), off)
        });
        let mut boxes = Vec::with_capacity(len);
        for (&d, &(x, y, w, h)) in digits.iter().zip(&layout) {
            let at = (ux + x, uy + y);
            if let Some((sc, off)) = shadow {
                self.draw_digit(&mut img, font, d, (at.0 + off, at.1 + off), (w, h), sc, 0.8);
            }
            boxes.push(self.draw_digit(&mut img, font, d, at, (w, h), ink, 1.0));
        }
        // Distractors: a digit cut by the left or right edge, far enough from the number that
        // the crop protocol (union grown 30 %) does not reach it.
        for side in [0, 1] {
            if !rng.chance(cfg.distractor_prob) {
                continue;
            }
            let d = rng.below(10) as u8;
            let (fw, fh) = font.ink[d as usize];
            let w = h0 * fw / fh * stretch;
            let shown = w * rng.uniform(0.3, 0.7);
            let left = if side == 0 {
                shown - w
            } else {
                iw as f32 - shown
            };
            let clear = if side == 0 { ul - shown } else { left - ur };
            if clear > 0.35 * uw + 0.3 * h0 {
                self.draw_digit(
                    &mut img,
                    font,
                    d,
                    (left, uy + layout[0].1),
                    (w, h0),
                    ink,
                    1.0,
                );
            }
        }
        if rng.chance(cfg.warp_prob) {
            let theta = rng.uniform(-7.0f32, 7.0).to_radians();
            let shear = rng.uniform(-0.25, 0.25);
            let sx = rng.uniform(0.9, 1.1);
            let (c, s) = (theta.cos(), theta.sin());
            // rotation · shear · scale
            let m = [c * sx, c * shear - s, s * sx, s * shear + c];
            let warp = Warp {
                centre: ((ul + ur) / 2.0, (ut + ub) / 2.0),
                m,
                k: rng.uniform(-0.35, 0.35) / iw as f32,
            };
            let src = img.clone();
            img = Rgb32FImage::from_fn(iw, ih, |u, v| {
                let (x, y) = warp.inverse(u as f32 + 0.5, v as f32 + 0.5);
                Rgb(bilinear(&src, x - 0.5, y - 0.5))
            });
            for b in &mut boxes {
                let pts = [
                    warp.forward(b.left, b.top),
                    warp.forward(b.right(), b.top),
                    warp.forward(b.left, b.bottom()),
                    warp.forward(b.right(), b.bottom()),
                ];
                let l = pts.iter().map(|p| p.0).fold(f32::INFINITY, f32::min);
                let r = pts.iter().map(|p| p.0).fold(f32::NEG_INFINITY, f32::max);
                let t = pts.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
                let bt = pts.iter().map(|p| p.1).fold(f32::NEG_INFINITY, f32::max);
                *b = DigitBox {
                    left: l,
                    top: t,
                    width: r - l,
                    height: bt - t,
                };
            }
        }
        if rng.chance(cfg.low_res_prob) {
            let k = rng.uniform(2.0, 4.0);
            let (sw, sh) = (
                ((iw as f32 / k).round() as u32).max(4),
                ((ih as f32 / k).round() as u32).max(4),
            );
            let small =
                image::imageops::resize(&img, sw, sh, image::imageops::FilterType::Triangle);
            img = image::imageops::resize(&small, iw, ih, image::imageops::FilterType::Triangle);
        }
        finish(&mut img, cfg, rng);
        let boxes = boxes.iter().map(|b| b.clamped(iw, ih)).collect();
        SynthImage {
            image: img,
            digits,
            boxes,
            font: font.name,
        }
    }

    /// One training strip (crop protocol, [`read::HEIGHT`] pixels high, stretched by
    /// `stretch`) and its digits: the union of the drawn boxes grown 5–40 % in width and
    /// 10–45 % in height.
    pub fn strip(&self, stretch: f32, rng: &mut Rng) -> (Strip, Vec<u8>) {
        let s = self.render(rng);
        let region = read::expand_region(
            read::boxes_union(&s.boxes),
            rng.uniform(1.05, 1.4),
            rng.uniform(1.1, 1.45),
            s.image.dimensions(),
        );
        (read::strip_from_region(&s.image, region, stretch), s.digits)
    }
}

/// Background patches from the digit-free parts of labelled photos (see
/// [`background_patches`]), decoded in parallel; patches taller than 96 pixels are scaled down
/// to 96 (the generator never needs more). Unreadable images are skipped.
pub fn load_backgrounds(records: &[crate::data::svhn::Record]) -> Vec<Rgb32FImage> {
    use rayon::prelude::*;
    records
        .par_iter()
        .filter_map(|r| read::load_image(&r.path).ok().map(|img| (img, &r.boxes)))
        .flat_map_iter(|(img, boxes)| background_patches(&img, boxes))
        .map(|p| {
            if p.height() <= 96 {
                return p;
            }
            let w = ((p.width() as f32 * 96.0 / p.height() as f32).round() as u32).max(12);
            image::imageops::resize(&p, w, 96, image::imageops::FilterType::Triangle)
        })
        .collect()
}

fn mean_colour(img: &Rgb32FImage, l: f32, t: f32, r: f32, b: f32) -> [f32; 3] {
    let (w, h) = img.dimensions();
    let (x0, y0) = (
        (l.max(0.0) as u32).min(w - 1),
        (t.max(0.0) as u32).min(h - 1),
    );
    let (x1, y1) = (
        (r.ceil() as u32).clamp(x0 + 1, w),
        (b.ceil() as u32).clamp(y0 + 1, h),
    );
    let mut sum = [0f32; 3];
    let mut n = 0f32;
    for y in (y0..y1).step_by(2) {
        for x in (x0..x1).step_by(2) {
            let p = img.get_pixel(x, y).0;
            for k in 0..3 {
                sum[k] += p[k];
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n.max(1.0))
}

/// Lighting gradient, blur, noise and JPEG artefacts, in place.
fn finish(img: &mut Rgb32FImage, cfg: &SynthConfig, rng: &mut Rng) {
    let (w, h) = img.dimensions();
    let (gx, gy) = (rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4));
    let gain = rng.uniform(0.8, 1.15);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let s = gain * (1.0 + gx * (x as f32 / w as f32 - 0.5) + gy * (y as f32 / h as f32 - 0.5));
        p.0 = p.0.map(|c| (c * s).clamp(0.0, 1.0));
    }
    if rng.chance(cfg.blur_prob) {
        let src = img.clone();
        // Separable [1 2 1]/4 blur, applied once (both axes).
        let at = |x: i64, y: i64| {
            src.get_pixel(
                x.clamp(0, w as i64 - 1) as u32,
                y.clamp(0, h as i64 - 1) as u32,
            )
            .0
        };
        for (x, y, p) in img.enumerate_pixels_mut() {
            let (x, y) = (x as i64, y as i64);
            let mut acc = [0f32; 3];
            for (dy, wy) in [(-1, 1.0), (0, 2.0), (1, 1.0)] {
                for (dx, wx) in [(-1, 1.0), (0, 2.0), (1, 1.0)] {
                    let q = at(x + dx, y + dy);
                    for k in 0..3 {
                        acc[k] += q[k] * wx * wy / 16.0;
                    }
                }
            }
            p.0 = acc;
        }
    }
    let sigma = rng.uniform(0.0, cfg.max_noise);
    if sigma > 0.0 {
        for p in img.pixels_mut() {
            p.0 = p.0.map(|c| (c + sigma * rng.normal()).clamp(0.0, 1.0));
        }
    }
    if rng.chance(cfg.jpeg_prob) {
        let rgb8 = image::DynamicImage::ImageRgb32F(img.clone()).to_rgb8();
        let mut bytes = Vec::new();
        let q = 15 + rng.below(56) as u8;
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, q);
        if rgb8.write_with_encoder(enc).is_ok() {
            if let Ok(back) = image::load_from_memory(&bytes) {
                *img = back.to_rgb32f();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_sets_split_the_fonts_by_family() {
        let count = |set: FontSet| FONTS.iter().filter(|(n, _)| set.contains(n)).count();
        assert_eq!(count(FontSet::All), FONTS.len());
        assert_eq!(count(FontSet::HeldOut), 15);
        assert_eq!(
            count(FontSet::Training) + count(FontSet::HeldOut),
            FONTS.len()
        );
        for family in HELD_OUT_FAMILIES {
            assert!(FONTS.iter().any(|(n, _)| n.starts_with(family)), "{family}");
        }
        // A family is held out whole, weights and widths included; look-alike names are not.
        let table = [
            ("Go-Mono", true),
            ("Cabin-Bold", true),
            ("Roboto-Thin", false),
            ("LinLibertine_RB", false),
        ];
        for (name, held_out) in table {
            assert_eq!(FontSet::HeldOut.contains(name), held_out, "{name}");
            assert_eq!(FontSet::Training.contains(name), !held_out, "{name}");
        }
        let config = SynthConfig {
            fonts: FontSet::HeldOut,
            ..SynthConfig::clean()
        };
        let synth = Synth::new(config, Vec::new());
        assert_eq!(synth.num_fonts(), 15);
        let drawn = synth.render_nth(1, 0).font;
        assert!(FontSet::HeldOut.contains(drawn), "{drawn}");
    }

    #[test]
    fn geometry_table_parses_and_is_sorted() {
        let g = Geometry::builtin();
        for t in [&g.digit_height, &g.aspect, &g.gap, &g.margin_x, &g.centre_y] {
            assert_eq!(t.len(), 101);
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
        assert_eq!(g.length.values().sum::<u64>(), 33_402);
    }

    #[test]
    fn warp_inverse_undoes_forward() {
        let w = Warp {
            centre: (40.0, 12.0),
            m: [0.98, -0.2, 0.1, 1.02],
            k: 0.004,
        };
        for &(x, y) in &[(0.0, 0.0), (80.0, 24.0), (13.5, 7.25)] {
            let (u, v) = w.forward(x, y);
            let (bx, by) = w.inverse(u, v);
            assert!(
                (bx - x).abs() < 1e-3 && (by - y).abs() < 1e-3,
                "{x},{y} -> {bx},{by}"
            );
        }
    }
}
