//! `housenum eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use housenum::eval::evaluate;
use housenum::svhn::{is_validation_name, SvhnSet};
use housenum::Protocol;

/// Which images of the folder to evaluate.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Split {
    /// Every image.
    All,
    /// Only the validation split that `housenum train` holds out (by file-name hash).
    Val,
    /// Only the training split.
    Train,
}

/// Evaluate a model on a folder in the official SVHN layout (`N.png` + `digitStruct.mat`).
///
/// Reports sequence accuracy, digit accuracy, mean edit distance, images/second and the 20 worst
/// misreads. Unreadable images are reported, counted as misreads, and the run goes on.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Folder in the official layout.
    pub dir: PathBuf,
    /// `crop`: the union of the digit boxes grown by 30 % (the standard SVHN protocol);
    /// `full`: the whole image, as `housenum read` sees it.
    #[arg(long, value_enum, default_value = "crop")]
    pub protocol: ProtocolArg,
    /// Evaluate only this split (`val` is what training never saw).
    #[arg(long, value_enum, default_value = "all")]
    pub split: Split,
    /// Validation share used by `--split` (must match the training run's `--val-fraction`).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Evaluate at most N images (after the split).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Use this `.onnx` model instead of the one compiled in.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Protocol as a CLI value.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProtocolArg {
    /// Digit boxes grown by 30 %.
    Crop,
    /// The whole image.
    Full,
}

/// Run the subcommand.
pub fn run(a: EvalArgs) -> Result<ExitCode> {
    let reader = super::read::load_reader(a.model.as_deref())?;
    let set = SvhnSet::open(&a.dir).with_context(|| format!("reading {}", a.dir.display()))?;
    if let Some(m) = set.missing_summary() {
        eprintln!("warning: {m}");
    }
    let mut records: Vec<_> = set
        .records
        .into_iter()
        .filter(|r| match a.split {
            Split::All => true,
            Split::Val => is_validation_name(&r.name, a.val_fraction),
            Split::Train => !is_validation_name(&r.name, a.val_fraction),
        })
        .collect();
    if let Some(l) = a.limit {
        records.truncate(l);
    }
    let protocol = match a.protocol {
        ProtocolArg::Crop => Protocol::Crop,
        ProtocolArg::Full => Protocol::Full,
    };
    let pb = housenum::progress::bar(records.len() as u64, "eval", a.quiet);
    let report = evaluate(&reader, &records, protocol, &pb)?;
    pb.finish_and_clear();
    for e in &report.errors {
        eprintln!("unreadable: {}", e.error.as_deref().unwrap_or_default());
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("images              {}", report.images);
        println!("unreadable          {}", report.unreadable);
        println!("protocol            {}", report.protocol);
        println!(
            "sequence accuracy   {:.2} %",
            100.0 * report.sequence_accuracy
        );
        println!("digit accuracy      {:.2} %", 100.0 * report.digit_accuracy);
        println!("mean edit distance  {:.4}", report.mean_edit_distance);
        println!("coverage at 98 %    {:.2} %", 100.0 * report.coverage_at_98);
        println!("images/second       {:.1}", report.images_per_second);
        if !report.worst.is_empty() {
            println!("worst misreads (name, truth, read, confidence):");
            for o in &report.worst {
                println!(
                    "  {}\t{}\t{}\t{:.3}",
                    o.name, o.truth, o.predicted, o.confidence
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
