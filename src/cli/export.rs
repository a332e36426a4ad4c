//! `housenum export`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::checkpoint::Checkpoint;

/// Export a training checkpoint to ONNX (input `strip [N, 3, 32, W]`, output
/// `log_probs [T, N, 11]`), then check that tract loads it and agrees with the checkpoint.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint written by `housenum train` (e.g. `runs/default/last.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where to write the `.onnx` file.
    #[arg(long, default_value = "onnx/housenum.onnx")]
    pub out: PathBuf,
    /// Also write the weights alone (safetensors, PyTorch parameter names, no optimiser state),
    /// for the training-side parity tests.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Print a JSON summary (file, bytes, parameters, tract-vs-engine difference).
    #[arg(long)]
    pub json: bool,
}

/// Run the subcommand.
pub fn run(a: ExportArgs) -> Result<ExitCode> {
    let ck = Checkpoint::load(&a.checkpoint)
        .with_context(|| format!("loading {}", a.checkpoint.display()))?;
    let meta = [
        ("housenum.config", serde_json::to_string(&ck.model.config)?),
        ("housenum.epochs", ck.state.epoch.to_string()),
        ("housenum.preprocessing", "RGB/255; crop or full image; antialiased triangle resize to height 32 and width round(w*32*stretch/h) (stretch: housenum.stretch); (x-mean)/max(std,0.01) over the strip; zero-pad to width >= 32 (centred)".to_string()),
        ("housenum.decoding", "greedy CTC over log_probs[T, N, 11]; class 0 = blank, class d+1 = digit d".to_string()),
    ];
    let bytes = housenum::export::to_onnx_bytes(&ck.model, &meta);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(wpath) = &a.weights {
        let weights_only = Checkpoint {
            model: ck.model.clone(),
            adam_m: Vec::new(),
            adam_v: Vec::new(),
            state: ck.state.clone(),
        };
        weights_only
            .save(wpath)
            .with_context(|| format!("writing {}", wpath.display()))?;
    }
    // Check: tract on the exported file vs the training-side forward pass on a random strip.
    let reader = housenum::Reader::from_path(&a.out)?;
    let mut rng = housenum::rng::Rng::new(7);
    let w = 97;
    let x: Vec<f32> = (0..3 * 32 * w).map(|_| rng.normal()).collect();
    let (lp, _) = reader.log_probs(&x, 1, w)?;
    let want = housenum::model::log_probs(&ck.model, &x, 1, w);
    let diff = lp
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "wrote {} ({} bytes, {} parameters); tract vs training engine max |Δ log p| = {diff:.2e}",
        a.out.display(),
        bytes.len(),
        ck.model.num_params()
    );
    anyhow::ensure!(
        diff < 1e-3,
        "exported model disagrees with the checkpoint (max diff {diff})"
    );
    Ok(ExitCode::SUCCESS)
}
