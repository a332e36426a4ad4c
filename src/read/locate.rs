//! The first stage of the `locate` protocol, through tract: the exported localiser
//! ([`crate::engine::localiser`]) looks at the whole photo (resized to its input size and
//! normalised like a strip) and predicts the number's box (directly, or as column and row
//! profiles decoded by [`decode`]); the reader then reads that box grown by [`GROW`] in both
//! directions, as the crop protocol reads the labelled box.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::Rgb32FImage;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::read::metadata::{self, LOC_BINS_KEY, LOC_KEY, LOC_REFINE_KEY, LOC_THRESHOLD_KEY};
use crate::read::{self, Region};

/// The shipped localiser, compiled into the library.
pub static EMBEDDED_LOCALISER: &[u8] = include_bytes!("../../onnx/localiser.onnx");

/// sha256 of [`EMBEDDED_LOCALISER`], lowercase hex (recorded at build time).
pub const EMBEDDED_LOCALISER_SHA256: &str = env!("HOUSENUM_LOCALISER_SHA256");

/// How much the predicted box grows (width and height) before it is read: the crop protocol's
/// factor, the framing the reader was trained on.
pub const GROW: f32 = 1.3;

/// Outputs of a box head: `x0, y0, x1, y1` as fractions of the image width and height.
pub const OUTPUTS: usize = 4;

/// The band threshold of [`profile_span`] when a localiser's metadata names none
/// ([`LOC_THRESHOLD_KEY`]), and the one training's validation decodes with.
pub const THRESHOLD: f32 = 0.5;

/// A band threshold written as text (metadata [`LOC_THRESHOLD_KEY`], `export-localiser
/// --threshold`): a number strictly between 0 and 1, else `None`.
pub fn parse_threshold(s: &str) -> Option<f32> {
    s.parse::<f32>().ok().filter(|t| *t > 0.0 && *t < 1.0)
}

/// The box `(x0, y0, x1, y1)`, fractions of the image with `x0 ≤ x1` and `y0 ≤ y1`, from one
/// image's head output: a box head's four values, or (with `bins`) the column and row profiles
/// decoded by [`profile_span`] at `threshold`.
///
/// # Shapes
/// `out`: `[4]`, or `[bx + by]` with `bins = Some([bx, by])` → `[4]`.
pub fn decode(bins: Option<[usize; 2]>, threshold: f32, out: &[f32]) -> [f32; 4] {
    match bins {
        None => [
            out[0].min(out[2]),
            out[1].min(out[3]),
            out[0].max(out[2]),
            out[1].max(out[3]),
        ],
        Some([bx, _]) => {
            let (x0, x1) = profile_span(&out[..bx], threshold);
            let (y0, y1) = profile_span(&out[bx..], threshold);
            [x0, y0, x1, y1]
        }
    }
}

/// Decode one axis's profile into `(lo, hi)` fractions: the run of bands whose value is at least
/// `threshold` with the largest sum (the first on ties), each edge placed inside its band as the
/// coverage of the two bands at the edge says — exact for the targets of
/// [`profile_targets`](crate::engine::localiser::profile_targets) when those two bands are not
/// both cut by the box's two edges. When no band reaches `threshold`: the highest band.
pub fn profile_span(p: &[f32], threshold: f32) -> (f32, f32) {
    let bins = p.len();
    let mut best: Option<(usize, usize, f32)> = None;
    let mut j = 0;
    while j < bins {
        if p[j] < threshold {
            j += 1;
            continue;
        }
        let start = j;
        let mut mass = 0.0;
        while j < bins && p[j] >= threshold {
            mass += p[j];
            j += 1;
        }
        if best.is_none_or(|(_, _, m)| mass > m) {
            best = Some((start, j - 1, mass));
        }
    }
    let Some((s, e, _)) = best else {
        let top = (0..bins).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        return (top as f32 / bins as f32, (top + 1) as f32 / bins as f32);
    };
    let at = |i: Option<usize>| i.and_then(|i| p.get(i)).copied().unwrap_or(0.0);
    let lo = (s as f32 + 1.0 - at(Some(s)) - at(s.checked_sub(1))) / bins as f32;
    let hi = (e as f32 + at(Some(e)) + at(Some(e + 1))) / bins as f32;
    (
        lo.clamp(0.0, 1.0),
        hi.clamp(0.0, 1.0).max(lo.clamp(0.0, 1.0)),
    )
}

/// The context of the second, finer pass of [`Locator::locate_refined`] that
/// `export-localiser --refine` records, as multiples of the first box's width and height: the
/// number spans a median 29 % of the width and 71 % of the height of SVHN's training photos,
/// the framing the localiser learnt.
pub const REFINE_CONTEXT: (f32, f32) = (3.5, 1.4);

/// [`Locator::locate_refined`] keeps the first box when its context already covers this share
/// of the photo's width and height.
pub const REFINE_SKIP: f32 = 0.9;

/// The margin around the photo of the localiser's look again when its first box spans
/// [`FILLS_WIDTH`] of the photo ([`Locator::locate_with`], `read --margin on`), as fractions of
/// the photo's width and height on each side: the photo framed 1.25 times as wide and 1.1 times
/// as high. A number that fills a photo cropped close is then cut less often (docs/experiments.md,
/// "Photos cropped close to the number": measured, not the default).
pub const MARGIN: (f32, f32) = (0.125, 0.05);

/// A first box spanning at least this share of the photo's width makes the localiser look again
/// in a [`MARGIN`] ([`Locator::locate_with`]): the number fills the photo's width as in a photo
/// cropped close (SVHN's numbers span a median 29 %; on development a box this wide is a
/// quarter of the photos as they are, nine in ten of those cut at the digits, no canvas without
/// a number).
pub const FILLS_WIDTH: f32 = 0.35;

/// Whether `rect` (`(left, top, right, bottom)` pixels) spans at least [`FILLS_WIDTH`] of a
/// photo `w` pixels wide.
pub fn fills_width(rect: (f32, f32, f32, f32), w: u32) -> bool {
    rect.2 - rect.0 >= FILLS_WIDTH * w as f32
}

/// `margin` (fractions of the width and height, [`MARGIN`]) in whole pixels of a `w × h` photo:
/// each rounded half away from zero.
pub fn margin_pixels(w: u32, h: u32, margin: (f32, f32)) -> (u32, u32) {
    (
        (w as f32 * margin.0).round() as u32,
        (h as f32 * margin.1).round() as u32,
    )
}

/// A loaded localiser.
pub struct Locator {
    source: PathBuf,
    height: usize,
    width: usize,
    /// Profile bands `[bx, by]` of a profile localiser; `None` for a box head.
    bins: Option<[usize; 2]>,
    /// The profiles' band threshold ([`LOC_THRESHOLD_KEY`], default [`THRESHOLD`]).
    threshold: f32,
    /// The second pass's context ([`LOC_REFINE_KEY`]); `None`: one pass.
    refine: Option<(f32, f32)>,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("source", &self.source)
            .field("input", &(self.height, self.width))
            .field("bins", &self.bins)
            .field("threshold", &self.threshold)
            .field("refine", &self.refine)
            .finish()
    }
}

impl Locator {
    /// The localiser compiled into the binary.
    pub fn embedded() -> Result<Locator> {
        Locator::from_bytes(EMBEDDED_LOCALISER, Path::new("<embedded localiser>"))
    }

    /// A localiser from an `.onnx` file written by `housenum train-localiser --export`.
    pub fn from_path(path: &Path) -> Result<Locator> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Locator::from_bytes(&bytes, path)
    }

    /// A localiser from ONNX bytes; `source` names it in errors. The input size comes from the
    /// [`LOC_KEY`] metadata (`HEIGHTxWIDTH`); the plan is built and run once here, so a wrong
    /// model fails now, naming the file.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Locator> {
        let err = |reason: String| metadata::model_error(source, reason);
        let model = metadata::parse_model(bytes, source)?;
        let meta = |key: &str| metadata::metadata(&model, key, source);
        let pair = |s: &str| {
            s.split_once('x')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .filter(|&(a, b)| (1..=1024).contains(&a) && (1..=1024).contains(&b))
        };
        let size = meta(LOC_KEY)?
            .ok_or_else(|| err(format!("no {LOC_KEY} metadata: not a housenum localiser")))?;
        let (height, width) = pair(&size)
            .ok_or_else(|| err(format!("{LOC_KEY} metadata is not HEIGHTxWIDTH: {size:?}")))?;
        let bins = match meta(LOC_BINS_KEY)? {
            None => None,
            Some(b) => {
                let (bx, by) = pair(&b)
                    .ok_or_else(|| err(format!("{LOC_BINS_KEY} metadata is not BXxBY: {b:?}")))?;
                Some([bx, by])
            }
        };
        let threshold = match meta(LOC_THRESHOLD_KEY)? {
            None => THRESHOLD,
            Some(t) => parse_threshold(&t).ok_or_else(|| {
                err(format!(
                    "{LOC_THRESHOLD_KEY} metadata is not a number between 0 and 1: {t:?}"
                ))
            })?,
        };
        let refine = match meta(LOC_REFINE_KEY)? {
            None => None,
            Some(r) => {
                let parsed = r
                    .split_once('x')
                    .and_then(|(a, b)| Some((a.parse::<f32>().ok()?, b.parse::<f32>().ok()?)))
                    .filter(|&(a, b)| (1.0..=64.0).contains(&a) && (1.0..=64.0).contains(&b));
                Some(parsed.ok_or_else(|| {
                    err(format!(
                        "{LOC_REFINE_KEY} metadata is not WIDTHxHEIGHT factors from 1 to 64: {r:?}"
                    ))
                })?)
            }
        };
        let plan = crate::read::plan::build(model, f32::fact([1, 3, height, width]).into())
            .map_err(|e| err(format!("cannot build an inference plan: {e}")))?;
        let locator = Locator {
            source: source.to_path_buf(),
            height,
            width,
            bins,
            threshold,
            refine,
            plan,
        };
        let probe = vec![0f32; 3 * height * width];
        locator.run(&probe).map_err(|e| {
            err(format!(
                "does not run on a [1, 3, {height}, {width}] image: {e}"
            ))
        })?;
        Ok(locator)
    }

    /// Where the localiser came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The localiser's input size `(height, width)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// The graph on one prepared input (resized to [`Locator::input_size`] and normalised like
    /// a strip): its raw outputs, before [`crate::read::locate::decode`].
    ///
    /// # Shapes
    /// `x`: `[3, height, width]` → `[4]` (a box head) or `[bx + by]` (profiles).
    pub fn run(&self, x: &[f32]) -> Result<Vec<f32>> {
        let input = Tensor::from_shape(&[1, 3, self.height, self.width], x)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| Error::Inference(e.to_string()))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(e.to_string()))?;
        let v: Vec<f32> = view.iter().cloned().collect();
        let want = self.bins.map_or(OUTPUTS, |[bx, by]| bx + by);
        if v.len() != want {
            return Err(Error::Inference(format!(
                "localiser gave {} values, not {want}",
                v.len()
            )));
        }
        Ok(v)
    }

    /// The number's predicted box in `img`, as `(left, top, right, bottom)` pixels: one pass
    /// over the whole photo, then, for a localiser whose metadata asks for it
    /// ([`Locator::refine`]), a second pass on the context around that box
    /// ([`Locator::locate_refined`]). What `housenum read` does.
    pub fn locate(&self, img: &Rgb32FImage) -> Result<(f32, f32, f32, f32)> {
        self.locate_with(img, None)
    }

    /// [`Locator::locate`], and with `margin` (fractions of the photo's width and height on
    /// each side, e.g. [`MARGIN`]) a look again at the photo framed in it when the first box
    /// spans [`FILLS_WIDTH`] of the photo (`read --margin on`).
    pub fn locate_with(
        &self,
        img: &Rgb32FImage,
        margin: Option<(f32, f32)>,
    ) -> Result<(f32, f32, f32, f32)> {
        let first = match margin {
            Some(m) => self.locate_first(img, m)?,
            None => self.locate_once(img)?,
        };
        match self.refine {
            Some(context) => self.locate_refined(img, first, context),
            None => Ok(first),
        }
    }

    /// One pass over the whole photo.
    pub fn locate_once(&self, img: &Rgb32FImage) -> Result<(f32, f32, f32, f32)> {
        let (w, h) = img.dimensions();
        self.locate_in(img, Region::full(w, h))
    }

    /// One pass over the whole photo; when its box spans [`FILLS_WIDTH`] of the photo's width
    /// (as in a photo cropped close, where that box tends to cut an edge digit), a pass over the
    /// photo framed in `margin` ([`Locator::locate_in_margin`]) gives the box instead.
    fn locate_first(&self, img: &Rgb32FImage, margin: (f32, f32)) -> Result<(f32, f32, f32, f32)> {
        let first = self.locate_once(img)?;
        if fills_width(first, img.width()) {
            self.locate_in_margin(img, margin)
        } else {
            Ok(first)
        }
    }

    /// The number's predicted box in the whole photo framed in a margin of `margin` (fractions
    /// of its width and height on each side, [`margin_pixels`]) filled with the mean colour of
    /// its border ([`read::border_mean`]), as `(left, top, right, bottom)` pixels of `img`
    /// (clamped to it). The localiser learnt numbers with background around them (SVHN's
    /// framing, and looser); in a photo cropped close, the number touches the photo's edges and
    /// the box alone would cut its edge digits.
    pub fn locate_in_margin(
        &self,
        img: &Rgb32FImage,
        margin: (f32, f32),
    ) -> Result<(f32, f32, f32, f32)> {
        let (w, h) = img.dimensions();
        let (mx, my) = margin_pixels(w, h, margin);
        let fill = read::border_mean(img);
        let mut x = read::resize_in_margin(img, (mx, my), fill, self.width, self.height);
        read::normalize(&mut x);
        let b = decode(self.bins, self.threshold, &self.run(&x)?);
        let (cw, ch) = ((w + 2 * mx) as f32, (h + 2 * my) as f32);
        let (mx, my, w, h) = (mx as f32, my as f32, w as f32, h as f32);
        let x0 = (b[0] * cw - mx).clamp(0.0, w);
        let y0 = (b[1] * ch - my).clamp(0.0, h);
        Ok((
            x0,
            y0,
            (b[2] * cw - mx).clamp(x0, w),
            (b[3] * ch - my).clamp(y0, h),
        ))
    }

    /// The band threshold its profiles are decoded at ([`profile_span`]).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The context of the second pass, as multiples of the first box's width and height
    /// (metadata [`LOC_REFINE_KEY`]); `None`: one pass.
    pub fn refine(&self) -> Option<(f32, f32)> {
        self.refine
    }

    /// The number's predicted box within `region` of `img` (the region resized to the
    /// localiser's input), as `(left, top, right, bottom)` pixels of `img`.
    pub fn locate_in(&self, img: &Rgb32FImage, region: Region) -> Result<(f32, f32, f32, f32)> {
        let mut x = read::resize_region(img, region, self.width, self.height);
        read::normalize(&mut x);
        let b = decode(self.bins, self.threshold, &self.run(&x)?);
        let (x0, y0) = (region.x0 as f32, region.y0 as f32);
        let (w, h) = (region.width() as f32, region.height() as f32);
        Ok((x0 + b[0] * w, y0 + b[1] * h, x0 + b[2] * w, y0 + b[3] * h))
    }

    /// Coarse to fine: the box `first` found in the photo, found again on `context`
    /// (multiples of its width and height, e.g. [`REFINE_CONTEXT`]) around it, where a number
    /// that is small in the photo appears at the size the localiser was trained on. Photos
    /// already framed like that (the context covers [`REFINE_SKIP`] of both sides) keep
    /// `first`.
    pub fn locate_refined(
        &self,
        img: &Rgb32FImage,
        first: (f32, f32, f32, f32),
        context: (f32, f32),
    ) -> Result<(f32, f32, f32, f32)> {
        let (w, h) = img.dimensions();
        let context = read::expand_region(first, context.0, context.1, (w, h));
        if context.width() as f32 >= REFINE_SKIP * w as f32
            && context.height() as f32 >= REFINE_SKIP * h as f32
        {
            return Ok(first);
        }
        self.locate_in(img, context)
    }

    /// [`Locator::locate`] with the first pass on `region` of the photo instead of all of it
    /// (no margin): the second pass looks at the context in the photo, reaching outside
    /// `region` (skipped only when that context covers [`REFINE_SKIP`] of the photo), so that a
    /// number the region cuts is seen whole. One pass for a localiser without
    /// [`Locator::refine`]. What the second look ([`crate::Reader::second_look`]) runs on each
    /// tile.
    pub fn locate_within(&self, img: &Rgb32FImage, region: Region) -> Result<(f32, f32, f32, f32)> {
        let first = self.locate_in(img, region)?;
        match self.refine {
            Some(context) => self.locate_refined(img, first, context),
            None => Ok(first),
        }
    }

    /// The number's box near `bounds` (`(left, top, right, bottom)` pixels, e.g. a detector's
    /// candidate): one pass on the surroundings the localiser's second pass sees
    /// ([`Locator::refine`]'s context; twice the box each way for a one-pass localiser).
    pub fn locate_around(
        &self,
        img: &Rgb32FImage,
        bounds: (f32, f32, f32, f32),
    ) -> Result<(f32, f32, f32, f32)> {
        let (cx, cy) = self.refine.unwrap_or((2.0, 2.0));
        self.locate_in(img, read::expand_region(bounds, cx, cy, img.dimensions()))
    }

    /// The tiles of the second look in a `w × h` photo: 3 × 3 windows of half its width and
    /// height (integer pixels), at steps of a quarter, row by row.
    pub fn tiles(w: u32, h: u32) -> Vec<Region> {
        let (tw, th) = ((w / 2).max(1), (h / 2).max(1));
        let at = |k: u32, size: u32| (k as u64 * size as u64 / 4) as u32;
        (0..3)
            .flat_map(|j| {
                (0..3).map(move |i| Region {
                    x0: at(i, w),
                    y0: at(j, h),
                    x1: (at(i, w) + tw).min(w),
                    y1: (at(j, h) + th).min(h),
                })
            })
            .collect()
    }

    /// The region the `locate` protocol reads with one view (`--views 1`; the first of
    /// [`crate::read::framings::FRAMINGS`]): the predicted box grown by [`GROW`].
    pub fn region(&self, img: &Rgb32FImage) -> Result<Region> {
        Ok(read::expand_region(
            self.locate(img)?,
            GROW,
            GROW,
            img.dimensions(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiles: 3 × 3 windows of half the photo, at quarter steps, inside the photo.
    #[test]
    fn tiles_table() {
        let r = |x0, y0, x1, y1| Region { x0, y0, x1, y1 };
        let cases: [((u32, u32), Vec<Region>); 2] = [
            (
                (100, 80),
                vec![
                    r(0, 0, 50, 40),
                    r(25, 0, 75, 40),
                    r(50, 0, 100, 40),
                    r(0, 20, 50, 60),
                    r(25, 20, 75, 60),
                    r(50, 20, 100, 60),
                    r(0, 40, 50, 80),
                    r(25, 40, 75, 80),
                    r(50, 40, 100, 80),
                ],
            ),
            (
                (1, 3),
                [vec![r(0, 0, 1, 1); 6], vec![r(0, 1, 1, 2); 3]].concat(),
            ),
        ];
        for ((w, h), want) in cases {
            assert_eq!(Locator::tiles(w, h), want, "{w}x{h}");
        }
    }
}
