//! `housenum bench`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use housenum::model::ModelConfig;

/// Measure this engine's training step (forward + CTC + backward + clip + Adam) on random
/// strips, images per second: the Rust side of `benches/compare.sh`'s comparison with PyTorch
/// (`benches/torch_train.py` runs the same step and shapes).
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
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the subcommand.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if a.channels.len() != 4 || a.width < 26 || a.batch == 0 || a.runs == 0 || a.steps == 0 {
        bail!("need 4 channels, --width >= 26 and positive --batch, --steps, --runs");
    }
    let config = ModelConfig {
        channels: [a.channels[0], a.channels[1], a.channels[2], a.channels[3]],
        hidden: a.hidden,
        ..ModelConfig::default()
    };
    let mut rates = housenum::train::step_throughput(&config, a.batch, a.width, a.steps, a.runs);
    let runs = rates.clone();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    if a.json {
        println!(
            "{}",
            serde_json::json!({"images_per_second": median, "runs": runs, "batch": a.batch,
                "width": a.width, "threads": rayon::current_num_threads(),
                "parameters": housenum::model::Crnn::new(config, 0).num_params()})
        );
    } else {
        println!(
            "training step, batch {} × 3×32×{}: {:.0} images/s (median of {} runs, {} threads)",
            a.batch,
            a.width,
            median,
            a.runs,
            rayon::current_num_threads()
        );
    }
    Ok(ExitCode::SUCCESS)
}
