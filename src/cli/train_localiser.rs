//! `housenum train-localiser`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::engine::localiser::LocaliserConfig;
use housenum::export::localiser_to_onnx;
use housenum::train::localiser::{train_localiser, LocCheckpoint, LocTrainConfig};
use prost::Message;

/// Train (or resume) the number localiser that the `locate` protocol uses: a small CNN that
/// predicts the box around the house number in a whole photo. Trains on the digit boxes of a
/// folder in the official SVHN layout and writes the ONNX model with `--export`.
#[derive(Args, Debug)]
pub struct TrainLocaliserArgs {
    /// Folder with `N.png` images and `digitStruct.mat`.
    #[arg(long, default_value = "../shared/svhn/train")]
    pub data: PathBuf,
    /// Output folder for `localiser.safetensors` (resumed from if present) and `history.json`.
    #[arg(long, default_value = "runs/localiser")]
    pub out: PathBuf,
    /// Epochs over the training split.
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[command(flatten)]
    pub optim: super::train::OptimArgs,
    /// Share of images held out for validation (chosen by a hash of the file name; the same
    /// split as `train`'s at the same share).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Use at most this many training images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// K-fold cross-validation: train on the other folds of the photos outside the validation
    /// split and hold fold I out (`I/K`, e.g. `2/5`); `eval --split fold --fold I/K` measures it.
    #[arg(long, value_name = "I/K")]
    pub fold: Option<housenum::data::svhn::Fold>,
    /// Output channels of the four convolutions.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64, 128, 128])]
    pub channels: Vec<usize>,
    /// Also train on every image of this official-layout folder (e.g. `housenum synth`
    /// output with `--backgrounds` from the same data); repeatable.
    #[arg(long, value_name = "DIR")]
    pub extra: Vec<PathBuf>,
    /// Share of samples replaced by numbers of 1 to `--recombine-max-len` real digits from the
    /// training split set side by side (teaches boxes for numbers longer than any real one).
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub recombine: f32,
    /// Longest recombined number.
    #[arg(long, default_value_t = 10)]
    pub recombine_max_len: usize,
    /// Share of samples where a number of as many to `--recombine-max-len` real digits is
    /// pasted over the photo's own number (long numbers inside a real scene; the photo is
    /// widened when the number would not fit).
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub paste: f32,
    /// Share of photos framed looser: placed in a canvas up to `--zoom-out-max` times their
    /// width and height, filled with digit-free parts of other training photos, so that the
    /// localiser learns numbers small in the frame.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub zoom_out: f32,
    /// Largest zoom-out factor (log-uniform from 1).
    #[arg(long, default_value_t = 6.0)]
    pub zoom_out_max: f32,
    /// Share of samples replaced by a column of 2–4 real digits stacked one above the next,
    /// in a canvas of digit-free parts of the photos up to `--zoom-out-max` times its height:
    /// the localiser learns to box the whole column, which `read` then reads row by row.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub stacked: f32,
    /// Share of samples replaced by a canvas of digit-free parts of the photos holding no
    /// number (a photo's size times up to `--zoom-out-max`), whose target is no band: the
    /// localiser learns that clutter is not a number. Needs `--bins`.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub empty: f32,
    /// Draw a zoom-out's width and height factors independently (canvases of every aspect).
    #[arg(long)]
    pub zoom_out_independent: bool,
    /// Share of photos cut close to the number, as people crop a photo to what they want read:
    /// each side between the number's edge and a quarter of its size beyond it.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub zoom_in: f32,
    /// Input size `HEIGHTxWIDTH` the photo is resized to.
    #[arg(long, default_value = "48x96", value_parser = parse_size)]
    pub input: (usize, usize),
    /// Predict column and row profiles over `BXxBY` bands (e.g. `32x16`) instead of the box:
    /// the share of each band the number covers, decoded into the heaviest run of bands over ½
    /// (docs/experiments.md, "Which localiser"; the shipped localiser: `--bins 32x16 --input
    /// 64x128`). Off: a box head regressing the box's four fractions.
    #[arg(long, value_name = "BXxBY", value_parser = parse_size)]
    pub bins: Option<(usize, usize)>,
    /// Distil this localiser checkpoint (`localiser.safetensors` of a profile localiser with the
    /// same input and bands); repeatable: the teachers' mean profile on each training input
    /// becomes the target (mixed with the labelled box by `--teacher-weight`). One student can
    /// replace the averaged ensemble that `export-localiser` builds, at a quarter of its cost.
    #[arg(long = "teacher", value_name = "FILE")]
    pub teachers: Vec<PathBuf>,
    /// Share of the teachers' profile in a labelled photo's target; the rest is the labelled
    /// box's coverage.
    #[arg(long, default_value_t = 0.5)]
    pub teacher_weight: f32,
    /// Unlabelled photos (folders or files) trained on with the teachers' profiles as targets
    /// (needs `--teacher`); repeatable.
    #[arg(long, value_name = "PATH")]
    pub pool: Vec<PathBuf>,
    /// Start from this localiser checkpoint's weights (same architecture), fresh optimiser.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Write the trained localiser as ONNX here (e.g. `onnx/localiser.onnx`).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: TrainLocaliserArgs) -> Result<ExitCode> {
    let channels: [usize; 4] = a
        .channels
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("--channels takes four numbers"))?;
    let (pool, empty) = super::read::expand_inputs(&a.pool);
    if let Some(dir) = empty.first() {
        anyhow::bail!("{}: no images there (--pool)", dir.display());
    }
    let cfg = LocTrainConfig {
        data: a.data.clone(),
        out: a.out.clone(),
        epochs: a.epochs,
        batch_size: a.optim.batch_size.max(1),
        lr: a.optim.lr,
        clip_norm: a.optim.clip_norm,
        seed: a.optim.seed,
        val_fraction: a.val_fraction,
        limit: a.limit,
        fold: a.fold,
        model: LocaliserConfig {
            height: a.input.0,
            width: a.input.1,
            channels,
            bins: a.bins.map(|(bx, by)| [bx, by]),
        },
        quiet: a.quiet,
        stop_after: None,
        extra: a.extra.clone(),
        recombine_prob: a.recombine.clamp(0.0, 1.0),
        recombine_max_len: a.recombine_max_len.max(1),
        paste_prob: a.paste.clamp(0.0, 1.0),
        zoom_out_prob: a.zoom_out.clamp(0.0, 1.0),
        zoom_out_max: a.zoom_out_max.clamp(1.0, 16.0),
        zoom_out_independent: a.zoom_out_independent,
        zoom_in_prob: a.zoom_in.clamp(0.0, 1.0),
        stacked_prob: a.stacked,
        empty_prob: a.empty,
        teachers: a.teachers.clone(),
        teacher_weight: a.teacher_weight.clamp(0.0, 1.0),
        pool,
        init: a.init.clone(),
    };
    let history = train_localiser(&cfg)
        .with_context(|| format!("training the localiser on {}", a.data.display()))?;
    if let Some(last) = history.last() {
        eprintln!(
            "localiser: {} epochs, validation IoU {:.3} (>=0.5 on {:.1}% of images)",
            last.epoch,
            last.val_iou,
            100.0 * last.val_iou50
        );
    }
    if let Some(path) = &a.export {
        let ck_path = housenum::train::localiser::checkpoint_path(&a.out);
        let ck = LocCheckpoint::load(&ck_path)
            .with_context(|| format!("loading {}", ck_path.display()))?;
        let bytes = localiser_to_onnx(
            &ck.model,
            &[("housenum.localiser.epochs", history.len().to_string())],
        )
        .encode_to_vec();
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    s.split_once('x')
        .and_then(|(h, w)| Some((h.parse().ok()?, w.parse().ok()?)))
        .ok_or_else(|| format!("{s:?} is not two numbers AxB (e.g. 48x96)"))
}
