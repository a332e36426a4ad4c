//! `housenum train-detector`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::engine::detector::DetectorConfig;
use housenum::export::detector_to_onnx;
use housenum::train::detector::{checkpoint_path, train_detector, DetCheckpoint, DetTrainConfig};
use prost::Message;

/// Train (or resume) the number detector: a fully convolutional network that marks the 8 × 8
/// cells of a photo that lie on a house number, at any position and, through a pyramid of
/// scales, any size. Trains on the digit boxes of a folder in the official SVHN layout and
/// writes the ONNX model with `--export`.
#[derive(Args, Debug)]
pub struct TrainDetectorArgs {
    /// Folder with `N.png` images and `digitStruct.mat`.
    #[arg(long, default_value = "../shared/svhn/train")]
    pub data: PathBuf,
    /// Output folder for `detector.safetensors` (resumed from if present) and `history.json`.
    #[arg(long, default_value = "runs/detector")]
    pub out: PathBuf,
    /// Epochs; each draws one crop of every training photo.
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[command(flatten)]
    pub optim: super::train::OptimArgs,
    /// Share of photos held out by file-name hash (0.2: the validation and development splits).
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Use at most this many training photos.
    #[arg(long)]
    pub limit: Option<usize>,
    /// K-fold cross-validation: train on the other folds of the photos outside the validation
    /// split and hold fold I out (`I/K`, e.g. `2/5`); `eval --split fold --fold I/K --detector`
    /// measures it (`data/kfold.sh detector`).
    #[arg(long, value_name = "I/K")]
    pub fold: Option<housenum::data::svhn::Fold>,
    /// Also train on every image of this official-layout folder (e.g. `housenum synth
    /// --backgrounds` output: printed numbers in real surroundings); repeatable.
    #[arg(long, value_name = "DIR")]
    pub extra: Vec<PathBuf>,
    /// Output channels of the five convolutions.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 16, 32, 64, 64])]
    pub channels: Vec<usize>,
    /// Cells along each side of a training crop (8 px each).
    #[arg(long, default_value_t = 16)]
    pub cells: usize,
    /// Least and greatest number height in a crop, pixels.
    #[arg(long, value_delimiter = ',', default_values_t = [8.0, 48.0])]
    pub heights: Vec<f32>,
    /// Share of crops placed anywhere in the scene instead of around the number.
    #[arg(long, default_value_t = 0.25, value_parser = crate::cli::parse_share)]
    pub anywhere: f32,
    /// Stop after this many epochs in all (the schedule still spans `--epochs`; run again to
    /// resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Write the trained detector as ONNX here (e.g. `onnx/detector.onnx`).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: TrainDetectorArgs) -> Result<ExitCode> {
    let channels: [usize; 5] = a
        .channels
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("--channels takes five numbers"))?;
    let heights: [f32; 2] = a
        .heights
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("--heights takes two numbers"))?;
    let cfg = DetTrainConfig {
        data: a.data.clone(),
        out: a.out.clone(),
        epochs: a.epochs,
        batch_size: a.optim.batch_size.max(1),
        lr: a.optim.lr,
        clip_norm: a.optim.clip_norm,
        seed: a.optim.seed,
        val_fraction: a.val_fraction,
        limit: a.limit,
        model: DetectorConfig { channels },
        cells: a.cells,
        heights,
        anywhere: a.anywhere.clamp(0.0, 1.0),
        quiet: a.quiet,
        stop_after: a.stop_after,
        fold: a.fold,
        extra: a.extra.clone(),
    };
    let history = train_detector(&cfg)
        .with_context(|| format!("training the detector on {}", a.data.display()))?;
    if let Some(last) = history.last() {
        eprintln!(
            "detector: {} epochs, validation loss {:.4}, hit {:.1}%",
            last.epoch,
            last.val_loss,
            100.0 * last.val_hit
        );
    }
    if let Some(path) = &a.export {
        let ck_path = checkpoint_path(&a.out);
        let ck = DetCheckpoint::load(&ck_path)
            .with_context(|| format!("loading {}", ck_path.display()))?;
        let bytes = detector_to_onnx(
            &ck.model,
            &[("housenum.detector.epochs", history.len().to_string())],
        )
        .encode_to_vec();
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
