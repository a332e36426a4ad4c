//! `housenum calibrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::data::svhn::{is_validation_name, SvhnSet};
use housenum::eval::calibration;
use housenum::eval::evaluate;
use housenum::read::calibration::Calibration;
use housenum::read::metadata::CALIBRATION_KEY;
use housenum::read::reader::EMBEDDED_MODEL;
use housenum::Protocol;

use super::eval::ProtocolArg;

/// Fit the confidence calibration of a model on held-out labelled images and write the model
/// with it in its metadata: afterwards `read` and `eval` (and `onnx/read.py`) report calibrated
/// confidences. Platt scaling of the reading's probability (summed over all CTC alignments,
/// from its log-probability, so near-certain readings keep their order); coverage at any accuracy is
/// unchanged (the map is monotone). Prints the calibration error before and after, the "after"
/// measured out of fold (2-fold cross-fitting), so it is not flattered by the fit. When the fit
/// does not lower that out-of-fold error, the identity is stored instead (raw confidences).
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Folder in the official SVHN layout.
    pub dir: PathBuf,
    /// Model to calibrate (default: the embedded one).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where to write the calibrated model.
    #[arg(long)]
    pub out: PathBuf,
    /// Protocol of the readings to calibrate on (`locate` is what `read` does).
    #[arg(long, value_enum, default_value = "locate")]
    pub protocol: ProtocolArg,
    /// Localiser for `--protocol locate` (default: the embedded one).
    #[arg(long, value_name = "FILE")]
    pub localiser: Option<PathBuf>,
    /// Framings of the box read under `crop` and `locate` (1–7): the box grown 30 %, then
    /// grown less and more, wider, taller and shifted; the reading with the highest summed
    /// log-probability over them answers. 1 reads the single 30 % box (≈ 4× faster).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub views: u8,
    /// Validation share (the images `train` held out, by name hash): calibration uses them only.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run the subcommand.
pub fn run(a: CalibrateArgs) -> Result<ExitCode> {
    let mut reader = super::read::load_reader(a.model.as_deref(), a.localiser.as_deref(), a.views)?;
    reader.set_calibration(Calibration::IDENTITY);
    // Every reading is fitted as read: one withheld as unsure would count as wrong.
    reader.set_no_number_below(None);
    let set = SvhnSet::open(&a.dir).with_context(|| format!("reading {}", a.dir.display()))?;
    let records: Vec<_> = set
        .records
        .into_iter()
        .filter(|r| is_validation_name(&r.name, a.val_fraction))
        .collect();
    anyhow::ensure!(
        !records.is_empty(),
        "{}: no validation images",
        a.dir.display()
    );
    let protocol = Protocol::from(a.protocol);
    let pb = housenum::progress::bar(records.len() as u64, "calibrate", a.quiet);
    let report = evaluate(&reader, &records, protocol, &pb)?;
    pb.finish_and_clear();
    let pairs: Vec<(f64, bool)> = report
        .outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| (o.log_prob, o.edit_distance == 0))
        .collect();
    let fit = Calibration::fit(&pairs);
    let raw: Vec<(f32, bool)> = pairs
        .iter()
        .map(|&(lp, y)| (Calibration::IDENTITY.apply(lp), y))
        .collect();
    let before = calibration::expected_calibration_error(&raw, 10);
    let after = calibration::cross_fitted_error(&pairs, 10);
    // Keep the raw probabilities when the fit does not help out of fold (e.g. under `crop`,
    // where the digits' summed probability is already close to calibrated).
    let kept_raw = after >= before;
    let fit = if kept_raw { Calibration::IDENTITY } else { fit };
    let bytes = match &a.model {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => EMBEDDED_MODEL.to_vec(),
    };
    let out =
        housenum::export::with_metadata(&bytes, CALIBRATION_KEY, &serde_json::to_string(&fit)?)
            .map_err(|e| {
                anyhow::anyhow!("{}: not an ONNX model: {e}", reader.source().display())
            })?;
    let tmp = a.out.with_extension("onnx.partial");
    std::fs::write(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"out": a.out, "images": pairs.len(), "a": fit.a, "b": fit.b,
                "ece_raw": before, "ece_calibrated_out_of_fold": after, "kept_raw": kept_raw,
                "sequence_accuracy": report.sequence_accuracy})
        );
    } else {
        println!(
            "calibrated on {} validation images ({} protocol, {:.2} % read right): a = {:.4}, b = {:.4}{}; expected calibration error {:.3} raw -> {:.3} calibrated (out of fold); wrote {}",
            pairs.len(),
            protocol,
            100.0 * report.sequence_accuracy,
            fit.a,
            fit.b,
            if kept_raw { " (identity: the fit did not lower the out-of-fold error)" } else { "" },
            before,
            after,
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
