//! Training the [`Detector`]: square crops of the training split's photos, each photo first
//! framed looser in a canvas of other photos' digit-free parts
//! ([`crate::data::framing::zoom_out`]) and scaled so that its number is a random 8 to 48 px
//! high, so that the detector sees numbers of every size in every kind of surrounding. The target
//! of each 8 × 8 cell is the share of it that the number's box (the union of its digit boxes)
//! covers; binary cross-entropy on those soft targets, Adam with warm-up and cosine decay,
//! global-norm clipping, a checkpoint after every epoch (resumable), and a fixed set of crops of
//! the validation split as a per-epoch monitor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::data::framing::zoom_out;
use crate::data::svhn::{split_held_out, Fold, Record, SvhnSet};
use crate::data::synth::background_patches;
use crate::engine::detector::{cell_bce, Detector, DetectorConfig, PAD, STRIDE};
use crate::error::{Error, Result};
use crate::read::{self, boxes_union, DigitBox, Region};
use crate::rng::Rng;
use crate::train::checkpoint::{ck_err, load_flat, meta_json, save_flat, write_history};
use crate::train::optim::{clip_grad_norm, lr_at, Adam};

/// Everything that defines a detector training run; saved in its checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DetTrainConfig {
    /// Folder in the official SVHN layout (digit boxes are the targets).
    pub data: PathBuf,
    /// Output folder: `detector.safetensors` (checkpoint) and `history.json`.
    pub out: PathBuf,
    /// Epochs; each draws one crop of every training photo.
    pub epochs: usize,
    /// Crops per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Global gradient-norm clip.
    pub clip_norm: f32,
    /// Seed of initialisation, augmentation and order.
    pub seed: u64,
    /// Share of photos (by file-name hash) held out: the validation split and, at 0.2, the
    /// development split after it.
    pub val_fraction: f64,
    /// Use at most this many training photos (for quick runs).
    pub limit: Option<usize>,
    /// Architecture.
    pub model: DetectorConfig,
    /// Cells along each side of a training crop (the crop is `8·cells + 2·PAD` px).
    pub cells: usize,
    /// Least and greatest height of the number in a crop, pixels (log-uniform between).
    pub heights: [f32; 2],
    /// Share of crops placed anywhere in the scene rather than around the number.
    pub anywhere: f32,
    /// No progress bars.
    pub quiet: bool,
    /// Stop after this many epochs in total (the schedule still spans `epochs`; a later call
    /// resumes).
    #[serde(default)]
    pub stop_after: Option<usize>,
    /// K-fold cross-validation: train on the other folds of the photos outside the validation
    /// split and hold this one out ([`Fold::split`]).
    #[serde(default)]
    pub fold: Option<Fold>,
    /// More official-layout folders (e.g. `housenum synth` output) whose every image is
    /// trained on too; the canvases of zoomed-out crops still come only from `data`'s training
    /// photos, and the held-out crops only from `data`.
    #[serde(default)]
    pub extra: Vec<PathBuf>,
}

impl DetTrainConfig {
    /// The options a resumed run must share with the run it continues.
    pub fn options(&self) -> serde_json::Value {
        let mut o = serde_json::json!({
            "batch_size": self.batch_size,
            "lr": self.lr,
            "clip_norm": self.clip_norm,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "limit": self.limit,
            "cells": self.cells,
            "heights": self.heights,
            "anywhere": self.anywhere,
        });
        // Only where set, so that checkpoints written before these options still resume.
        if let Some(fold) = self.fold {
            o["fold"] = serde_json::json!(fold.to_string());
        }
        if !self.extra.is_empty() {
            o["extra"] = serde_json::json!(self.extra);
        }
        o
    }

    /// The records of a run: `data`'s training photos (its split by `val_fraction`, or
    /// `fold`, cut to `limit`), every record of the `extra` folders, and `data`'s held-out
    /// photos.
    pub fn records(&self) -> Result<(Vec<Record>, Vec<Record>, Vec<Record>)> {
        let set = SvhnSet::open(&self.data)?;
        let (mut train, held_out) = split_held_out(&set.records, self.val_fraction, self.fold);
        if let Some(l) = self.limit {
            train.truncate(l);
        }
        let mut extra = Vec::new();
        for dir in &self.extra {
            extra.extend(SvhnSet::open(dir)?.records);
        }
        Ok((train, extra, held_out))
    }
}

/// Statistics of one epoch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DetEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f32,
    /// Mean loss on the fixed validation crops.
    pub val_loss: f32,
    /// Share of the validation crops holding a number whose most confident cell lies on it.
    pub val_hit: f64,
    /// Seconds of this epoch.
    pub seconds: f64,
}

/// A photo in memory with its digit boxes.
struct Item {
    image: Rgb32FImage,
    boxes: Vec<DigitBox>,
}

/// The detector's input for an image: `[3, h, w]`, each value `(v − 0.5) / 0.25`, what the
/// padding (0) stands for being mid-grey.
pub fn normalise(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = (*v - 0.5) * 4.0);
}

/// One training crop: `[3, S, S]` input (S = `8·cells + 2·PAD`), `[cells²]` soft targets, and
/// whether the number's centre is in the crop's cells.
fn sample(
    item: &Item,
    backgrounds: &[Rgb32FImage],
    cfg: &DetTrainConfig,
    rng: &mut Rng,
) -> (Vec<f32>, Vec<f32>, bool) {
    let c = cfg.cells;
    let side = STRIDE * c + 2 * PAD;
    let (_, t, _, b) = boxes_union(&item.boxes);
    let number_h = (b - t).max(1.0);
    let [lo, hi] = cfg.heights;
    let hn = (lo.ln() + rng.f32() * (hi.ln() - lo.ln())).exp();
    let s = hn / number_h;
    // Frame the photo looser so that the crop is mostly filled with real surroundings.
    let (w, h) = item.image.dimensions();
    let span = side as f32 / s;
    let (scene, boxes) = if rng.chance(0.9) && !backgrounds.is_empty() {
        let k = (span / w.min(h) as f32 * rng.uniform(1.0, 1.6)).clamp(1.0, 8.0);
        let picks: Vec<&Rgb32FImage> = (0..8)
            .map(|_| &backgrounds[rng.below(backgrounds.len())])
            .collect();
        zoom_out(&item.image, &item.boxes, (k, k), &picks, rng)
    } else {
        (item.image.clone(), item.boxes.clone())
    };
    let (sw, sh) = scene.dimensions();
    let (l, t, r, b) = boxes_union(&boxes);
    // Crop origin in scene pixels.
    let (ox, oy) = if rng.chance(cfg.anywhere) {
        (
            rng.uniform(-0.2 * span, sw as f32 - 0.8 * span),
            rng.uniform(-0.2 * span, sh as f32 - 0.8 * span),
        )
    } else {
        let inner = (STRIDE * c) as f32;
        let (px, py) = (
            PAD as f32 + rng.f32() * inner,
            PAD as f32 + rng.f32() * inner,
        );
        ((l + r) / 2.0 - px / s, (t + b) / 2.0 - py / s)
    };
    let mut x = vec![0.5f32; 3 * side * side];
    // The part of the scene inside the crop, resampled into place.
    let clampx = |v: f32| v.clamp(0.0, sw as f32);
    let clampy = |v: f32| v.clamp(0.0, sh as f32);
    let (x0, x1) = (clampx(ox).floor(), clampx(ox + span).ceil());
    let (y0, y1) = (clampy(oy).floor(), clampy(oy + span).ceil());
    let (u0, u1) = (
        (((x0 - ox) * s).round().max(0.0) as usize).min(side),
        (((x1 - ox) * s).round().max(0.0) as usize).min(side),
    );
    let (v0, v1) = (
        (((y0 - oy) * s).round().max(0.0) as usize).min(side),
        (((y1 - oy) * s).round().max(0.0) as usize).min(side),
    );
    if x1 > x0 && y1 > y0 && u1 > u0 && v1 > v0 {
        let region = Region {
            x0: x0 as u32,
            y0: y0 as u32,
            x1: x1 as u32,
            y1: y1 as u32,
        };
        let (pw, ph) = (u1 - u0, v1 - v0);
        let part = read::resize_region(&scene, region, pw, ph);
        for ch in 0..3 {
            for y in 0..ph {
                x[(ch * side + v0 + y) * side + u0..][..pw]
                    .copy_from_slice(&part[(ch * ph + y) * pw..][..pw]);
            }
        }
    }
    // Targets: each cell's share covered by the number's box, in crop pixels.
    let (bl, bt, br, bb) = ((l - ox) * s, (t - oy) * s, (r - ox) * s, (b - oy) * s);
    let mut target = vec![0f32; c * c];
    for i in 0..c {
        let (cy0, cy1) = ((PAD + STRIDE * i) as f32, (PAD + STRIDE * (i + 1)) as f32);
        let oy = (bb.min(cy1) - bt.max(cy0)).max(0.0);
        for j in 0..c {
            let (cx0, cx1) = ((PAD + STRIDE * j) as f32, (PAD + STRIDE * (j + 1)) as f32);
            let ox = (br.min(cx1) - bl.max(cx0)).max(0.0);
            target[i * c + j] = ox * oy / (STRIDE * STRIDE) as f32;
        }
    }
    let (mx, my) = ((bl + br) / 2.0, (bt + bb) / 2.0);
    let inner = PAD as f32..(PAD + STRIDE * c) as f32;
    let centred = inner.contains(&mx) && inner.contains(&my);
    // Mirror, invert, permute channels, gamma.
    if rng.chance(0.5) {
        for row in x.chunks_exact_mut(side) {
            row.reverse();
        }
        for row in target.chunks_exact_mut(c) {
            row.reverse();
        }
    }
    let mut out = crate::train::augment::jitter_colours(x, side * side, rng);
    normalise(&mut out);
    (out, target, centred)
}

fn load_items(records: &[Record], quiet: bool) -> (Vec<Item>, Vec<String>) {
    let pb = crate::progress::bar(records.len() as u64, "loading", quiet);
    let loaded: Vec<std::result::Result<Item, String>> = records
        .par_iter()
        .map(|r| {
            pb.inc(1);
            if r.boxes.is_empty() {
                return Err(format!("{}: no digit boxes", r.path.display()));
            }
            let image = read::load_image(&r.path).map_err(|e| e.to_string())?;
            Ok(Item {
                image,
                boxes: r.boxes.clone(),
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

/// Where the checkpoint of a run in `out` lives.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join("detector.safetensors")
}

/// A detector checkpoint: parameters, Adam moments and the run's history.
#[derive(Debug, Clone)]
pub struct DetCheckpoint {
    /// The detector.
    pub model: Detector,
    /// Adam state.
    pub adam: Adam,
    /// Epochs done so far.
    pub history: Vec<DetEpoch>,
    /// The run's options ([`DetTrainConfig::options`]); a resumed run must match them.
    pub options: serde_json::Value,
}

impl DetCheckpoint {
    /// Write atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = HashMap::from([
            (
                "config".to_string(),
                serde_json::json!(self.model.config).to_string(),
            ),
            (
                "history".to_string(),
                serde_json::json!(self.history).to_string(),
            ),
            ("options".to_string(), self.options.to_string()),
        ]);
        save_flat(path, &self.model.params, &self.adam, meta)
    }

    /// Read a checkpoint written by [`DetCheckpoint::save`].
    pub fn load(path: &Path) -> Result<DetCheckpoint> {
        let (meta, params, adam) = load_flat(path)?;
        let config: DetectorConfig = meta_json(&meta, "config", path)?;
        let history: Vec<DetEpoch> = meta_json(&meta, "history", path)?;
        let options = meta_json(&meta, "options", path)?;
        let model = Detector::from_params(config, params)
            .ok_or_else(|| ck_err(path, "parameter count does not match the config"))?;
        Ok(DetCheckpoint {
            model,
            adam,
            history,
            options,
        })
    }
}

/// Loss and gradient of a batch of samples, in two parallel halves.
fn batch_grad(
    model: &Detector,
    samples: &[(Vec<f32>, Vec<f32>, bool)],
    side: usize,
) -> (f64, Vec<f32>) {
    let parts: Vec<(f64, Vec<f32>)> = samples
        .par_chunks(samples.len().div_ceil(2).max(1))
        .map(|part| {
            let x: Vec<f32> = part.iter().flat_map(|s| s.0.iter().cloned()).collect();
            let t: Vec<f32> = part.iter().flat_map(|s| s.1.iter().cloned()).collect();
            let fwd = model.forward(&x, part.len(), side, side);
            let share = part.len() as f32 / samples.len() as f32;
            let (loss, d) = cell_bce(&fwd.logits, &t, &vec![1.0; t.len()]);
            let d: Vec<f32> = d.iter().map(|g| g * share).collect();
            (loss as f64 * share as f64, model.backward_logits(&fwd, &d))
        })
        .collect();
    let mut grad = vec![0f32; model.params.len()];
    let mut loss = 0f64;
    for (l, g) in parts {
        loss += l;
        grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
    }
    (loss, grad)
}

/// Mean loss on fixed validation crops, and the share of those holding a number's centre whose
/// most confident cell is on the number.
fn validate(model: &Detector, val: &[(Vec<f32>, Vec<f32>, bool)], side: usize) -> (f32, f64) {
    let per: Vec<(f64, usize, usize)> = val
        .par_chunks(8)
        .map(|part| {
            let x: Vec<f32> = part.iter().flat_map(|s| s.0.iter().cloned()).collect();
            let t: Vec<f32> = part.iter().flat_map(|s| s.1.iter().cloned()).collect();
            let fwd = model.forward(&x, part.len(), side, side);
            let (loss, _) = cell_bce(&fwd.logits, &t, &vec![1.0; t.len()]);
            let cells = t.len() / part.len();
            let (mut hits, mut with) = (0, 0);
            for (k, s) in part.iter().enumerate() {
                if !s.2 {
                    continue;
                }
                with += 1;
                let z = &fwd.logits[k * cells..][..cells];
                let best = (0..cells)
                    .max_by(|&a, &b| z[a].total_cmp(&z[b]))
                    .expect("cells");
                hits += usize::from(s.1[best] > 0.0);
            }
            (loss as f64 * part.len() as f64, hits, with)
        })
        .collect();
    let n = val.len().max(1) as f64;
    let loss = per.iter().map(|p| p.0).sum::<f64>() / n;
    let (hits, with) = per.iter().fold((0, 0), |(h, w), p| (h + p.1, w + p.2));
    (loss as f32, hits as f64 / with.max(1) as f64)
}

/// Train (or resume, when `out` holds a checkpoint of an earlier run) and return the history.
pub fn train_detector(cfg: &DetTrainConfig) -> Result<Vec<DetEpoch>> {
    let _flush = crate::engine::layers::FlushSubnormals::new();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    if cfg.cells == 0 || !(cfg.heights[0] > 0.0 && cfg.heights[1] >= cfg.heights[0]) {
        return Err(Error::Config(format!(
            "detector crops need at least one cell and 0 < least height <= greatest (got {} cells, heights {:?})",
            cfg.cells, cfg.heights
        )));
    }
    let side = STRIDE * cfg.cells + 2 * PAD;
    let (train_recs, extra_recs, val_recs) = cfg.records()?;
    let (mut items, mut errors) = load_items(&train_recs, cfg.quiet);
    // The photos of `data` come first; the `extra` folders' images give no canvases.
    let real = items.len();
    let (more, more_errors) = load_items(&extra_recs, cfg.quiet);
    items.extend(more);
    errors.extend(more_errors);
    let (val_items, _) = load_items(&val_recs, true);
    for e in errors.iter().take(5) {
        eprintln!("skipped: {e}");
    }
    if items.is_empty() {
        return Err(Error::Config(format!(
            "{}: no usable training images",
            cfg.data.display()
        )));
    }
    let patches = |items: &[Item]| -> Vec<Rgb32FImage> {
        items
            .par_iter()
            .flat_map_iter(|it| background_patches(&it.image, &it.boxes))
            .collect()
    };
    let backgrounds = patches(&items[..real]);
    let val_backgrounds = patches(&val_items);
    eprintln!(
        "detector data: {} training photos ({} background patches), {} extra images, {} held out",
        real,
        backgrounds.len(),
        items.len() - real,
        val_items.len()
    );
    let val: Vec<(Vec<f32>, Vec<f32>, bool)> = val_items
        .par_iter()
        .enumerate()
        .map(|(i, it)| {
            let mut rng = Rng::derive(cfg.seed ^ 0x5eed, i as u64);
            sample(it, &val_backgrounds, cfg, &mut rng)
        })
        .collect();
    let ck_path = checkpoint_path(&cfg.out);
    let mut ck = if ck_path.exists() {
        let ck = DetCheckpoint::load(&ck_path)?;
        if ck.model.config != cfg.model {
            return Err(ck_err(&ck_path, "its architecture differs from this run's"));
        }
        if ck.options != cfg.options() {
            return Err(ck_err(
                &ck_path,
                format!(
                    "it was trained with other options ({}, now {}); use another --out",
                    ck.options,
                    cfg.options()
                ),
            ));
        }
        eprintln!("resuming after epoch {}", ck.history.len());
        ck
    } else {
        let model = Detector::new(cfg.model, cfg.seed);
        let n = model.params.len();
        DetCheckpoint {
            model,
            adam: Adam::new(n),
            history: Vec::new(),
            options: cfg.options(),
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
            let samples: Vec<(Vec<f32>, Vec<f32>, bool)> = batch
                .par_iter()
                .map(|&i| {
                    let mut rng = Rng::derive(cfg.seed, (step << 24) | i as u64);
                    sample(&items[i], &backgrounds, cfg, &mut rng)
                })
                .collect();
            let (loss, mut grad) = batch_grad(&ck.model, &samples, side);
            let norm = clip_grad_norm(&mut grad, cfg.clip_norm);
            if loss.is_finite() && norm.is_finite() {
                ck.adam
                    .step(&mut ck.model.params, &grad, lr_at(cfg.lr, step, total));
            }
            loss_sum += loss;
            pb.inc(1);
        }
        pb.finish_and_clear();
        let (val_loss, val_hit) = validate(&ck.model, &val, side);
        let log = DetEpoch {
            epoch: epoch + 1,
            loss: (loss_sum / per_epoch as f64) as f32,
            val_loss,
            val_hit,
            seconds: start.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {:>3}/{}  loss {:.4}  val loss {:.4}  val hit {:.1}%  {:.0}s",
            log.epoch,
            cfg.epochs,
            log.loss,
            log.val_loss,
            100.0 * log.val_hit,
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

    fn item() -> Item {
        let mut image = Rgb32FImage::from_pixel(60, 40, image::Rgb([0.8; 3]));
        for y in 10..30 {
            for x in 20..40 {
                image.put_pixel(x, y, image::Rgb([0.1; 3]));
            }
        }
        Item {
            image,
            boxes: vec![DigitBox {
                left: 20.0,
                top: 10.0,
                width: 20.0,
                height: 20.0,
            }],
        }
    }

    fn config(anywhere: f32) -> DetTrainConfig {
        DetTrainConfig {
            data: PathBuf::new(),
            out: PathBuf::new(),
            epochs: 1,
            batch_size: 1,
            lr: 1e-3,
            clip_norm: 5.0,
            seed: 1,
            val_fraction: 0.2,
            limit: None,
            model: DetectorConfig::default(),
            cells: 6,
            heights: [16.0, 16.0],
            anywhere,
            quiet: true,
            stop_after: None,
            fold: None,
            extra: Vec::new(),
        }
    }

    #[test]
    fn a_centred_crop_marks_the_number_with_its_area() {
        // The number is a 16 px square in the crop: at most 4 cells' worth of coverage (less
        // where it reaches into the padding), its centre in the cells.
        let cfg = config(0.0);
        for seed in 0..8 {
            let (x, t, centred) = sample(&item(), &[], &cfg, &mut Rng::new(seed));
            let side = STRIDE * cfg.cells + 2 * PAD;
            assert_eq!(x.len(), 3 * side * side);
            assert!(centred, "seed {seed}");
            let area: f32 = t.iter().sum();
            assert!(area > 0.5 && area < 4.01, "seed {seed}: covered {area}");
            assert!(t.iter().any(|&v| v > 0.2), "seed {seed}");
            assert!(t.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }
    }
}
