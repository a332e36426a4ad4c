//! `housenum export-localiser`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::engine::localiser::Localiser;
use housenum::export::{localiser_ensemble_mismatch, localiser_ensemble_to_onnx};
use housenum::read::metadata::{LOC_REFINE_KEY, LOC_THRESHOLD_KEY};
use housenum::train::localiser::LocCheckpoint;
use prost::Message;

/// Export one or more localiser checkpoints (`train-localiser`'s `localiser.safetensors`) as
/// one ONNX localiser for `locate`: several are averaged (their column and row profiles, or
/// boxes), and `--mirror` also averages in each one's reading of the image mirrored left to
/// right. The result has the one localiser's input and output, so `read --localiser`, `eval`
/// and other runtimes use it unchanged. Then checks that tract agrees with the checkpoints.
#[derive(Args, Debug)]
pub struct ExportLocaliserArgs {
    /// A checkpoint written by `housenum train-localiser` (e.g.
    /// `runs/localiser/localiser.safetensors`); repeat it to average several.
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// Also read the image mirrored left to right (profile localisers only), doubling the cost.
    #[arg(long)]
    pub mirror: bool,
    /// Mark the localiser to be read coarse to fine: after the whole photo, a second pass on
    /// the context around the first box (grown `3.5x1.4`, the framing SVHN's photos have),
    /// where a number small in the photo appears at the size it learnt. Recorded in the
    /// metadata (`housenum.localiser.refine`), so every runtime does the same.
    #[arg(long)]
    pub refine: bool,
    /// The profiles' band threshold (profile localisers only): a band belongs to the number
    /// where its profile reaches it. Recorded in the metadata (`housenum.localiser.threshold`)
    /// so every runtime decodes alike; without it, ½.
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f32>,
    /// Where to write the `.onnx` file.
    #[arg(long, default_value = "onnx/localiser.onnx")]
    pub out: PathBuf,
}

/// Run the subcommand.
pub fn run(a: ExportLocaliserArgs) -> Result<ExitCode> {
    let cks = a
        .checkpoint
        .iter()
        .map(|p| LocCheckpoint::load(p).with_context(|| format!("loading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let locs: Vec<&Localiser> = cks.iter().map(|c| &c.model).collect();
    if let Some(why) = localiser_ensemble_mismatch(&locs, a.mirror) {
        anyhow::bail!("cannot make one localiser of {:?}: {why}", a.checkpoint);
    }
    if a.threshold.is_some() && locs[0].config.bins.is_none() {
        anyhow::bail!(
            "--threshold applies to profile localisers (trained with --bins); {} has a box head",
            a.checkpoint[0].display()
        );
    }
    let epochs: Vec<String> = cks.iter().map(|c| c.history.len().to_string()).collect();
    let mut meta = vec![("housenum.localiser.epochs", epochs.join(","))];
    if a.refine {
        let (cx, cy) = housenum::read::locate::REFINE_CONTEXT;
        meta.push((LOC_REFINE_KEY, format!("{cx}x{cy}")));
    }
    if let Some(t) = a.threshold {
        meta.push((LOC_THRESHOLD_KEY, t.to_string()));
    }
    let bytes = localiser_ensemble_to_onnx(&locs, a.mirror, &meta).encode_to_vec();
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    // Check: tract on the written file against the training engine on a random image.
    let locator = housenum::read::locate::Locator::from_path(&a.out)?;
    let (h, w) = locator.input_size();
    let mut rng = housenum::rng::Rng::new(7);
    let x: Vec<f32> = (0..3 * h * w).map(|_| rng.normal()).collect();
    let got = locator.run(&x)?;
    let want = housenum::engine::localiser::mean_outputs(&locs, a.mirror, &x);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "wrote {} ({} bytes, {} localiser(s){}); tract vs training engine max |Δ| = {diff:.2e}",
        a.out.display(),
        bytes.len(),
        locs.len(),
        if a.mirror { ", mirrored too" } else { "" }
    );
    anyhow::ensure!(
        got.len() == want.len() && diff < 1e-4,
        "the exported localiser disagrees with the checkpoints (max diff {diff})"
    );
    Ok(ExitCode::SUCCESS)
}

/// `--threshold`: a number strictly between 0 and 1.
fn parse_threshold(s: &str) -> std::result::Result<f32, String> {
    housenum::read::locate::parse_threshold(s)
        .ok_or_else(|| format!("{s:?} is not a number between 0 and 1"))
}
