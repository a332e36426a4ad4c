//! `housenum bench`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use housenum::engine::crnn::{Crnn, ModelConfig};
use housenum::train::optim::Adam;

/// Measure this engine's training step (forward + CTC + backward + clip + Adam) on random
/// strips, images per second: the Rust side of `benches/compare.sh`'s comparison with PyTorch
/// (`benches/torch_train.py` runs the same step and shapes). Each run is timed twice,
/// alternately: flushing subnormal floats to zero, as training does, and keeping them (the
/// reference); `--checkpoint` starts from a trained model and its Adam moments, where it matters.
/// With `--bf16` the pair is bfloat16 on AMX tiles (`train --bf16`) against `f32`, both flushing.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Strip width in pixels (height is 32).
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Steps per timed run.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Conv channels, comma-separated (the shipped model's by default).
    #[arg(long, value_delimiter = ',', default_value = "48,96,192,192")]
    pub channels: Vec<usize>,
    /// LSTM hidden size per direction.
    #[arg(long, default_value_t = 160)]
    pub hidden: usize,
    /// Zero columns the model adds on each side of a strip (`train --pad`).
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// Residual blocks after the first and second pooling (`train --blocks`; the model pads
    /// what they need beyond `--pad`).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 0])]
    pub blocks: Vec<usize>,
    /// Batch normalisation after each convolution (`train --norm`).
    #[arg(long)]
    pub norm: bool,
    /// Start from this training checkpoint (`last.safetensors`: weights and Adam moments)
    /// instead of fresh weights; its architecture replaces `--channels`/`--hidden`.
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,
    /// Time bfloat16 on AMX tiles (`train --bf16`) against `f32` instead of flushing subnormals
    /// against keeping them.
    #[arg(long)]
    pub bf16: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the subcommand.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if a.channels.len() != 4 || a.width < 26 || a.batch == 0 || a.runs == 0 || a.steps == 0 {
        bail!("need 4 channels, --width >= 26 and positive --batch, --steps, --runs");
    }
    anyhow::ensure!(
        a.blocks.len() == 2,
        "--blocks takes two numbers (after the first and the second pooling), e.g. 1,2"
    );
    if a.bf16 {
        housenum::engine::layers::set_bf16(true)?;
    }
    let (model, adam) = match &a.checkpoint {
        Some(p) => {
            let ck = housenum::train::checkpoint::Checkpoint::load(p)
                .with_context(|| format!("loading checkpoint {}", p.display()))?;
            let step = ck.state.step;
            let adam = Adam {
                m: ck.adam_m,
                v: ck.adam_v,
                t: step,
            };
            (ck.model, adam)
        }
        None => {
            let mut config = ModelConfig {
                channels: [a.channels[0], a.channels[1], a.channels[2], a.channels[3]],
                hidden: a.hidden,
                blocks: [a.blocks[0], a.blocks[1]],
                norm: a.norm,
                ..ModelConfig::default()
            };
            config.pad = a.pad + config.extra_pad();
            let empty = Adam {
                m: Vec::new(),
                v: Vec::new(),
                t: 0,
            };
            (Crnn::new(config, 0), empty)
        }
    };
    let (flushed, kept) = housenum::train::reader::step_throughput(
        &model, &adam, a.batch, a.width, a.steps, a.runs, a.bf16,
    );
    let (f, k) = (median(&flushed), median(&kept));
    // The pair timed: bfloat16 against f32, or flushing subnormals against keeping them.
    let (fast, slow) = if a.bf16 {
        (
            ("images_per_second_bf16", "runs_bf16"),
            ("images_per_second_f32", "runs_f32"),
        )
    } else {
        (
            ("images_per_second", "runs"),
            ("images_per_second_subnormals_kept", "runs_subnormals_kept"),
        )
    };
    if a.json {
        let mut v = serde_json::json!({"ratio": f / k, "batch": a.batch, "width": a.width,
            "threads": rayon::current_num_threads(), "parameters": model.num_params(),
            "checkpoint": a.checkpoint});
        v[fast.0] = f.into();
        v[fast.1] = flushed.into();
        v[slow.0] = k.into();
        v[slow.1] = kept.into();
        println!("{v}");
    } else {
        let (fast, slow) = if a.bf16 {
            (
                format!("bfloat16 {f:.0} images/s"),
                format!("f32 {k:.0} images/s"),
            )
        } else {
            (
                format!("{f:.0} images/s"),
                format!("keeping subnormals: {k:.0} images/s"),
            )
        };
        println!(
            "training step, batch {} × 3×32×{}: {fast} (median of {} runs, {} threads); {slow}; \
             ratio {:.2}",
            a.batch,
            a.width,
            a.runs,
            rayon::current_num_threads(),
            f / k
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}
