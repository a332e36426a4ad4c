//! Training the [`Localiser`]: whole training-split photos with the union of their digit boxes
//! as the target, augmented by random crops that keep the whole number (so it sees tight and
//! loose framings), mirror images (the box mirrors with it), inverted and channel-swapped
//! colours and contrast changes. Smooth-L1 loss on the four box fractions (a profile head,
//! [`LocaliserConfig::bins`]: binary cross-entropy on the bands' coverage of the box, the
//! validation IoU on the decoded box), Adam with warm-up and
//! cosine decay, global-norm clipping, a checkpoint after every epoch (resumable), and the mean
//! IoU on the validation split (held out by name, never trained on) as a per-epoch monitor.
//! With teachers ([`LocTrainConfig::teachers`]) it distils them: their mean profile on each
//! training input becomes (part of) its target, and unlabelled photos can join the training.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::data::framing::{background, zoom_out};
use crate::data::recombine::{compose, compose_stacked, cut_digits, paste_into, DigitCrop};
use crate::data::svhn::{split_held_out, Fold, Record, SvhnSet};
use crate::data::synth::background_patches;
use crate::engine::localiser::{
    iou, profile_bce, profile_targets, smooth_l1, Localiser, LocaliserConfig,
};
use crate::error::{Error, Result};
use crate::read::{self, boxes_union, DigitBox, Region};
use crate::rng::Rng;
use crate::train::checkpoint::{ck_err, load_flat, meta_json, save_flat, write_history};
use crate::train::optim::{clip_grad_norm, lr_at, Adam};

/// Everything that defines a localiser training run; saved in its checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LocTrainConfig {
    /// Folder in the official SVHN layout (digit boxes are the targets).
    pub data: PathBuf,
    /// Output folder: `localiser.safetensors` (checkpoint) and `history.json`.
    pub out: PathBuf,
    /// Epochs over the training split.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Global gradient-norm clip.
    pub clip_norm: f32,
    /// Seed of initialisation, augmentation and order.
    pub seed: u64,
    /// Share of images (by file-name hash) held out for validation.
    pub val_fraction: f64,
    /// Use at most this many training images (for quick runs).
    pub limit: Option<usize>,
    /// Train on the other folds and hold this one out instead of the validation split, which
    /// is then trained on by neither ([`Fold`]): k-fold cross-validation.
    #[serde(default)]
    pub fold: Option<Fold>,
    /// Architecture.
    pub model: LocaliserConfig,
    /// No progress bars.
    pub quiet: bool,
    /// More official-layout folders (e.g. `housenum synth` output) whose every image is
    /// trained on too; validation stays the `data` folder's split.
    #[serde(default)]
    pub extra: Vec<PathBuf>,
    /// Share of samples replaced by a number recombined from the training split's real digits
    /// (1 to `recombine_max_len` of them side by side, `crate::data::recombine`): numbers longer than
    /// any real training number, so that the box grows with the number. 0 draws nothing.
    #[serde(default)]
    pub recombine_prob: f32,
    /// Longest recombined number.
    #[serde(default = "default_recombine_max_len")]
    pub recombine_max_len: usize,
    /// Share of samples where a recombined number of as many to `recombine_max_len` digits as
    /// the photo's own is pasted over that number in the photo ([`crate::data::recombine::paste_into`]):
    /// long numbers seen inside a real scene. 0 draws nothing.
    #[serde(default)]
    pub paste_prob: f32,
    /// Share of samples framed looser: the photo placed in a canvas up to `zoom_out_max` times
    /// its width and height (the factor log-uniform), filled with digit-free parts of other
    /// training photos ([`crate::data::framing::zoom_out`]), so that numbers small in the frame
    /// are found. 0 draws nothing.
    #[serde(default)]
    pub zoom_out_prob: f32,
    /// Share of samples replaced by a number of 2 to [`STACKED_MAX_LEN`] real digits stacked
    /// one above the next ([`crate::data::recombine::compose_stacked`]) in a canvas of
    /// digit-free parts of the training photos, its height up to `zoom_out_max` times the
    /// column's (log-uniform) and its width 0.7–2 times its height: the box of a column of
    /// digits is the whole column, as on doorposts and vertical signs. 0 draws nothing.
    #[serde(default)]
    pub stacked_prob: f32,
    /// Share of samples replaced by a canvas of digit-free parts of the training photos that
    /// holds no number: a training photo's size times a factor log-uniform in
    /// `[1, zoom_out_max]`, whose target covers no band, so that clutter is not boxed like a
    /// number. Profile heads only (`model.bins`). 0 draws nothing.
    #[serde(default)]
    pub empty_prob: f32,
    /// Largest zoom-out factor.
    #[serde(default = "default_zoom_out_max")]
    pub zoom_out_max: f32,
    /// Draw the width and height factors of a zoom-out independently (canvases of every
    /// aspect) instead of one factor for both.
    #[serde(default)]
    pub zoom_out_independent: bool,
    /// Share of samples cut close to the number, as people crop a photo to what they want
    /// read: each side of the crop lies between the number's edge and [`ZOOM_IN_MARGIN`] of its
    /// size beyond it (`sample_close`), so that a number filling the photo is boxed whole.
    #[serde(default)]
    pub zoom_in_prob: f32,
    /// Stop after this many epochs in total (the learning-rate schedule still spans `epochs`;
    /// a later call resumes): a run cut in parts, as a kill would cut it.
    #[serde(default)]
    pub stop_after: Option<usize>,
    /// Localiser checkpoints to distil (profile heads with this run's input and bands): every
    /// sample's target becomes their mean profile on the very input the student sees, mixed
    /// with the labelled box's coverage by `teacher_weight`. Empty: plain training.
    #[serde(default)]
    pub teachers: Vec<PathBuf>,
    /// Share of the teachers' mean profile in a labelled sample's target (the rest is the
    /// labelled box's coverage); unlabelled photos (`pool`) take the teachers' profile alone.
    #[serde(default)]
    pub teacher_weight: f32,
    /// Unlabelled photos trained on as well (needs `teachers`): each is cropped around the box
    /// the teachers find in the whole photo, and the teachers' profile of the crop is its target.
    #[serde(default)]
    pub pool: Vec<PathBuf>,
    /// Start from this localiser checkpoint's weights (same architecture) with a fresh
    /// optimiser, instead of a random initialisation.
    #[serde(default)]
    pub init: Option<PathBuf>,
}

impl LocTrainConfig {
    /// The options a resumed run must share with the run it continues: everything that shapes
    /// the samples, the order and the steps, except `epochs` (a finished run can be resumed
    /// with its epoch count to export it) and where data and output live.
    pub fn options(&self) -> serde_json::Value {
        let mut o = serde_json::json!({
            "batch_size": self.batch_size,
            "lr": self.lr,
            "clip_norm": self.clip_norm,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "limit": self.limit,
            "recombine_prob": self.recombine_prob,
            "recombine_max_len": self.recombine_max_len,
            "extra": self.extra,
        });
        // Recorded only when used, so checkpoints of earlier runs still resume.
        if self.paste_prob > 0.0 {
            o["paste_prob"] = serde_json::json!(self.paste_prob);
        }
        if let Some(fold) = self.fold {
            o["fold"] = serde_json::json!(fold.to_string());
        }
        if self.stacked_prob > 0.0 {
            o["stacked_prob"] = serde_json::json!(self.stacked_prob);
        }
        if self.empty_prob > 0.0 {
            o["empty_prob"] = serde_json::json!(self.empty_prob);
        }
        if self.zoom_out_prob > 0.0 {
            o["zoom_out_prob"] = serde_json::json!(self.zoom_out_prob);
            o["zoom_out_max"] = serde_json::json!(self.zoom_out_max);
            if self.zoom_out_independent {
                o["zoom_out_independent"] = serde_json::json!(true);
            }
        }
        if self.zoom_in_prob > 0.0 {
            o["zoom_in_prob"] = serde_json::json!(self.zoom_in_prob);
        }
        if !self.teachers.is_empty() {
            o["teachers"] = serde_json::json!(self.teachers);
            o["teacher_weight"] = serde_json::json!(self.teacher_weight);
            o["pool_images"] = serde_json::json!(self.pool.len());
        }
        if let Some(init) = &self.init {
            o["init"] = serde_json::json!(init);
        }
        o
    }
}

fn default_zoom_out_max() -> f32 {
    6.0
}

/// Longest side of a zoom-out canvas, pixels: the photo is scaled down first when the canvas
/// would be larger (the localiser sees at most 64 × 128 of it).
const ZOOM_CANVAS_SIDE: f32 = 512.0;

/// The 8 patches of `backgrounds` a canvas is filled with, drawn with replacement.
fn canvas_patches<'a>(backgrounds: &'a [Rgb32FImage], rng: &mut Rng) -> Vec<&'a Rgb32FImage> {
    (0..8)
        .map(|_| &backgrounds[rng.below(backgrounds.len())])
        .collect()
}

/// `item` framed `kx` × `ky` times looser ([`zoom_out`]) at a resolution whose longest side is
/// at most [`ZOOM_CANVAS_SIDE`], with its box moved and scaled along.
fn zoomed_out(
    item: &Item,
    (kx, ky): (f32, f32),
    backgrounds: &[Rgb32FImage],
    rng: &mut Rng,
) -> Item {
    let patches = canvas_patches(backgrounds, rng);
    let (w, h) = item.image.dimensions();
    let s = (ZOOM_CANVAS_SIDE / (kx * w as f32).max(ky * h as f32)).min(1.0);
    let (sw, sh) = (
        ((w as f32 * s).round() as u32).max(1),
        ((h as f32 * s).round() as u32).max(1),
    );
    let small = if s < 1.0 {
        image::imageops::resize(&item.image, sw, sh, image::imageops::FilterType::Triangle)
    } else {
        item.image.clone()
    };
    let (fx, fy) = (sw as f32 / w as f32, sh as f32 / h as f32);
    let (l, t, r, b) = item.target;
    let digit = DigitBox {
        left: l * fx,
        top: t * fy,
        width: (r - l) * fx,
        height: (b - t) * fy,
    };
    let (image, moved) = zoom_out(&small, &[digit], (kx, ky), &patches, rng);
    Item {
        image,
        target: boxes_union(&moved),
        digits: item.digits,
        labelled: item.labelled,
    }
}

/// Most digits in a stacked training number ([`LocTrainConfig::stacked_prob`]).
pub const STACKED_MAX_LEN: usize = 4;

/// A column of 2 to [`STACKED_MAX_LEN`] real digits from `pool`, framed in a canvas of
/// `backgrounds`: the canvas `ky` times the column's height (`ky` log-uniform in
/// `[1, zoom_out_max]`) and 0.7–2 times as wide as it is tall (never narrower than the column).
fn stacked_in_canvas(
    pool: &[DigitCrop],
    backgrounds: &[Rgb32FImage],
    zoom_out_max: f32,
    rng: &mut Rng,
) -> Item {
    let len = 2 + rng.below(STACKED_MAX_LEN - 1);
    let (image, boxes, digits) = compose_stacked(pool, len, rng);
    let column = Item {
        target: boxes_union(&boxes),
        digits: digits.len(),
        labelled: true,
        image,
    };
    let (w, h) = column.image.dimensions();
    let ky = zoom_out_max.max(1.0).powf(rng.f32());
    let kx = (ky * h as f32 * rng.uniform(0.7, 2.0) / w as f32).max(1.0);
    zoomed_out(&column, (kx, ky), backgrounds, rng)
}

/// A canvas holding no number ([`LocTrainConfig::empty_prob`]): `(width, height)` (a training
/// photo's size) times `k`, log-uniform in `[1, zoom_out_max]`, at most [`ZOOM_CANVAS_SIDE`] on
/// its longest side, filled with [`canvas_patches`] ([`background`]).
fn empty_canvas(
    (width, height): (u32, u32),
    backgrounds: &[Rgb32FImage],
    zoom_out_max: f32,
    rng: &mut Rng,
) -> Rgb32FImage {
    let patches = canvas_patches(backgrounds, rng);
    let k = zoom_out_max.max(1.0).powf(rng.f32());
    let (w, h) = (width as f32 * k, height as f32 * k);
    let s = (ZOOM_CANVAS_SIDE / w.max(h)).min(1.0);
    let (cw, ch) = (
        ((w * s).round() as u32).max(1),
        ((h * s).round() as u32).max(1),
    );
    background(cw, ch, &patches, rng)
}

/// A training sample of a canvas holding no number: the whole canvas resized, maybe mirrored,
/// its colours changed (as [`sample`] does). Returns the `[3, height, width]` input; its target
/// is the empty box `[0; 4]`, which covers no band ([`profile_targets`]).
fn empty_sample(canvas: &Rgb32FImage, cfg: &LocaliserConfig, rng: &mut Rng) -> Vec<f32> {
    let (w, h) = canvas.dimensions();
    let region = Region {
        x0: 0,
        y0: 0,
        x1: w,
        y1: h,
    };
    augmented_input(canvas, region, cfg, rng).0
}

fn default_recombine_max_len() -> usize {
    10
}

/// One epoch of a localiser run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LocEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f32,
    /// Mean IoU of the predicted and labelled boxes on the validation split (whole images).
    pub val_iou: f64,
    /// Share of validation images with IoU ≥ 0.5.
    pub val_iou50: f64,
    /// Seconds of this epoch.
    pub seconds: f64,
}

/// A photo in memory with the box of its number as `(x0, y0, x1, y1)` pixels.
struct Item {
    image: Rgb32FImage,
    target: (f32, f32, f32, f32),
    /// How many digits the number has (0 for an unlabelled photo).
    digits: usize,
    /// Whether `target` is a labelled box (`false`: the teachers' box of an unlabelled photo).
    labelled: bool,
}

/// The localiser's input for a region of an image: resized to `height × width` with the strip
/// resampler and normalised like a strip.
///
/// # Shapes
/// Returns `[3, height, width]`.
pub fn input_of(img: &Rgb32FImage, region: Region, cfg: &LocaliserConfig) -> Vec<f32> {
    let mut x = read::resize_region(img, region, cfg.width, cfg.height);
    read::normalize(&mut x);
    x
}

/// A training sample: a random crop that keeps the whole number, maybe mirrored, its colours
/// changed. Returns (`[3, height, width]` input, `[4]` box fractions of the crop).
fn sample(item: &Item, cfg: &LocaliserConfig, rng: &mut Rng) -> (Vec<f32>, [f32; 4]) {
    let (iw, ih) = item.image.dimensions();
    let (l, t, r, b) = number_box(item);
    // Each side: keep the image edge, or cut somewhere between it and the number.
    let mut side = |keep: f32, room: f32| -> f32 {
        if rng.chance(keep) {
            0.0
        } else {
            rng.f32() * room
        }
    };
    let x0 = side(0.3, l).floor() as u32;
    let y0 = side(0.5, t).floor() as u32;
    let x1 = iw - side(0.3, iw as f32 - r).floor() as u32;
    let y1 = ih - side(0.5, ih as f32 - b).floor() as u32;
    sample_in(item, (l, t, r, b), Region { x0, y0, x1, y1 }, cfg, rng)
}

/// The widest margin of a sample cut close (`sample_close`), as a share of the number's width
/// and height on each side.
pub const ZOOM_IN_MARGIN: f32 = 0.25;

/// A training sample cut close to the number: each side of the crop between the number's edge
/// and [`ZOOM_IN_MARGIN`] of its size beyond it (drawn for each side alone), within the photo.
/// Returns (`[3, height, width]` input, `[4]` box fractions of the crop), like [`sample`].
fn sample_close(item: &Item, cfg: &LocaliserConfig, rng: &mut Rng) -> (Vec<f32>, [f32; 4]) {
    let (iw, ih) = item.image.dimensions();
    let (l, t, r, b) = number_box(item);
    let (mw, mh) = ((r - l) * ZOOM_IN_MARGIN, (b - t) * ZOOM_IN_MARGIN);
    let x0 = (l - rng.f32() * mw).floor().max(0.0) as u32;
    let y0 = (t - rng.f32() * mh).floor().max(0.0) as u32;
    let x1 = ((r + rng.f32() * mw).ceil() as u32).clamp(x0 + 1, iw);
    let y1 = ((b + rng.f32() * mh).ceil() as u32).clamp(y0 + 1, ih);
    sample_in(item, (l, t, r, b), Region { x0, y0, x1, y1 }, cfg, rng)
}

/// The item's number box `(l, t, r, b)` clamped into its photo, at least a pixel each way.
fn number_box(item: &Item) -> (f32, f32, f32, f32) {
    let (iw, ih) = item.image.dimensions();
    let (l, t, r, b) = item.target;
    let (l, t) = (l.clamp(0.0, iw as f32 - 1.0), t.clamp(0.0, ih as f32 - 1.0));
    (
        l,
        t,
        r.clamp(l + 1.0, iw as f32),
        b.clamp(t + 1.0, ih as f32),
    )
}

/// The sample of `region` (which holds the number `(l, t, r, b)`) of the item's photo:
/// [`augmented_input`] and the number's box as fractions of the region, mirrored with it.
fn sample_in(
    item: &Item,
    (l, t, r, b): (f32, f32, f32, f32),
    region: Region,
    cfg: &LocaliserConfig,
    rng: &mut Rng,
) -> (Vec<f32>, [f32; 4]) {
    let (x0, y0) = (region.x0 as f32, region.y0 as f32);
    let (cw, ch) = (region.width() as f32, region.height() as f32);
    let mut target = [(l - x0) / cw, (t - y0) / ch, (r - x0) / cw, (b - y0) / ch];
    let (out, mirrored) = augmented_input(&item.image, region, cfg, rng);
    if mirrored {
        target = [1.0 - target[2], target[1], 1.0 - target[0], target[3]];
    }
    (out, target)
}

/// `region` of `image` as a training input: resized to the localiser's input, mirrored at
/// random, its colours changed, normalised. Returns the `[3, height, width]` input and whether
/// it was mirrored.
fn augmented_input(
    image: &Rgb32FImage,
    region: Region,
    cfg: &LocaliserConfig,
    rng: &mut Rng,
) -> (Vec<f32>, bool) {
    let mut x = read::resize_region(image, region, cfg.width, cfg.height);
    let mirrored = rng.chance(0.5);
    if mirrored {
        for row in x.chunks_exact_mut(cfg.width) {
            row.reverse();
        }
    }
    // Contrast/brightness: normalisation removes their global part, so only the clipping-free
    // share matters: keep it mild.
    let mut out = crate::train::augment::jitter_colours(x, cfg.height * cfg.width, rng);
    read::normalize(&mut out);
    (out, mirrored)
}

/// The photos of `records` with their number boxes, and (when `cut`) their digits cut out for
/// recombination.
fn load_items(
    records: &[Record],
    quiet: bool,
    cut: bool,
) -> (Vec<Item>, Vec<DigitCrop>, Vec<String>) {
    let pb = crate::progress::bar(records.len() as u64, "loading", quiet);
    let loaded: Vec<std::result::Result<(Item, Vec<DigitCrop>), String>> = records
        .par_iter()
        .map(|r| {
            pb.inc(1);
            if r.boxes.is_empty() {
                return Err(format!("{}: no digit boxes", r.path.display()));
            }
            let image = read::load_image(&r.path).map_err(|e| e.to_string())?;
            let digits = if cut {
                cut_digits(&image, &r.boxes, &r.digits)
            } else {
                Vec::new()
            };
            let item = Item {
                image,
                target: boxes_union(&r.boxes),
                digits: r.digits.len(),
                labelled: true,
            };
            Ok((item, digits))
        })
        .collect();
    pb.finish_and_clear();
    let (mut ok, mut pool, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for l in loaded {
        match l {
            Ok((i, d)) => {
                ok.push(i);
                pool.extend(d);
            }
            Err(e) => errors.push(e),
        }
    }
    (ok, pool, errors)
}

/// Unlabelled photos, each with the box the `teachers` find in the whole photo (pixels), for
/// distillation; the files that could not be read, as messages naming them.
fn load_pool(files: &[PathBuf], teachers: &[Localiser], quiet: bool) -> (Vec<Item>, Vec<String>) {
    let pb = crate::progress::bar(files.len() as u64, "unlabelled photos", quiet);
    let loaded: Vec<std::result::Result<Item, String>> = files
        .par_iter()
        .map(|f| {
            pb.inc(1);
            let image = read::load_image(f).map_err(|e| e.to_string())?;
            let (w, h) = image.dimensions();
            let cfg = &teachers[0].config;
            let x = input_of(&image, Region::full(w, h), cfg);
            let b = cfg.decode(&teacher_mean(teachers, &x, 1));
            let (w, h) = (w as f32, h as f32);
            Ok(Item {
                image,
                target: (b[0] * w, b[1] * h, b[2] * w, b[3] * h),
                digits: 0,
                labelled: false,
            })
        })
        .collect();
    pb.finish_and_clear();
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for l in loaded {
        match l {
            Ok(i) => ok.push(i),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

/// The mean of the `teachers`' outputs on a batch (each member run batched; the same means as
/// [`crate::engine::localiser::mean_outputs`] without mirroring).
///
/// # Shapes
/// `x`: `[n, 3, height, width]` → `[n, outputs]`.
pub fn teacher_mean(teachers: &[Localiser], x: &[f32], n: usize) -> Vec<f32> {
    let mut sum = vec![0f32; n * teachers[0].config.outputs()];
    for t in teachers {
        let out = t.forward(x, n).outputs;
        sum.iter_mut().zip(&out).for_each(|(s, v)| *s += v);
    }
    let k = teachers.len() as f32;
    sum.iter_mut().for_each(|s| *s /= k);
    sum
}

/// Distillation targets: per sample, the teachers' profile `teacher` where `labelled` is
/// false, else `weight · teacher + (1 − weight) · truth`.
///
/// # Shapes
/// `truth`, `teacher`: `[n, outputs]`; `labelled`: `[n]` → `[n, outputs]`.
pub fn distil_targets(truth: &[f32], teacher: &[f32], labelled: &[bool], weight: f32) -> Vec<f32> {
    if labelled.is_empty() {
        return Vec::new();
    }
    let k = truth.len() / labelled.len();
    truth
        .chunks_exact(k)
        .zip(teacher.chunks_exact(k))
        .zip(labelled)
        .flat_map(|((tr, te), &l)| {
            let w = if l { weight } else { 1.0 };
            tr.iter().zip(te).map(move |(a, b)| w * b + (1.0 - w) * a)
        })
        .collect()
}

/// Predicted boxes (pixels) of whole images, batched.
pub fn predict(loc: &Localiser, images: &[&Rgb32FImage]) -> Vec<[f32; 4]> {
    predict_with(images, &loc.config, |x, n| loc.forward(x, n).outputs)
}

/// Boxes (pixels) of whole images from `forward` (one localiser, or the teachers' mean), batched.
///
/// # Shapes
/// `forward`: `[n, 3, height, width]` inputs, `n` → `[n, outputs]`.
fn predict_with(
    images: &[&Rgb32FImage],
    cfg: &LocaliserConfig,
    forward: impl Fn(&[f32], usize) -> Vec<f32> + Sync,
) -> Vec<[f32; 4]> {
    images
        .par_chunks(16)
        .flat_map_iter(|chunk| {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|img| {
                    let (w, h) = img.dimensions();
                    input_of(img, Region::full(w, h), cfg)
                })
                .collect();
            let out = forward(&x, chunk.len());
            chunk
                .iter()
                .zip(out.chunks_exact(cfg.outputs()))
                .map(|(img, o)| {
                    let b = cfg.decode(o);
                    let (w, h) = img.dimensions();
                    let (w, h) = (w as f32, h as f32);
                    [b[0] * w, b[1] * h, b[2] * w, b[3] * h]
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Mean IoU of the boxes `forward` finds in the photos of `items` with their labelled boxes,
/// and the share with IoU ≥ 0.5.
fn val_iou(
    items: &[Item],
    forward: impl Fn(&[f32], usize) -> Vec<f32> + Sync,
    cfg: &LocaliserConfig,
) -> (f64, f64) {
    let imgs: Vec<&Rgb32FImage> = items.iter().map(|i| &i.image).collect();
    let ious: Vec<f32> = predict_with(&imgs, cfg, forward)
        .iter()
        .zip(items)
        .map(|(p, i)| iou(*p, [i.target.0, i.target.1, i.target.2, i.target.3]))
        .collect();
    let k = ious.len().max(1) as f64;
    (
        ious.iter().map(|&v| v as f64).sum::<f64>() / k,
        ious.iter().filter(|&&v| v >= 0.5).count() as f64 / k,
    )
}

/// The localisers to distil (`cfg.teachers`): profile heads reading this run's input size and
/// predicting its bands.
fn load_teachers(cfg: &LocTrainConfig) -> Result<Vec<Localiser>> {
    if cfg.teachers.is_empty() {
        if !cfg.pool.is_empty() {
            return Err(Error::Config(
                "unlabelled photos need teachers to label them (--teacher)".into(),
            ));
        }
        return Ok(Vec::new());
    }
    if cfg.model.bins.is_none() {
        return Err(Error::Config(
            "distillation needs a profile localiser (--bins)".into(),
        ));
    }
    cfg.teachers
        .iter()
        .map(|p| {
            let m = LocCheckpoint::load(p)?.model;
            let (a, b) = (&m.config, &cfg.model);
            if (a.height, a.width, a.bins) != (b.height, b.width, b.bins) {
                return Err(ck_err(
                    p,
                    format!(
                        "a teacher must read {}x{} and predict the same bands as the student",
                        b.height, b.width
                    ),
                ));
            }
            Ok(m)
        })
        .collect()
}

/// Where the checkpoint of a run in `out` lives.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join("localiser.safetensors")
}

/// A localiser checkpoint: parameters, Adam moments and the run's history.
#[derive(Debug, Clone)]
pub struct LocCheckpoint {
    /// The localiser.
    pub model: Localiser,
    /// Adam state.
    pub adam: Adam,
    /// Epochs done so far.
    pub history: Vec<LocEpoch>,
    /// The run's options that shape training ([`LocTrainConfig::options`]); a resumed run must
    /// match them. `None` in checkpoints written before they were recorded.
    pub options: Option<serde_json::Value>,
}

impl LocCheckpoint {
    /// Write atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = HashMap::new();
        let json = |v: serde_json::Value| v.to_string();
        meta.insert("config".into(), json(serde_json::json!(self.model.config)));
        meta.insert("history".into(), json(serde_json::json!(self.history)));
        if let Some(o) = &self.options {
            meta.insert("options".into(), o.to_string());
        }
        save_flat(path, &self.model.params, &self.adam, meta)
    }

    /// Read a checkpoint written by [`LocCheckpoint::save`].
    pub fn load(path: &Path) -> Result<LocCheckpoint> {
        let (meta, params, adam) = load_flat(path)?;
        let config: LocaliserConfig = meta_json(&meta, "config", path)?;
        let history: Vec<LocEpoch> = meta_json(&meta, "history", path)?;
        let model = Localiser::from_params(config, params)
            .ok_or_else(|| ck_err(path, "parameter count does not match the config"))?;
        let options = if meta.contains_key("options") {
            Some(meta_json(&meta, "options", path)?)
        } else {
            None
        };
        Ok(LocCheckpoint {
            model,
            adam,
            history,
            options,
        })
    }
}

/// Train (or resume, when `out` holds a checkpoint of an earlier run) and return the history.
pub fn train_localiser(cfg: &LocTrainConfig) -> Result<Vec<LocEpoch>> {
    let _flush = crate::engine::layers::FlushSubnormals::new();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    if cfg.model.sizes().is_none() {
        return Err(Error::Config(format!(
            "localiser input {}x{} is too small for its conv stack",
            cfg.model.height, cfg.model.width
        )));
    }
    if cfg.empty_prob > 0.0 && cfg.model.bins.is_none() {
        return Err(Error::Config(
            "samples holding no number (empty_prob) need a profile head (bins)".to_string(),
        ));
    }
    let set = SvhnSet::open(&cfg.data)?;
    let (mut train_recs, val_recs) = split_held_out(&set.records, cfg.val_fraction, cfg.fold);
    if let Some(l) = cfg.limit {
        train_recs.truncate(l);
    }
    let recombine = cfg.recombine_prob > 0.0 || cfg.paste_prob > 0.0 || cfg.stacked_prob > 0.0;
    let (mut items, pool, mut errors) = load_items(&train_recs, cfg.quiet, recombine);
    for dir in &cfg.extra {
        let (more, _, more_errors) = load_items(&SvhnSet::open(dir)?.records, cfg.quiet, false);
        items.extend(more);
        errors.extend(more_errors);
    }
    let teachers = load_teachers(cfg)?;
    if !teachers.is_empty() {
        let (pool, pool_errors) = load_pool(&cfg.pool, &teachers, cfg.quiet);
        items.extend(pool);
        errors.extend(pool_errors);
    }
    // Digit-free parts of the labelled training photos, the canvases of zoomed-out samples.
    let backgrounds: Vec<Rgb32FImage> =
        if cfg.zoom_out_prob > 0.0 || cfg.stacked_prob > 0.0 || cfg.empty_prob > 0.0 {
            items
                .par_iter()
                .filter(|it| it.labelled)
                .flat_map_iter(|it| {
                    let (l, t, r, b) = it.target;
                    let digit = DigitBox {
                        left: l,
                        top: t,
                        width: r - l,
                        height: b - t,
                    };
                    background_patches(&it.image, &[digit])
                })
                .collect()
        } else {
            Vec::new()
        };
    let (val_items, _, _) = load_items(&val_recs, true, false);
    for e in errors.iter().take(5) {
        eprintln!("skipped: {e}");
    }
    if items.is_empty() {
        return Err(Error::Config(format!(
            "{}: no usable training images",
            cfg.data.display()
        )));
    }
    eprintln!(
        "localiser data: {} training images ({} unlabelled), {} {} (held out by name hash)",
        items.len(),
        items.iter().filter(|i| !i.labelled).count(),
        val_items.len(),
        cfg.fold
            .map_or("validation images".to_string(), |f| format!(
                "images of fold {f}"
            ))
    );
    if !teachers.is_empty() {
        let (mean_iou, iou50) =
            val_iou(&val_items, |x, n| teacher_mean(&teachers, x, n), &cfg.model);
        eprintln!(
            "teachers ({}): val IoU {mean_iou:.3} (>=0.5: {:.1}%)",
            teachers.len(),
            100.0 * iou50
        );
    }
    let ck_path = checkpoint_path(&cfg.out);
    let mut ck = if ck_path.exists() {
        let ck = LocCheckpoint::load(&ck_path)?;
        if ck.model.config != cfg.model {
            return Err(ck_err(&ck_path, "its architecture differs from this run's"));
        }
        if let Some(saved) = ck.options.as_ref().filter(|o| **o != cfg.options()) {
            return Err(ck_err(
                &ck_path,
                format!(
                    "it was trained with other options ({saved}, now {}); use another --out",
                    cfg.options()
                ),
            ));
        }
        eprintln!("resuming after epoch {}", ck.history.len());
        ck
    } else {
        let model = match &cfg.init {
            None => Localiser::new(cfg.model, cfg.seed),
            Some(p) => {
                let m = LocCheckpoint::load(p)?.model;
                if m.config != cfg.model {
                    return Err(ck_err(p, "its architecture differs from this run's"));
                }
                m
            }
        };
        let n = model.params.len();
        LocCheckpoint {
            model,
            adam: Adam::new(n),
            history: Vec::new(),
            options: Some(cfg.options()),
        }
    };
    let per_epoch = items.len().div_ceil(cfg.batch_size) as u64;
    let total = per_epoch * cfg.epochs as u64;
    let last = cfg.stop_after.unwrap_or(cfg.epochs).min(cfg.epochs);
    for epoch in ck.history.len()..last {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..items.len()).collect();
        Rng::derive(cfg.seed, 1_000_000 + epoch as u64).shuffle(&mut order);
        let pb = crate::progress::bar(per_epoch, &format!("epoch {}", epoch + 1), cfg.quiet);
        let mut loss_sum = 0f64;
        for (bi, batch) in order.chunks(cfg.batch_size).enumerate() {
            let step = epoch as u64 * per_epoch + bi as u64;
            let samples: Vec<(Vec<f32>, [f32; 4], bool)> = batch
                .par_iter()
                .map(|&i| {
                    let mut rng = Rng::derive(cfg.seed, (step << 24) | i as u64);
                    // At share 0 no draw is made, so runs without recombination are unchanged.
                    if cfg.recombine_prob > 0.0
                        && !pool.is_empty()
                        && rng.chance(cfg.recombine_prob)
                    {
                        let len = 1 + rng.below(cfg.recombine_max_len.max(1));
                        let (image, boxes, digits) = compose(&pool, len, &mut rng);
                        let item = Item {
                            image,
                            target: boxes_union(&boxes),
                            digits: digits.len(),
                            labelled: true,
                        };
                        let (x, t) = sample(&item, &cfg.model, &mut rng);
                        return (x, t, true);
                    }
                    if cfg.stacked_prob > 0.0
                        && !pool.is_empty()
                        && !backgrounds.is_empty()
                        && rng.chance(cfg.stacked_prob)
                    {
                        let item =
                            stacked_in_canvas(&pool, &backgrounds, cfg.zoom_out_max, &mut rng);
                        let (x, t) = sample(&item, &cfg.model, &mut rng);
                        return (x, t, true);
                    }
                    let it = &items[i];
                    if cfg.empty_prob > 0.0 && !backgrounds.is_empty() && rng.chance(cfg.empty_prob)
                    {
                        let canvas = empty_canvas(
                            it.image.dimensions(),
                            &backgrounds,
                            cfg.zoom_out_max,
                            &mut rng,
                        );
                        return (empty_sample(&canvas, &cfg.model, &mut rng), [0.0; 4], true);
                    }
                    if cfg.paste_prob > 0.0
                        && it.labelled
                        && !pool.is_empty()
                        && rng.chance(cfg.paste_prob)
                    {
                        let max = cfg.recombine_max_len.max(it.digits).max(1);
                        let len = it.digits.max(1) + rng.below(max - it.digits.max(1) + 1);
                        let (strip, sb, digits) = compose(&pool, len, &mut rng);
                        let (image, boxes) =
                            paste_into(&it.image, it.target, &strip, &sb, &mut rng);
                        let item = Item {
                            image,
                            target: boxes_union(&boxes),
                            digits: digits.len(),
                            labelled: true,
                        };
                        let (x, t) = sample(&item, &cfg.model, &mut rng);
                        return (x, t, true);
                    }
                    if cfg.zoom_in_prob > 0.0 && it.labelled && rng.chance(cfg.zoom_in_prob) {
                        let (x, t) = sample_close(it, &cfg.model, &mut rng);
                        return (x, t, true);
                    }
                    if cfg.zoom_out_prob > 0.0
                        && it.labelled
                        && !backgrounds.is_empty()
                        && rng.chance(cfg.zoom_out_prob)
                    {
                        let max = cfg.zoom_out_max.max(1.0);
                        let k = if cfg.zoom_out_independent {
                            (max.powf(rng.f32()), max.powf(rng.f32()))
                        } else {
                            let k = max.powf(rng.f32());
                            (k, k)
                        };
                        let item = zoomed_out(it, k, &backgrounds, &mut rng);
                        let (x, t) = sample(&item, &cfg.model, &mut rng);
                        return (x, t, true);
                    }
                    let (x, t) = sample(it, &cfg.model, &mut rng);
                    (x, t, it.labelled)
                })
                .collect();
            let model = &ck.model;
            // Forward + backward in parallel halves; gradients summed (the loss is a mean over
            // the whole batch, so each half's gradient is scaled by its share).
            let parts: Vec<(f64, Vec<f32>)> = samples
                .par_chunks(samples.len().div_ceil(2).max(1))
                .map(|part| {
                    let x: Vec<f32> = part.iter().flat_map(|s| s.0.iter().cloned()).collect();
                    let t: Vec<f32> = part.iter().flat_map(|s| s.1.iter().cloned()).collect();
                    let fwd = model.forward(&x, part.len());
                    let share = part.len() as f32 / samples.len() as f32;
                    let (loss, grad) = match model.config.bins {
                        None => {
                            let (loss, d) = smooth_l1(&fwd.outputs, &t, 0.05);
                            let d: Vec<f32> = d.iter().map(|g| g * share).collect();
                            (loss, model.backward(&fwd, &d))
                        }
                        Some(bins) => {
                            let t: Vec<f32> = t
                                .chunks_exact(4)
                                .flat_map(|b| profile_targets([b[0], b[1], b[2], b[3]], bins))
                                .collect();
                            let t = if teachers.is_empty() {
                                t
                            } else {
                                let labelled: Vec<bool> = part.iter().map(|s| s.2).collect();
                                let teacher = teacher_mean(&teachers, &x, part.len());
                                distil_targets(&t, &teacher, &labelled, cfg.teacher_weight)
                            };
                            let (loss, d) = profile_bce(&fwd.outputs, &t);
                            let d: Vec<f32> = d.iter().map(|g| g * share).collect();
                            (loss, model.backward_logits(&fwd, &d))
                        }
                    };
                    (loss as f64 * share as f64, grad)
                })
                .collect();
            let mut grad = vec![0f32; ck.model.params.len()];
            let mut loss = 0f64;
            for (l, g) in parts {
                loss += l;
                grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            }
            let norm = clip_grad_norm(&mut grad, cfg.clip_norm);
            if loss.is_finite() && norm.is_finite() {
                ck.adam
                    .step(&mut ck.model.params, &grad, lr_at(cfg.lr, step, total));
            }
            loss_sum += loss;
            pb.inc(1);
        }
        pb.finish_and_clear();
        let model = &ck.model;
        let (val_iou, val_iou50) =
            val_iou(&val_items, |x, n| model.forward(x, n).outputs, &cfg.model);
        let log = LocEpoch {
            epoch: epoch + 1,
            loss: (loss_sum / per_epoch as f64) as f32,
            val_iou,
            val_iou50,
            seconds: start.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {:>3}/{}  loss {:.4}  val IoU {:.3} (>=0.5: {:.1}%)  {:.0}s",
            log.epoch,
            cfg.epochs,
            log.loss,
            log.val_iou,
            100.0 * log.val_iou50,
            log.seconds
        );
        ck.history.push(log);
        ck.save(&ck_path)?;
        write_history(&cfg.out, &ck.history)?;
    }
    Ok(ck.history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_samples_box_the_whole_column_inside_a_wider_canvas() {
        use crate::data::recombine::DIGIT_HEIGHT;
        let pool: Vec<DigitCrop> = (0..10u8)
            .map(|d| DigitCrop {
                image: Rgb32FImage::from_pixel(24, DIGIT_HEIGHT, image::Rgb([0.1 * d as f32; 3])),
                digit: d,
                span: (2.0, 22.0),
            })
            .collect();
        let backgrounds = vec![Rgb32FImage::from_pixel(64, 64, image::Rgb([0.0, 0.0, 1.0])); 3];
        // (seed, zoom_out_max): at 1 the column fills the canvas's height.
        for (seed, max) in [(1, 1.0), (2, 1.0), (3, 6.0), (4, 6.0), (5, 6.0), (6, 3.0)] {
            let mut rng = Rng::new(seed);
            let it = stacked_in_canvas(&pool, &backgrounds, max, &mut rng);
            let (w, h) = it.image.dimensions();
            let (l, t, r, b) = it.target;
            let case = format!("seed {seed}, max {max}: {w}x{h}, box {:?}", it.target);
            assert!((2..=STACKED_MAX_LEN).contains(&it.digits), "{case}");
            assert!(it.labelled, "{case}");
            assert!(
                l >= 0.0 && t >= 0.0 && r <= w as f32 && b <= h as f32,
                "{case}"
            );
            // A column of at least two digits: far taller than wide, what `read` unstacks.
            assert!(b - t >= 2.5 * (r - l), "{case}");
            // The canvas: at most 2 times as wide as tall, unless the column itself is wider.
            assert!(
                w as f32 <= 2.05 * h as f32 || w as f32 <= 1.05 * (r - l),
                "{case}"
            );
            if max == 1.0 {
                assert!(b - t >= 0.8 * h as f32, "{case}");
            }
        }
    }

    #[test]
    fn samples_cut_close_keep_the_number_within_a_quarter_of_its_size() {
        let cfg = LocaliserConfig::default();
        // (photo size, number box) → over many draws, the target lies inside the crop, each
        // side at most ZOOM_IN_MARGIN of the number's size (plus rounding) from the crop's
        // edge, and some draws cut at the number's edge.
        let cases = [
            ((200u32, 100u32), (80.0f32, 30.0f32, 120.0f32, 70.0f32)),
            ((60, 40), (0.0, 5.0, 60.0, 40.0)),
            ((300, 90), (250.0, 10.0, 299.0, 80.0)),
        ];
        for (dims, target) in cases {
            let item = Item {
                image: Rgb32FImage::from_pixel(dims.0, dims.1, image::Rgb([0.5; 3])),
                target,
                digits: 2,
                labelled: true,
            };
            let (nw, nh) = (target.2 - target.0, target.3 - target.1);
            let mut tight = 0;
            for seed in 0..64 {
                let (x, t) = sample_close(&item, &cfg, &mut Rng::new(seed));
                assert_eq!(x.len(), 3 * cfg.height * cfg.width);
                let case = format!("{dims:?} {target:?} seed {seed}: {t:?}");
                assert!(t.iter().all(|v| (0.0..=1.0).contains(v)), "{case}");
                assert!(t[0] < t[2] && t[1] < t[3], "{case}");
                // The crop's width in number widths: 1 to 1.5 (+2 px of rounding).
                let crop_w = nw / (t[2] - t[0]);
                let crop_h = nh / (t[3] - t[1]);
                assert!(crop_w <= nw * (1.0 + 2.0 * ZOOM_IN_MARGIN) + 2.0, "{case}");
                assert!(crop_h <= nh * (1.0 + 2.0 * ZOOM_IN_MARGIN) + 2.0, "{case}");
                tight += usize::from(crop_w <= nw * 1.1 + 2.0);
            }
            assert!(tight > 0, "{dims:?}: no draw cut close to the number");
        }
    }

    #[test]
    fn empty_canvases_keep_the_photos_shape_and_cover_no_band() {
        let backgrounds = vec![Rgb32FImage::from_pixel(40, 20, image::Rgb([0.2, 0.6, 0.9])); 3];
        let cfg = LocaliserConfig {
            bins: Some([32, 16]),
            ..LocaliserConfig::default()
        };
        // (seed, photo size, zoom_out_max): at 1 a small photo's size is kept exactly.
        for (seed, dims, max) in [
            (1, (120, 60), 1.0),
            (2, (90, 45), 1.0),
            (3, (120, 60), 6.0),
            (4, (300, 100), 6.0),
            (5, (700, 400), 3.0),
        ] {
            let mut rng = Rng::new(seed);
            let c = empty_canvas(dims, &backgrounds, max, &mut rng);
            let (w, h) = c.dimensions();
            let case = format!("seed {seed}, photo {dims:?}, max {max}: canvas {w}x{h}");
            assert!(w.max(h) as f32 <= ZOOM_CANVAS_SIDE, "{case}");
            let (a, b) = (w as f32 / h as f32, dims.0 as f32 / dims.1 as f32);
            assert!((a / b - 1.0).abs() < 0.03, "{case}");
            if max == 1.0 {
                assert_eq!((w, h), dims, "{case}");
            } else {
                assert!(w >= dims.0.min(512 * dims.0 / dims.0.max(dims.1)), "{case}");
            }
            // Filled from the patches, never the mid-grey of an empty canvas.
            let patch = [0.2, 0.6, 0.9];
            assert!(
                c.pixels()
                    .all(|p| p.0.iter().zip(patch).all(|(a, b)| (a - b).abs() < 1e-3)),
                "{case}"
            );
            let x = empty_sample(&c, &cfg, &mut rng);
            assert_eq!(x.len(), 3 * cfg.height * cfg.width, "{case}");
            assert!(x.iter().all(|v| v.is_finite()), "{case}");
        }
        assert!(profile_targets([0.0; 4], [32, 16])
            .iter()
            .all(|&t| t == 0.0));
    }

    #[test]
    fn distillation_targets_mix_teacher_and_truth_only_where_labelled() {
        /// (truth, teacher, labelled, weight, expected)
        type Case = (
            &'static [f32],
            &'static [f32],
            &'static [bool],
            f32,
            &'static [f32],
        );
        let cases: [Case; 5] = [
            (&[], &[], &[], 0.5, &[]),
            (&[1.0, 0.0], &[0.6, 0.2], &[true], 0.5, &[0.8, 0.1]),
            (&[1.0, 0.0], &[0.6, 0.2], &[true], 0.0, &[1.0, 0.0]),
            (&[1.0, 0.0], &[0.6, 0.2], &[false], 0.0, &[0.6, 0.2]),
            (
                &[1.0, 1.0, 0.0, 0.0],
                &[0.5, 0.5, 0.5, 0.5],
                &[true, false],
                0.25,
                &[0.875, 0.875, 0.5, 0.5],
            ),
        ];
        for (truth, teacher, labelled, w, want) in cases {
            let got = distil_targets(truth, teacher, labelled, w);
            assert_eq!(got.len(), want.len());
            for (g, e) in got.iter().zip(want) {
                assert!(
                    (g - e).abs() < 1e-6,
                    "{truth:?} {teacher:?} {labelled:?} {w}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn teacher_mean_of_a_batch_is_each_images_mean_of_members() {
        let cfg = LocaliserConfig {
            channels: [4, 4, 8, 8],
            bins: Some([12, 6]),
            ..LocaliserConfig::default()
        };
        let (a, b) = (Localiser::new(cfg, 1), Localiser::new(cfg, 2));
        let mut rng = Rng::new(7);
        let n = 3;
        let x: Vec<f32> = (0..n * 3 * cfg.height * cfg.width)
            .map(|_| rng.f32() - 0.5)
            .collect();
        let got = teacher_mean(&[a.clone(), b.clone()], &x, n);
        let k = cfg.outputs();
        for (i, img) in x.chunks_exact(x.len() / n).enumerate() {
            let want = crate::engine::localiser::mean_outputs(&[&a, &b], false, img);
            for (g, w) in got[i * k..][..k].iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "image {i}: {g} vs {w}");
            }
        }
    }
}
