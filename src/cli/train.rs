//! `housenum train`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::parse_share;
use anyhow::{Context, Result};
use clap::Args;
use housenum::data::svhn::Fold;
use housenum::engine::crnn::ModelConfig;
use housenum::train::reader::{train, TrainConfig};

/// Train (or resume) a model on a folder in the official SVHN layout.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folder with `N.png` images and `digitStruct.mat`.
    #[arg(long, default_value = "../shared/svhn/train")]
    pub data: PathBuf,
    /// Output folder for `last.safetensors` (resumed from if present), `history.json`, `curve.png`.
    #[arg(long, default_value = "runs/default")]
    pub out: PathBuf,
    /// Epochs over the training split.
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Share of images held out for validation (chosen by a hash of the file name).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Use at most this many training images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// K-fold cross-validation: train on the other folds of the photos outside the validation
    /// split and hold fold I out (`I/K`, e.g. `2/5`); `eval --split fold --fold I/K` measures it.
    #[arg(long, value_name = "I/K")]
    pub fold: Option<Fold>,
    /// Maximum training strip width in pixels (bounded sequence lengths).
    #[arg(long, default_value_t = 160)]
    pub max_width: usize,
    /// Share of training crops that are loose (up to 3.2× the number's width and 2.4× its
    /// height, like the whole photos `read` sees); the others are tight.
    #[arg(long, default_value_t = 0.25, value_parser = parse_share)]
    pub loose: f32,
    /// Share of training strips made from a copy shrunk 1.5–3× first (blur and lost detail, as
    /// in SVHN's low-resolution photos).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub lowres: f32,
    /// Share of training strips with one small cut-out patch (part of a digit at most).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub cutout: f32,
    /// Share of training strips of labelled numbers turned by up to `--max-tilt` degrees and
    /// cropped to the turned number's bounding box (slanted numbers made from upright ones).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub tilt: f32,
    /// Largest turn of `--tilt`, degrees.
    #[arg(long, default_value_t = 30.0)]
    pub max_tilt: f32,
    /// Output channels of the four convolutions of the window CNN.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64, 128, 128])]
    pub channels: Vec<usize>,
    /// LSTM hidden size per direction.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Zero columns the model adds on each side of a strip, so that short strips get enough
    /// windows (time steps) for CTC; kept in the exported model.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// Residual blocks after the first and after the second pooling, e.g. `1,2` (each two 3 × 3
    /// convolutions, valid in width, with a gate that starts at 0). They widen the window by 8
    /// and 16 pixels a block, and the model pads that much more (4 and 8 columns a side a block)
    /// beyond `--pad`, so a strip gives the same steps. With `--init`, blocks are added to the
    /// initial model keeping what it computes.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 0])]
    pub blocks: Vec<usize>,
    /// Batch normalisation after each convolution, before its ReLU: statistics of each group of
    /// 4 strips in training, running averages at inference, multiplied into the convolutions at
    /// export (the ONNX graph is unchanged). From scratch, or `--init` a model trained with it.
    /// Measured (docs/experiments.md): +2.2 points on the real photos alone, nothing measurable
    /// with the pool's labels beside them.
    #[arg(long)]
    pub norm: bool,
    /// Run the convolutions and the LSTM's input projection (and their gradients) in bfloat16
    /// with `f32` accumulation on AMX tiles (Intel Xeon, Sapphire Rapids or later, on Linux;
    /// elsewhere an error): a step 1.24–1.42× faster (`housenum bench --bf16`), the reader as
    /// accurate (docs/experiments.md). Weights, optimiser and every other operation stay `f32`;
    /// export and reading are unchanged. The recipe trains in `f32`.
    #[arg(long)]
    pub bf16: bool,
    /// Horizontal stretch of the strips (resized to `round(w · 32 · stretch / h)` columns),
    /// so that each digit spans more windows; kept in the exported model's metadata.
    #[arg(long, default_value_t = 1.0, value_parser = parse_stretch)]
    pub stretch: f32,
    /// Dropout rate on the window embeddings and on the LSTM outputs (training only).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Also train on pseudo-labelled images: a `housenum read` listing
    /// (`IMAGE<TAB>DIGITS<TAB>CONFIDENCE`), e.g. of ../shared/svhn/unlabeled.
    #[arg(long)]
    pub pseudo: Option<PathBuf>,
    /// Keep only pseudo labels at least this confident (choose it on validation).
    #[arg(long, default_value_t = 0.9)]
    pub pseudo_min_confidence: f32,
    /// Also train online on unlabelled images: a `housenum read --region` listing, e.g. of
    /// ../shared/svhn/unlabeled (its images and regions are used; its readings are not). A
    /// moving average of the model (the teacher, saved as `teacher.safetensors`) reads each
    /// region unaugmented when it comes up; the model learns the sure readings from augmented
    /// views, so the labels change as the model does. Measured on SVHN it read worse than one
    /// offline round of `--pseudo` from the same model (docs/experiments.md).
    #[arg(long)]
    pub online: Option<PathBuf>,
    /// With `--online`: the teacher's confidence needed to train on its reading.
    #[arg(long, default_value_t = 0.9, value_parser = parse_share)]
    pub online_threshold: f32,
    /// With `--online`: the teacher's decay per step (ema = d · ema + (1 − d) · model).
    #[arg(long, default_value_t = 0.999, value_parser = parse_share)]
    pub ema_decay: f32,
    /// Also train on unlabelled images taught a fixed teacher's posteriors (distillation): a
    /// `housenum read --region` listing, e.g. of ../shared/svhn/unlabeled (its images and
    /// regions are used; its readings are not). Each region, augmented as any sample, is trained
    /// towards `--teacher`'s log-probabilities of that very strip, step by step (KL divergence),
    /// whatever the teacher reads in it.
    #[arg(long, requires = "teacher", conflicts_with = "online")]
    pub distil: Option<PathBuf>,
    /// With `--distil`: the teacher, a checkpoint or a reader exported to ONNX giving the same
    /// steps as the model for every strip (the same `--pad` and `--blocks`).
    #[arg(long, requires = "distil")]
    pub teacher: Option<PathBuf>,
    /// Share of training samples replaced by new numbers recombined from real training digits.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub recombine: f32,
    /// Longest recombined number (training keeps sequences bounded; longer ones are read anyway).
    #[arg(long, default_value_t = 6)]
    pub recombine_max_len: usize,
    /// Share of samples replaced by synthetic numbers (fonts on real backgrounds, drawn on the
    /// fly; see `housenum synth`).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub synth: f32,
    /// Longest synthetic number used in training.
    #[arg(long, default_value_t = 8)]
    pub synth_max_len: usize,
    /// Share of the synthetic numbers set as type is set: digits on one baseline, each at its
    /// font's advance (a `1` keeps the space its font gives it), as on printed plates; the
    /// rest keep SVHN's measured gaps between digits.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share, requires = "synth")]
    pub synth_typeset: f32,
    /// Share of samples replaced by a digit-free part of a training photo (the parts `synth`
    /// paints on), cut at a random aspect, to be read as no digits: clutter the localiser may
    /// box in a photo without a number.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub empty: f32,
    /// Start from the weights of this checkpoint (or `export --weights` file, or a reader
    /// exported to ONNX such as `onnx/housenum.onnx`, whose weights are exact) instead of random
    /// ones (fine-tuning); ignored when `--out` already holds a checkpoint to resume.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// With `--init`: grow the initial model to `--channels` / `--hidden` (each at least the
    /// file's), keeping what it computes: new units start random with zero weights out of
    /// them, so training starts from the old model's accuracy with more capacity.
    #[arg(long, requires = "init")]
    pub widen: bool,
    /// With `--init`: start again the conv channels that never fire (dead ReLUs) on the crops
    /// of 500 training images: fresh weights into them, zero weights out of them (same
    /// function), so training can use them again.
    #[arg(long, requires = "init")]
    pub revive: bool,
    /// Print a JSON summary (epochs, seconds, the last epoch's numbers, checkpoint) at the end.
    #[arg(long)]
    pub json: bool,
    /// Hide progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The optimiser's options shared by `train`, `train-localiser` and `train-detector`.
#[derive(Args, Debug)]
pub struct OptimArgs {
    /// Samples (images or crops) per optimiser step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate of Adam (warm-up, then cosine decay to 5 %).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 5.0)]
    pub clip_norm: f32,
    /// Seed for initialisation, augmentation and data order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Run the subcommand.
pub fn run(a: TrainArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        a.channels.len() == 4,
        "--channels takes four numbers, e.g. 32,64,128,128"
    );
    anyhow::ensure!(
        a.blocks.len() == 2,
        "--blocks takes two numbers (after the first and the second pooling), e.g. 1,2"
    );
    if a.bf16 {
        housenum::engine::layers::set_bf16(true)?;
    }
    let mut cfg = TrainConfig {
        data: a.data,
        out: a.out,
        epochs: a.epochs,
        batch_size: a.optim.batch_size,
        lr: a.optim.lr,
        clip_norm: a.optim.clip_norm,
        seed: a.optim.seed,
        val_fraction: a.val_fraction,
        limit: a.limit,
        fold: a.fold,
        model: {
            let mut m = ModelConfig {
                hidden: a.hidden,
                channels: [a.channels[0], a.channels[1], a.channels[2], a.channels[3]],
                pad: a.pad,
                stretch: a.stretch,
                blocks: [a.blocks[0], a.blocks[1]],
                norm: a.norm,
                ..ModelConfig::default()
            };
            m.pad += m.extra_pad();
            m
        },
        dropout: a.dropout,
        pseudo: a.pseudo,
        pseudo_min_confidence: a.pseudo_min_confidence,
        online: a.online,
        online_threshold: a.online_threshold,
        ema_decay: a.ema_decay,
        distil: a.distil,
        teacher: a.teacher,
        recombine_prob: a.recombine,
        recombine_max_len: a.recombine_max_len,
        synth_prob: a.synth,
        synth_max_len: a.synth_max_len,
        synth_typeset: a.synth_typeset,
        empty_prob: a.empty,
        init: a.init,
        widen: a.widen,
        revive: a.revive,
        quiet: a.quiet,
        ..TrainConfig::default()
    };
    cfg.augment.max_width = a.max_width;
    cfg.augment.loose_prob = a.loose;
    cfg.augment.lowres_prob = a.lowres;
    cfg.augment.cutout_prob = a.cutout;
    cfg.augment.tilt_prob = a.tilt;
    cfg.augment.max_tilt_deg = a.max_tilt;
    let state = train(&cfg).with_context(|| format!("training into {}", cfg.out.display()))?;
    eprintln!("done: {} epochs, {:.0} s", state.epoch, state.seconds);
    if a.json {
        let v = serde_json::json!({
            "epochs": state.epoch,
            "steps": state.step,
            "seconds": state.seconds,
            "last": state.history.last(),
            "checkpoint": housenum::train::reader::last_checkpoint(&cfg.out),
        });
        println!("{v}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--stretch`: a factor in [`housenum::read::STRETCH_RANGE`] (what the reader accepts
/// back from an exported model).
fn parse_stretch(s: &str) -> Result<f32, String> {
    let range = housenum::read::STRETCH_RANGE;
    match s.parse::<f32>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number between {} and {}",
            range.start(),
            range.end()
        )),
    }
}
