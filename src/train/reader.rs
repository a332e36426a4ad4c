//! Training: CTC loss, Adam with warm-up and cosine decay, global-norm gradient clipping,
//! augmentation of real images, a validation split held out by file name, per-epoch
//! checkpoints (resumable), a JSON history and a PNG training curve.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::Rgb32FImage;
use rayon::prelude::*;

use crate::data::recombine;
use crate::data::svhn::{split_held_out, Fold, SvhnSet};
use crate::data::synth::FontSet;
use crate::engine::crnn::{
    loss_and_grad_dropout, loss_grad_targets, sample_log_probs, Crnn, ModelConfig, Target,
    NORM_MOMENTUM,
};
use crate::error::{Error, Result};
use crate::read::ctc::NO_NUMBER;
use crate::read::DigitBox;
use crate::read::{self, BatchItem, Protocol, Region, Strip};
use crate::rng::Rng;
use crate::train::augment::{self, AugmentConfig};
use crate::train::checkpoint::{Checkpoint, EpochLog, TrainState};
use crate::train::optim::{apply_step, lr_at, Adam};

/// Everything that defines a training run; saved in the checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Folder in the official SVHN layout.
    pub data: PathBuf,
    /// Output folder: `last.safetensors`, `history.json`, `curve.png`.
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
    /// Augmentation strengths.
    pub augment: AugmentConfig,
    /// Architecture.
    pub model: ModelConfig,
    /// Dropout rate on the window embeddings and the LSTM outputs.
    pub dropout: f32,
    /// Pseudo-labelled images: a `housenum read` listing (`IMAGE<TAB>DIGITS<TAB>CONFIDENCE`),
    /// trained on as whole images (no boxes).
    pub pseudo: Option<PathBuf>,
    /// Keep only pseudo labels at least this confident.
    pub pseudo_min_confidence: f32,
    /// Unlabelled images read online: a `housenum read --region` listing whose image paths and
    /// regions are used (its digits and confidences are not). An exponential moving average of
    /// the model (the teacher) reads each image's region, unaugmented, when the image comes up
    /// in training; when it is at least `online_threshold` sure, the model learns that reading
    /// from an augmented view of the region, as it learns a labelled photo.
    #[serde(default)]
    pub online: Option<PathBuf>,
    /// The teacher's confidence (the reading's probability) needed to train on its reading.
    #[serde(default = "default_online_threshold")]
    pub online_threshold: f32,
    /// Decay of the teacher's moving average per optimiser step (`ema = d · ema + (1 − d) · model`).
    #[serde(default = "default_ema_decay")]
    pub ema_decay: f32,
    /// Unlabelled images taught by a fixed teacher's posteriors (distillation): a `housenum read
    /// --region` listing whose image paths and regions are used (its digits and confidences are
    /// not). Each region, augmented as any sample, is trained towards [`TrainConfig::teacher`]'s
    /// log-probabilities of that very strip every time it comes up ([`Target::Soft`]), whatever
    /// the teacher reads in it.
    #[serde(default)]
    pub distil: Option<PathBuf>,
    /// The teacher of [`TrainConfig::distil`]: a checkpoint or a reader exported to ONNX. It
    /// must give the model's steps for every strip width (the same padding and window).
    #[serde(default)]
    pub teacher: Option<PathBuf>,
    /// Share of training samples replaced by recombined numbers (real digits, new sequences).
    pub recombine_prob: f32,
    /// Longest recombined number used in training.
    pub recombine_max_len: usize,
    /// Share of training samples replaced by synthetic numbers ([`crate::data::synth`]), drawn on the
    /// fly with backgrounds from the training split only.
    #[serde(default)]
    pub synth_prob: f32,
    /// Longest synthetic number.
    #[serde(default = "default_synth_max_len")]
    pub synth_max_len: usize,
    /// Share of synthetic numbers set as type is set ([`SynthConfig::typeset_prob`]).
    ///
    /// [`SynthConfig::typeset_prob`]: crate::data::synth::SynthConfig::typeset_prob
    #[serde(default)]
    pub synth_typeset: f32,
    /// Share of training samples replaced by a digit-free part of a training-split photo
    /// ([`crate::data::synth::load_backgrounds`]) cut at a random aspect ([`empty_cut`]), whose
    /// target is no digits.
    #[serde(default)]
    pub empty_prob: f32,
    /// Start from these weights (a checkpoint or `export --weights` file) instead of random
    /// ones; the model configuration is the file's except `pad` (which has no weights and is
    /// this run's). Ignored when resuming.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// With `init`: grow the initial model to `model.channels` / `model.hidden` without
    /// changing what it computes ([`Crnn::widened`]) instead of keeping the file's sizes.
    #[serde(default)]
    pub widen: bool,
    /// With `init`: start again the conv channels that never fire (ReLU output 0) on the
    /// crops of the first 500 training-split images ([`Crnn::revived`]; same function).
    #[serde(default)]
    pub revive: bool,
    /// Hide progress bars.
    pub quiet: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::from("../shared/svhn/train"),
            out: PathBuf::from("runs/default"),
            epochs: 60,
            batch_size: 32,
            lr: 2e-3,
            clip_norm: 5.0,
            seed: 1,
            val_fraction: 0.1,
            limit: None,
            fold: None,
            augment: AugmentConfig::default(),
            model: ModelConfig::default(),
            dropout: 0.0,
            pseudo: None,
            pseudo_min_confidence: 0.9,
            online: None,
            online_threshold: default_online_threshold(),
            ema_decay: default_ema_decay(),
            distil: None,
            teacher: None,
            recombine_prob: 0.0,
            recombine_max_len: 6,
            synth_prob: 0.0,
            synth_max_len: default_synth_max_len(),
            synth_typeset: 0.0,
            empty_prob: 0.0,
            init: None,
            widen: false,
            revive: false,
            quiet: false,
        }
    }
}

/// A training image kept in memory: the reachable part of the photo and its boxes.
struct Sample {
    image: Rgb32FImage,
    boxes: Vec<DigitBox>,
    digits: Vec<u8>,
}

/// Sequence accuracy of `model` on preprocessed strips (grouped by width, batched).
pub fn sequence_accuracy(model: &Crnn, strips: &[Strip], truths: &[Vec<u8>]) -> f64 {
    let preds = predict_strips(model, strips);
    let ok = preds.iter().zip(truths).filter(|(p, t)| p == t).count();
    ok as f64 / truths.len().max(1) as f64
}

/// Greedy-decoded digits for each strip, in input order (training-side engine).
pub fn predict_strips(model: &Crnn, strips: &[Strip]) -> Vec<Vec<u8>> {
    let refs: Vec<&Strip> = strips.iter().collect();
    decode_strips(model, &refs)
        .into_iter()
        .map(|d| d.digits)
        .collect()
}

/// Greedy readings of each strip, in input order, with their probability (training-side engine;
/// uncalibrated: `confidence` is `exp(log_prob)`).
pub fn decode_strips(model: &Crnn, strips: &[&Strip]) -> Vec<crate::read::ctc::Decoded> {
    let mut by_width: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, s) in strips.iter().enumerate() {
        by_width.entry(s.width).or_default().push(i);
    }
    let groups: Vec<(usize, Vec<usize>)> = by_width
        .into_iter()
        .flat_map(|(w, idx)| idx.chunks(16).map(|c| (w, c.to_vec())).collect::<Vec<_>>())
        .collect();
    let decoded: Vec<(usize, crate::read::ctc::Decoded)> = groups
        .par_iter()
        .flat_map_iter(|(w, idx)| {
            let x: Vec<f32> = idx
                .iter()
                .flat_map(|&i| strips[i].data.iter().cloned())
                .collect();
            let lp = crate::engine::crnn::log_probs(model, &x, idx.len(), *w);
            let t = model.config.steps(*w);
            idx.iter()
                .enumerate()
                .map(|(b, &i)| (i, crate::read::ctc::greedy_decode(&lp, t, idx.len(), b)))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out: Vec<Option<crate::read::ctc::Decoded>> = vec![None; strips.len()];
    for (i, d) in decoded {
        out[i] = Some(d);
    }
    out.into_iter()
        .map(|d| d.expect("every strip is decoded"))
        .collect()
}

/// Load training samples; `regions[i]`, when given, crops record `i`'s image to that region
/// first (a pseudo label read from a crop of the image applies to that crop).
fn load_samples(
    set: &[crate::data::svhn::Record],
    regions: &[Option<Region>],
    quiet: bool,
) -> (Vec<Sample>, Vec<String>) {
    let pb = crate::progress::bar(set.len() as u64, "loading", quiet);
    let loaded: Vec<std::result::Result<Sample, String>> = set
        .par_iter()
        .enumerate()
        .map(|(i, r)| {
            pb.inc(1);
            let mut img = read::load_image(&r.path).map_err(|e| e.to_string())?;
            if let Some(g) = regions.get(i).copied().flatten() {
                let (w, h) = img.dimensions();
                if g.x1 > w || g.y1 > h || g.width() == 0 || g.height() == 0 {
                    return Err(format!("{}: region outside the image", r.path.display()));
                }
                img = image::imageops::crop_imm(&img, g.x0, g.y0, g.width(), g.height()).to_image();
            }
            let (image, boxes) = augment::reachable_part(&img, &r.boxes);
            Ok(Sample {
                image,
                boxes,
                digits: r.digits.clone(),
            })
        })
        .collect();
    pb.finish_and_clear();
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for l in loaded {
        match l {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

/// Load the images of listing rows (image, digits, region), each cut to its region; no boxes.
fn load_listed(rows: Vec<PseudoLabel>, quiet: bool) -> (Vec<Sample>, Vec<String>) {
    let regions: Vec<Option<Region>> = rows.iter().map(|r| r.2).collect();
    let recs: Vec<crate::data::svhn::Record> = rows
        .into_iter()
        .map(|(path, digits, _)| crate::data::svhn::Record {
            name: path.display().to_string(),
            path,
            digits,
            boxes: Vec::new(),
            image_size: None,
        })
        .collect();
    load_samples(&recs, &regions, quiet)
}

/// A pseudo label: the image, the digits read, and the region they were read from (when the
/// listing says; `None` = the whole image).
pub type PseudoLabel = (PathBuf, Vec<u8>, Option<Region>);

/// An unlabelled image and the region of it to read (`None` = the whole image).
pub type Unlabelled = (PathBuf, Option<Region>);

/// One row of a `housenum read` listing: image, digits, confidence, region.
type ListingRow = (PathBuf, Vec<u8>, f32, Option<Region>);

/// Parse a `housenum read` listing (`IMAGE<TAB>DIGITS<TAB>CONFIDENCE`, or with `--region` a
/// fourth column `X0,Y0,X1,Y1`); `no number` reads as no digits.
fn read_listing(path: &Path) -> Result<Vec<ListingRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let region = |s: &str| -> Option<Region> {
            let v: Vec<u32> = s
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() == 4 && v[0] < v[2] && v[1] < v[3]).then(|| Region {
                x0: v[0],
                y0: v[1],
                x1: v[2],
                y1: v[3],
            })
        };
        let parsed = (f.len() == 3 || f.len() == 4)
            .then(|| {
                let r = match f.get(3) {
                    Some(s) => Some(region(s)?),
                    None => None,
                };
                // `read` prints NO_NUMBER for a photo without digits: nothing to learn.
                let digits = if f[1] == NO_NUMBER { "" } else { f[1] };
                Some((
                    crate::alphabet::digits_from_str(digits)?,
                    f[2].parse::<f32>().ok()?,
                    r,
                ))
            })
            .flatten();
        let Some((digits, conf, region)) = parsed else {
            return Err(Error::Config(format!(
                "{}:{}: expected IMAGE<TAB>DIGITS<TAB>CONFIDENCE[<TAB>X0,Y0,X1,Y1]",
                path.display(),
                i + 1
            )));
        };
        out.push((PathBuf::from(f[0]), digits, conf, region));
    }
    Ok(out)
}

/// Read a `housenum read` listing (`IMAGE<TAB>DIGITS<TAB>CONFIDENCE`, or with `--region` a
/// fourth column `X0,Y0,X1,Y1`) and keep the rows at least `min_conf` confident with a
/// non-empty reading.
pub fn read_pseudo_labels(path: &Path, min_conf: f32) -> Result<Vec<PseudoLabel>> {
    Ok(read_listing(path)?
        .into_iter()
        .filter(|(_, digits, conf, _)| *conf >= min_conf && !digits.is_empty())
        .map(|(p, digits, _, region)| (p, digits, region))
        .collect())
}

/// The images of a `housenum read` listing with the region each was read from (`None` = the
/// whole image), every row whatever it read: the unlabelled photos of online training.
pub fn read_unlabelled(path: &Path) -> Result<Vec<Unlabelled>> {
    Ok(read_listing(path)?
        .into_iter()
        .map(|(p, _, _, region)| (p, region))
        .collect())
}

/// Channels of conv1..conv4 whose ReLU output is 0 at every position of every strip.
pub fn dead_channels(model: &Crnn, strips: &[Strip]) -> [Vec<usize>; 4] {
    let peaks = strips
        .par_iter()
        .map(|s| model.channel_peaks(&s.data, s.width))
        .reduce(
            || std::array::from_fn(|k| vec![0.0; model.config.channels[k]]),
            |a, b| {
                std::array::from_fn(|k| a[k].iter().zip(&b[k]).map(|(x, y)| x.max(*y)).collect())
            },
        );
    std::array::from_fn(|k| {
        (0..peaks[k].len())
            .filter(|&c| peaks[k][c] <= 0.0)
            .collect()
    })
}

/// Strips of labelled records under `protocol` (validation during training; training crops for
/// `revive`), with their digits; unreadable images are left out.
fn labelled_strips(
    records: &[crate::data::svhn::Record],
    protocol: Protocol,
    stretch: f32,
) -> (Vec<Strip>, Vec<Vec<u8>>) {
    let items: Vec<BatchItem> = records
        .iter()
        .map(|r| BatchItem {
            path: r.path.clone(),
            boxes: r.boxes.clone(),
        })
        .collect();
    let res = read::preprocess_batch(&items, protocol, stretch, &indicatif::ProgressBar::hidden());
    let mut strips = Vec::new();
    let mut truths = Vec::new();
    for (r, s) in records.iter().zip(res) {
        if let Ok(s) = s {
            strips.push(s);
            truths.push(r.digits.clone());
        }
    }
    (strips, truths)
}

/// Training-step throughput of this engine, for the benchmark against PyTorch
/// (`benches/torch_train.py` runs the same step there): `model` (fresh or trained) with its Adam
/// state `adam` (`m`/`v` empty for fresh moments), a batch of `batch` random strips
/// `[3, 32, width]` with random 1–5-digit targets, forward + CTC + backward + clipping + Adam.
/// Three warm-up steps, then `runs` timings of `steps` steps each, alternating between a copy
/// that flushes subnormals (what [`train`] does, [`crate::engine::layers::FlushSubnormals`]) and
/// one that keeps them, or with `bf16` between a copy in bfloat16 ([`crate::engine::amx`]) and
/// one in `f32`, both flushing. Returns images per second of each run: `(flushed, kept)`, or
/// `(bf16, f32)`. The process's bfloat16 switch is off when it returns.
///
/// # Panics
/// With `bf16` on a machine without AMX bfloat16 tiles.
pub fn step_throughput(
    model: &Crnn,
    adam: &Adam,
    batch: usize,
    width: usize,
    steps: usize,
    runs: usize,
    bf16: bool,
) -> (Vec<f64>, Vec<f64>) {
    let n = model.num_params();
    let fresh = Adam {
        m: vec![0.0; n],
        v: vec![0.0; n],
        t: 0,
    };
    let adam = if adam.m.len() == n && adam.v.len() == n {
        adam.clone()
    } else {
        fresh
    };
    let height = model.config.height;
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..batch * 3 * height * width)
        .map(|_| rng.normal())
        .collect();
    let targets: Vec<Vec<u8>> = (0..batch)
        .map(|_| (0..1 + rng.below(5)).map(|_| rng.below(10) as u8).collect())
        .collect();
    let one = |model: &mut Crnn, adam: &mut Adam| {
        let (loss, mut grad, used) =
            loss_and_grad_dropout(model, &x, batch, width, &targets, 0.0, 0);
        apply_step(&mut model.params, adam, &mut grad, loss, used, 5.0, 1e-3);
    };
    let mut states = [(model.clone(), adam.clone()), (model.clone(), adam)];
    let mode = |i: usize| {
        crate::engine::layers::set_bf16(bf16 && i == 0).expect("AMX bfloat16 tiles");
        (bf16 || i == 0).then(crate::engine::layers::FlushSubnormals::new)
    };
    for (i, (m, a)) in states.iter_mut().enumerate() {
        let _flush = mode(i);
        for _ in 0..3 {
            one(m, a);
        }
    }
    let (mut flushed, mut kept) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (i, (m, a)) in states.iter_mut().enumerate() {
            let _flush = mode(i);
            let t0 = Instant::now();
            for _ in 0..steps {
                one(m, a);
            }
            let rate = (batch * steps) as f64 / t0.elapsed().as_secs_f64();
            if i == 0 {
                flushed.push(rate)
            } else {
                kept.push(rate)
            }
        }
    }
    let _ = crate::engine::layers::set_bf16(false);
    (flushed, kept)
}

/// Path of the resumable checkpoint inside an output folder.
pub fn last_checkpoint(out: &Path) -> PathBuf {
    out.join("last.safetensors")
}

fn default_synth_max_len() -> usize {
    8
}

fn default_online_threshold() -> f32 {
    0.9
}

fn default_ema_decay() -> f32 {
    0.999
}

/// Path of the teacher (the moving average of the weights) of an online run inside its output
/// folder; a weights-only checkpoint written with `last.safetensors`.
pub fn teacher_checkpoint(out: &Path) -> PathBuf {
    out.join("teacher.safetensors")
}

/// Move the moving average `ema` towards `params`: `ema ← decay · ema + (1 − decay) · params`.
pub fn ema_update(ema: &mut [f32], params: &[f32], decay: f32) {
    for (e, &p) in ema.iter_mut().zip(params) {
        *e = decay * *e + (1.0 - decay) * p;
    }
}

/// A reader from a checkpoint, or from a reader exported to ONNX (its weights are exact).
fn load_reader(p: &Path) -> Result<Crnn> {
    if p.extension().is_some_and(|e| e == "onnx") {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        crate::export::crnn_from_onnx(&bytes, p)
    } else {
        Ok(Checkpoint::load(p)?.model)
    }
}

/// The teacher of a distillation run, refused unless it gives `student`'s steps for every strip
/// (its posteriors are the target step by step).
pub fn distillation_teacher(path: &Path, student: &ModelConfig) -> Result<Crnn> {
    let t = load_reader(path)?;
    let other = |w: &usize| t.config.steps(*w) != student.steps(*w);
    let mismatch = match t.config.height == student.height {
        true => (1..=crate::read::MAX_WIDTH).find(other),
        false => Some(100),
    };
    if let Some(w) = mismatch {
        return Err(Error::Config(format!(
            "{}: the teacher gives {} steps for a strip {w} px wide (height {}), the model {} (height {}); distillation needs the same steps: the same padding and window (--pad, --blocks)",
            path.display(),
            t.config.steps(w),
            t.config.height,
            student.steps(w),
            student.height
        )));
    }
    if t.config.stretch != student.stretch {
        eprintln!(
            "warning: {} was trained on strips stretched {}, the model's are stretched {}",
            path.display(),
            t.config.stretch,
            student.stretch
        );
    }
    Ok(t)
}

/// The teacher's log-probabilities of the batch's strips without digits, in order, each
/// `[t, NUM_CLASSES]`.
///
/// # Shapes
/// `x`: `[n, 3, height, w]` with `n = digits.len()`; returns one `[t, NUM_CLASSES]` per `None`.
fn teacher_posteriors(
    teacher: &Crnn,
    x: &[f32],
    w: usize,
    digits: &[Option<Vec<u8>>],
) -> Vec<Vec<f32>> {
    let per = x.len() / digits.len().max(1);
    let soft: Vec<usize> = (0..digits.len()).filter(|&b| digits[b].is_none()).collect();
    if soft.is_empty() {
        return Vec::new();
    }
    let xs: Vec<f32> = soft
        .iter()
        .flat_map(|&b| x[b * per..][..per].iter().copied())
        .collect();
    let m = soft.len();
    let lp = teacher.forward(&xs, m, w).log_probs;
    (0..m).map(|b| sample_log_probs(&lp, m, b)).collect()
}

/// Run (or resume) training as configured. Progress goes to stderr; one line per epoch.
pub fn train(cfg: &TrainConfig) -> Result<TrainState> {
    let _flush = crate::engine::layers::FlushSubnormals::new();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let set = SvhnSet::open(&cfg.data)?;
    if let Some(m) = set.missing_summary() {
        eprintln!("warning: {m}");
    }
    if !read::STRETCH_RANGE.contains(&cfg.model.stretch) {
        return Err(Error::Config(format!(
            "stretch {} is outside {:?}",
            cfg.model.stretch,
            read::STRETCH_RANGE
        )));
    }
    match (&cfg.distil, &cfg.teacher, &cfg.online) {
        (Some(_), None, _) => return Err(Error::Config("distillation needs a teacher".into())),
        (None, Some(t), _) => {
            return Err(Error::Config(format!(
                "{}: a teacher is for distillation, which needs a listing of unlabelled images",
                t.display()
            )))
        }
        (Some(_), Some(_), Some(_)) => {
            return Err(Error::Config(
                "online labels and distillation both teach the unlabelled images: choose one"
                    .into(),
            ))
        }
        _ => {}
    }
    let (mut train_recs, val_recs) = split_held_out(&set.records, cfg.val_fraction, cfg.fold);
    if let Some(l) = cfg.limit {
        train_recs.truncate(l);
    }
    match cfg.fold {
        Some(fold) => eprintln!(
            "data: {} training images, {} held out in fold {fold} (the validation split is in neither)",
            train_recs.len(),
            val_recs.len()
        ),
        None => eprintln!(
            "data: {} training images, {} validation images (held out by name hash, never trained on)",
            train_recs.len(),
            val_recs.len()
        ),
    }
    let (mut samples, errors) = load_samples(&train_recs, &[], cfg.quiet);
    if let Some(p) = &cfg.pseudo {
        let rows = read_pseudo_labels(p, cfg.pseudo_min_confidence)?;
        let (pseudo, perr) = load_listed(rows, cfg.quiet);
        eprintln!(
            "pseudo labels: {} images from {} (confidence >= {}), {} unreadable",
            pseudo.len(),
            p.display(),
            cfg.pseudo_min_confidence,
            perr.len()
        );
        samples.extend(pseudo);
    }
    // Samples from `n_labelled` on are unlabelled: the teacher reads them when they come up.
    let n_labelled = samples.len();
    if let Some(p) = cfg.online.as_ref().or(cfg.distil.as_ref()) {
        let rows = read_unlabelled(p)?;
        let rows = rows.into_iter().map(|(path, r)| (path, Vec::new(), r));
        let (unlabelled, uerr) = load_listed(rows.collect(), cfg.quiet);
        match &cfg.teacher {
            None => eprintln!(
                "online: {} unlabelled images from {}, read by the moving average of the model (decay {}) when they come up, trained on at confidence >= {}; {} unreadable",
                unlabelled.len(),
                p.display(),
                cfg.ema_decay,
                cfg.online_threshold,
                uerr.len()
            ),
            Some(t) => eprintln!(
                "distillation: {} unlabelled images from {}, each strip taught {}'s posteriors of it; {} unreadable",
                unlabelled.len(),
                p.display(),
                t.display(),
                uerr.len()
            ),
        }
        for e in uerr.iter().take(5) {
            eprintln!("skipped: {e}");
        }
        if unlabelled.is_empty() {
            return Err(Error::Config(format!(
                "{}: no readable unlabelled image (paths are relative to the current folder)",
                p.display()
            )));
        }
        samples.extend(unlabelled);
    }
    for e in errors.iter().take(5) {
        eprintln!("skipped: {e}");
    }
    if samples.is_empty() {
        return Err(Error::Config(format!(
            "{}: no usable training images",
            cfg.data.display()
        )));
    }
    let digit_pool: Vec<recombine::DigitCrop> = if cfg.recombine_prob > 0.0 {
        samples
            .par_iter()
            .filter(|s| !s.boxes.is_empty())
            .flat_map_iter(|s| recombine::cut_digits(&s.image, &s.boxes, &s.digits))
            .collect()
    } else {
        Vec::new()
    };
    if !digit_pool.is_empty() {
        eprintln!(
            "recombination: {} real digits cut from the training split; {:.0} % of samples are new numbers of 1-{} digits",
            digit_pool.len(),
            100.0 * cfg.recombine_prob,
            cfg.recombine_max_len
        );
    }
    let mut backgrounds = if cfg.synth_prob > 0.0 || cfg.empty_prob > 0.0 {
        crate::data::synth::load_backgrounds(&train_recs)
    } else {
        Vec::new()
    };
    if cfg.empty_prob > 0.0 {
        if backgrounds.is_empty() {
            return Err(Error::Config(
                "--empty: the training split has no digit-free part of 12 x 12 pixels or more"
                    .into(),
            ));
        }
        eprintln!(
            "no number: {:.0} % of samples are digit-free parts of the training photos ({} patches)",
            100.0 * cfg.empty_prob,
            backgrounds.len()
        );
    }
    let synth = (cfg.synth_prob > 0.0).then(|| {
        let backgrounds = std::mem::take(&mut backgrounds);
        eprintln!(
            "synthesis: {:.0} % of samples are synthetic numbers of 1-{} digits ({} fonts, the held-out families left out; {} background patches from the training split)",
            100.0 * cfg.synth_prob,
            cfg.synth_max_len,
            crate::data::synth::FONTS
                .iter()
                .filter(|(n, _)| FontSet::Training.contains(n))
                .count(),
            backgrounds.len()
        );
        crate::data::synth::Synth::new(
            crate::data::synth::SynthConfig {
                max_len: cfg.synth_max_len,
                max_digit_height: 30.0,
                max_margin: 2.5,
                fonts: FontSet::Training,
                typeset_prob: cfg.synth_typeset,
                ..Default::default()
            },
            backgrounds,
        )
    });

    // `--empty`'s patches: the synthesiser's when it runs (the same ones), else their own.
    let empty_pool: &[Rgb32FImage] = synth.as_ref().map_or(&backgrounds, |g| g.backgrounds());

    let ck_path = last_checkpoint(&cfg.out);
    let (mut model, mut adam, mut state) = if ck_path.exists() {
        let ck = Checkpoint::load(&ck_path)?;
        eprintln!(
            "resuming from {} (epoch {} done)",
            ck_path.display(),
            ck.state.epoch
        );
        let n = ck.model.num_params();
        let (m, v) = if ck.adam_m.len() == n {
            (ck.adam_m, ck.adam_v)
        } else {
            (vec![0.0; n], vec![0.0; n])
        };
        let adam = Adam {
            m,
            v,
            t: ck.state.step,
        };
        (ck.model, adam, ck.state)
    } else {
        let model = match &cfg.init {
            Some(p) => {
                let mut m = load_reader(p)?;
                // Padding and stretch have no weights: the run's own settings apply.
                m.config.pad = cfg.model.pad;
                m.config.stretch = cfg.model.stretch;
                eprintln!("initial weights from {}", p.display());
                if cfg.model.norm && !m.config.norm {
                    return Err(Error::Config(format!(
                        "--norm needs a model trained with it; {} was trained without",
                        p.display()
                    )));
                }
                if cfg.widen {
                    let (c, h) = (cfg.model.channels, cfg.model.hidden);
                    m = m.widened(c, h, cfg.seed).ok_or_else(|| {
                        Error::Config(format!(
                            "cannot widen {} (channels {:?}, hidden {}) to channels {c:?}, hidden {h}: a size would shrink, or it has residual blocks or normalisation",
                            p.display(),
                            m.config.channels,
                            m.config.hidden
                        ))
                    })?;
                    eprintln!("widened to channels {c:?}, hidden {h} (same function)");
                }
                if m.config.blocks != cfg.model.blocks {
                    let (have, want) = (m.config.blocks, cfg.model.blocks);
                    m = m.deepened(want, cfg.seed).ok_or_else(|| {
                        Error::Config(format!(
                            "{} has residual blocks {have:?}; --blocks {},{} would remove some",
                            p.display(),
                            want[0],
                            want[1]
                        ))
                    })?;
                    m.config.pad = cfg.model.pad;
                    eprintln!("residual blocks {have:?} -> {want:?} (same function)");
                }
                if cfg.revive {
                    if m.config.blocks != [0, 0] || m.config.norm {
                        return Err(Error::Config(
                            "--revive is for readers without residual blocks or normalisation"
                                .into(),
                        ));
                    }
                    let probe = &train_recs[..train_recs.len().min(500)];
                    let (strips, _) = labelled_strips(probe, Protocol::Crop, m.config.stretch);
                    let dead = dead_channels(&m, &strips);
                    let counts: Vec<String> = dead
                        .iter()
                        .zip(m.config.channels)
                        .map(|(d, c)| format!("{}/{c}", d.len()))
                        .collect();
                    m = m.revived(&dead, cfg.seed);
                    eprintln!(
                        "revived conv channels that never fired on {} training crops: {} (same function)",
                        strips.len(),
                        counts.join(" ")
                    );
                }
                m
            }
            None => Crnn::new(cfg.model.clone(), cfg.seed),
        };
        let n = model.num_params();
        let state = TrainState {
            train_config: serde_json::to_value(cfg).expect("config serialises"),
            ..Default::default()
        };
        (
            model,
            Adam {
                m: vec![0.0; n],
                v: vec![0.0; n],
                t: 0,
            },
            state,
        )
    };
    eprintln!(
        "model: {} parameters, {:?}",
        model.num_params(),
        model.config
    );
    // The strips' stretch is the model's (a resumed run keeps its checkpoint's).
    let stretch = model.config.stretch;
    let (vc, vct) = labelled_strips(&val_recs, Protocol::Crop, stretch);
    let (vf, vft) = labelled_strips(&val_recs, Protocol::Full, stretch);
    let steps_per_epoch = samples.len().div_ceil(cfg.batch_size) as u64;
    let total_steps = steps_per_epoch * cfg.epochs as u64;
    // Online: the teacher, and what it reads: each unlabelled region as `read` would see it.
    let mut teacher: Option<Crnn> = match &cfg.online {
        None => None,
        Some(_) => {
            let path = teacher_checkpoint(&cfg.out);
            let saved = if path.exists() && state.epoch > 0 {
                let t = Checkpoint::load(&path)?;
                if t.state.epoch == state.epoch && t.model.num_params() == model.num_params() {
                    Some(t.model)
                } else {
                    eprintln!(
                        "warning: {} is from epoch {}, not {}: the teacher starts again from the model",
                        path.display(),
                        t.state.epoch,
                        state.epoch
                    );
                    None
                }
            } else {
                None
            };
            Some(saved.unwrap_or_else(|| model.clone()))
        }
    };
    let teacher_strips: Vec<Strip> = match teacher {
        Some(_) => samples[n_labelled..]
            .par_iter()
            .map(|s| {
                let (w, h) = s.image.dimensions();
                read::strip_from_region(&s.image, Region::full(w, h), stretch)
            })
            .collect(),
        None => Vec::new(),
    };
    // Distillation: the fixed teacher, whose posteriors of each unlabelled strip are its target.
    let distiller = match &cfg.teacher {
        None => None,
        Some(p) => Some(distillation_teacher(p, &model.config)?),
    };

    for epoch in state.epoch..cfg.epochs {
        let started = Instant::now();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        Rng::derive(cfg.seed, epoch as u64).shuffle(&mut order);
        let pb = crate::progress::bar(steps_per_epoch, &format!("epoch {}", epoch + 1), cfg.quiet);
        let (mut loss_sum, mut loss_n, mut skipped) = (0f64, 0usize, 0usize);
        let (mut online_seen, mut online_kept) = (0usize, 0usize);
        let mut distilled = 0usize;
        // Pools of 16 batches: generated in parallel, sorted by width so batches pad little.
        let chunk = cfg.batch_size * 16;
        for (pool_i, pool) in order.chunks(chunk).enumerate() {
            // The teacher's readings of this pool's unlabelled images, the sure ones kept.
            let mut online_labels: std::collections::HashMap<usize, Vec<u8>> = Default::default();
            if let Some(t) = &teacher {
                let idx: Vec<usize> = pool.iter().copied().filter(|&i| i >= n_labelled).collect();
                let strips: Vec<&Strip> = idx
                    .iter()
                    .map(|&i| &teacher_strips[i - n_labelled])
                    .collect();
                for (i, d) in idx.into_iter().zip(decode_strips(t, &strips)) {
                    if d.confidence >= cfg.online_threshold && !d.digits.is_empty() {
                        online_labels.insert(i, d.digits);
                    }
                }
                online_seen += strips.len();
                online_kept += online_labels.len();
            }
            // A strip with no digits (`None`) is taught the distillation teacher's posteriors.
            let mut strips: Vec<(Strip, Option<Vec<u8>>)> = pool
                .par_iter()
                .filter(|&&i| {
                    i < n_labelled || distiller.is_some() || online_labels.contains_key(&i)
                })
                .map(|&i| {
                    let mut rng = Rng::derive(cfg.seed ^ 0x5eed, (epoch as u64) << 32 | i as u64);
                    // At share 0 no draw is made, so older recipes make the same strips.
                    if cfg.empty_prob > 0.0 && rng.chance(cfg.empty_prob) {
                        let patch = &empty_pool[rng.below(empty_pool.len())];
                        let cut = empty_cut(patch, &mut rng);
                        return (
                            augment::augment(&cut, &[], &cfg.augment, stretch, &mut rng),
                            Some(Vec::new()),
                        );
                    }
                    if let Some(g) = synth.as_ref().filter(|_| rng.chance(cfg.synth_prob)) {
                        let s = g.render(&mut rng);
                        return (
                            augment::augment(&s.image, &s.boxes, &cfg.augment, stretch, &mut rng),
                            Some(s.digits),
                        );
                    }
                    if !digit_pool.is_empty() && rng.chance(cfg.recombine_prob) {
                        let len = 1 + rng.below(cfg.recombine_max_len.max(1));
                        let (img, boxes, digits) = recombine::compose(&digit_pool, len, &mut rng);
                        return (
                            augment::augment(&img, &boxes, &cfg.augment, stretch, &mut rng),
                            Some(digits),
                        );
                    }
                    let s = &samples[i];
                    let digits = match online_labels.get(&i) {
                        Some(d) => Some(d.clone()),
                        None if distiller.is_some() && i >= n_labelled => None,
                        None => Some(s.digits.clone()),
                    };
                    (
                        augment::augment(&s.image, &s.boxes, &cfg.augment, stretch, &mut rng),
                        digits,
                    )
                })
                .collect();
            strips.sort_by_key(|(s, _)| s.width);
            let mut prng = Rng::derive(cfg.seed ^ 0xbad, (epoch as u64) << 32 | pool_i as u64);
            let n_batches = strips.len().div_ceil(cfg.batch_size).max(1);
            for (b, batch) in strips.chunks(cfg.batch_size).enumerate() {
                let (s, digits): (Vec<Strip>, Vec<Option<Vec<u8>>>) = batch.iter().cloned().unzip();
                let (x, w) = augment::pad_batch(&s, &mut prng);
                let soft = match &distiller {
                    Some(t) => teacher_posteriors(t, &x, w, &digits),
                    None => Vec::new(),
                };
                distilled += soft.len();
                let mut soft_iter = soft.iter();
                let targets: Vec<Target> = digits
                    .iter()
                    .map(|d| match d {
                        Some(d) => Target::Digits(d),
                        None => Target::Soft(soft_iter.next().expect("one per soft strip")),
                    })
                    .collect();
                let (loss, mut grad, used, stats) = loss_grad_targets(
                    &model,
                    &x,
                    s.len(),
                    w,
                    &targets,
                    cfg.dropout,
                    cfg.seed ^ state.step,
                );
                // Online runs skip the images the teacher is unsure of, so the schedule follows
                // the share of the epoch's images gone through instead of the step count.
                let at = if teacher.is_some() {
                    let done = pool_i * chunk + (b + 1) * pool.len() / n_batches;
                    epoch as u64 * steps_per_epoch
                        + (done as u64 * steps_per_epoch) / samples.len() as u64
                } else {
                    state.step
                };
                let lr = lr_at(cfg.lr, at, total_steps);
                if apply_step(
                    &mut model.params,
                    &mut adam,
                    &mut grad,
                    loss,
                    used,
                    cfg.clip_norm,
                    lr,
                ) {
                    model.update_running(&stats, NORM_MOMENTUM);
                    loss_sum += loss as f64;
                    loss_n += 1;
                    if let Some(t) = teacher.as_mut() {
                        ema_update(&mut t.params, &model.params, cfg.ema_decay);
                    }
                } else {
                    skipped += 1;
                    eprintln!(
                        "warning: epoch {} step {}: non-finite loss or gradient, step skipped",
                        epoch + 1,
                        state.step
                    );
                }
                state.step += 1;
                pb.inc(1);
                pb.set_prefix(format!("loss {:.3}", loss_sum / loss_n.max(1) as f64));
            }
        }
        pb.finish_and_clear();
        let val_crop = sequence_accuracy(&model, &vc, &vct);
        let val_full = sequence_accuracy(&model, &vf, &vft);
        let secs = started.elapsed().as_secs_f64();
        state.seconds += secs;
        state.epoch = epoch + 1;
        let log = EpochLog {
            epoch: epoch + 1,
            loss: (loss_sum / loss_n.max(1) as f64) as f32,
            skipped_steps: skipped,
            val_crop,
            val_full,
            seconds: secs,
            online: teacher.is_some().then_some((online_seen, online_kept)),
        };
        eprintln!(
            "epoch {:>3}/{}  loss {:.4}  val seq acc crop {:.2}%  full {:.2}%  {:.0}s ({:.0} img/s)",
            log.epoch,
            cfg.epochs,
            log.loss,
            100.0 * val_crop,
            100.0 * val_full,
            secs,
            samples.len() as f64 / secs
        );
        if teacher.is_some() {
            eprintln!(
                "online: the teacher read {online_kept} of {online_seen} unlabelled images at >= {}",
                cfg.online_threshold
            );
        }
        if distiller.is_some() {
            eprintln!("distillation: {distilled} strips taught the teacher's posteriors");
        }
        state.history.push(log);
        if let Some(t) = &teacher {
            // Written before `last.safetensors`: a kill between the two leaves a teacher one
            // epoch ahead, which resuming notices (and restarts the teacher from the model).
            Checkpoint {
                model: t.clone(),
                adam_m: Vec::new(),
                adam_v: Vec::new(),
                state: state.clone(),
            }
            .save(&teacher_checkpoint(&cfg.out))?;
        }
        let ck = Checkpoint {
            model: model.clone(),
            adam_m: adam.m.clone(),
            adam_v: adam.v.clone(),
            state: state.clone(),
        };
        ck.save(&ck_path)?;
        crate::train::checkpoint::write_history(&cfg.out, &state.history)?;
        crate::train::plot::training_curve(&state.history, &cfg.out.join("curve.png"))?;
    }
    Ok(state)
}

/// A sample holding no number ([`TrainConfig::empty_prob`]), cut from the digit-free `patch`:
/// a window of it at a random place, its height 50–100 % of the patch's (at least 12 px where
/// the patch has them), its width 0.6–3 times its height (at most the patch's).
pub fn empty_cut(patch: &Rgb32FImage, rng: &mut Rng) -> Rgb32FImage {
    let (pw, ph) = patch.dimensions();
    let h = ((ph as f32 * rng.uniform(0.5, 1.0)).round() as u32).clamp(ph.min(12), ph);
    let w = ((h as f32 * rng.uniform(0.6, 3.0)).round() as u32).clamp(1, pw);
    let x = rng.below((pw - w + 1) as usize) as u32;
    let y = rng.below((ph - h + 1) as usize) as u32;
    image::imageops::crop_imm(patch, x, y, w, h).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cuts_lie_inside_their_patch() {
        // (patch width, height): every cut is inside it, at least 12 px high where it can be,
        // 0.6-3 times as wide as high unless the patch is narrower.
        let cases = [(12, 12), (13, 96), (300, 12), (500, 96), (40, 90)];
        for (pw, ph) in cases {
            let patch = Rgb32FImage::from_fn(pw, ph, |x, y| {
                image::Rgb([x as f32 / pw as f32, y as f32 / ph as f32, 0.5])
            });
            let mut rng = Rng::new(7);
            for _ in 0..200 {
                let c = empty_cut(&patch, &mut rng);
                let (w, h) = c.dimensions();
                assert!(
                    w >= 1 && w <= pw && h >= 12.min(ph) && h <= ph,
                    "{pw}x{ph}: cut {w}x{h}"
                );
                assert!(h * 2 >= ph, "{pw}x{ph}: cut {w}x{h} under half the height");
                if w < pw {
                    assert!(
                        w as f32 <= 3.0 * h as f32 + 0.5,
                        "{pw}x{ph}: cut {w}x{h} too wide"
                    );
                    assert!(
                        w as f32 >= 0.6 * h as f32 - 0.5,
                        "{pw}x{ph}: cut {w}x{h} too narrow"
                    );
                }
                // The cut is the patch's own pixels at some place.
                let [fx, fy, _] = c.get_pixel(0, 0).0;
                let (x0, y0) = (
                    (fx * pw as f32).round() as u32,
                    (fy * ph as f32).round() as u32,
                );
                assert_eq!(
                    c.get_pixel(w - 1, h - 1),
                    patch.get_pixel(x0 + w - 1, y0 + h - 1)
                );
            }
        }
    }

    #[test]
    fn pseudo_label_listings_table() {
        let r = |x0, y0, x1, y1| Some(Region { x0, y0, x1, y1 });
        // (listing, Ok(kept rows) or Err)
        let cases: [(&str, std::result::Result<Vec<PseudoLabel>, ()>); 7] = [
            (
                "a.png\t42\t0.9\n",
                Ok(vec![("a.png".into(), vec![4, 2], None)]),
            ),
            (
                "a.png\t42\t0.9\t3,4,50,60\n",
                Ok(vec![("a.png".into(), vec![4, 2], r(3, 4, 50, 60))]),
            ),
            // Below the threshold, or nothing read: dropped.
            (
                "a.png\t42\t0.2\nb.png\t\t0.99\nc.png\tno number\t0.99\n",
                Ok(vec![]),
            ),
            ("a.png\t42\n", Err(())),
            ("a.png\t4x2\t0.9\n", Err(())),
            ("a.png\t42\t0.9\t5,5,3,3\n", Err(())),
            ("a.png\t42\t0.9\t1,2,3\n", Err(())),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("{i}.tsv"));
            std::fs::write(&p, text).unwrap();
            let got = read_pseudo_labels(&p, 0.5).map_err(|_| ());
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn unlabelled_listings_keep_every_row_with_its_region() {
        let r = |x0, y0, x1, y1| Some(Region { x0, y0, x1, y1 });
        // (listing, Ok(images and regions) or Err): readings and confidences do not matter.
        let cases: [(&str, std::result::Result<Vec<Unlabelled>, ()>); 4] = [
            (
                "a.png\t42\t0.1\nb.png\tno number\t0.99\t3,4,50,60\n",
                Ok(vec![
                    ("a.png".into(), None),
                    ("b.png".into(), r(3, 4, 50, 60)),
                ]),
            ),
            ("", Ok(vec![])),
            ("a.png\t42\n", Err(())),
            ("a.png\t42\t0.9\t5,5,3,3\n", Err(())),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("{i}.tsv"));
            std::fs::write(&p, text).unwrap();
            assert_eq!(read_unlabelled(&p).map_err(|_| ()), want, "{text:?}");
        }
    }

    #[test]
    fn the_moving_average_moves_by_one_minus_the_decay() {
        // (average, weights, decay, average after)
        type Case = (&'static [f32], &'static [f32], f32, &'static [f32]);
        let cases: [Case; 3] = [
            (&[0.0, 1.0], &[1.0, 1.0], 0.75, &[0.25, 1.0]),
            (&[2.0], &[-2.0], 0.5, &[0.0]),
            (&[3.0], &[5.0], 1.0, &[3.0]),
        ];
        for (ema, params, decay, want) in cases {
            let mut e = ema.to_vec();
            ema_update(&mut e, params, decay);
            assert_eq!(e, want, "{ema:?} {params:?} {decay}");
        }
    }
}
