//! `housenum label`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use housenum::data::svhn::{self, DigitStructEntry};
use housenum::read::locate::Locator;
use housenum::read::DigitBox;
use housenum::{read, Protocol, Reader};
use rayon::prelude::*;

use super::read::{expand_inputs, ModelArgs};

/// Label unlabelled photos with the reader, in the official layout: `OUT/digitStruct.mat` and a
/// link `OUT/NAME` to every photo read under `locate` with at least `--min-confidence`, its
/// digits' boxes an equal share each of the localiser's box. Every tool then reads OUT like
/// SVHN data (`train-localiser --extra OUT` trains a localiser on those boxes, `eval OUT`
/// checks them). `OUT/labels.tsv` lists every photo's reading, confidence and whether it was
/// kept. Unreadable photos are reported, naming the file, and skipped (exit code 1).
#[derive(Args, Debug)]
pub struct LabelArgs {
    /// Image files or directories of them (file names must be unique: they name the links).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output folder (created; its `digitStruct.mat`, `labels.tsv` and links of the same names
    /// from an earlier run are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Keep readings with at least this (calibrated) confidence.
    #[arg(long, default_value_t = 0.9)]
    pub min_confidence: f32,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A photo's reading: its digits, their confidence, and the localiser's box (pixels).
type Labelled = (Vec<u8>, f32, (f32, f32, f32, f32));

/// Run the subcommand.
pub fn run(a: LabelArgs) -> Result<ExitCode> {
    // The localiser's own box is what `label` writes: no second look, which may answer from
    // another box (SVHN-like photos, the ones labelled, rarely take one).
    let mut reader = a.models.reader()?;
    reader.set_second_look(None);
    let locator = reader.locator().context("loading the localiser")?;
    let (inputs, empty_dirs) = expand_inputs(&a.images);
    for d in &empty_dirs {
        eprintln!("error: {}: no images there", d.display());
    }
    let mut seen: HashMap<String, &Path> = HashMap::new();
    for p in &inputs {
        let name = file_name(p)?;
        if let Some(first) = seen.insert(name.clone(), p) {
            bail!(
                "{} and {} have the same file name {name:?}, which names the link in --out",
                first.display(),
                p.display()
            );
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let tsv_path = a.out.join("labels.tsv");
    let mut tsv = std::io::BufWriter::new(
        std::fs::File::create(&tsv_path)
            .with_context(|| format!("creating {}", tsv_path.display()))?,
    );
    writeln!(tsv, "name\tdigits\tconfidence\tkept")?;
    let pb = housenum::progress::bar(inputs.len() as u64, "label", a.quiet);
    let mut entries: Vec<DigitStructEntry> = Vec::new();
    let mut failed = empty_dirs.len();
    for chunk in inputs.chunks(64) {
        let done = label_chunk(&reader, &locator, chunk);
        for (path, result) in chunk.iter().zip(done) {
            match result {
                Ok((digits, confidence, rect)) => {
                    let name = file_name(path)?;
                    let kept = !digits.is_empty() && confidence >= a.min_confidence;
                    let text = housenum::alphabet::digits_to_string(&digits);
                    writeln!(tsv, "{name}\t{text}\t{confidence:.4}\t{}", u8::from(kept))?;
                    if kept {
                        link(path, &a.out.join(&name))?;
                        let boxes = DigitBox::split_even(rect, digits.len());
                        entries.push((name, digits, boxes));
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        tsv.flush()?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if entries.is_empty() {
        bail!(
            "no reading reached --min-confidence {} ({} photos; every reading is in {})",
            a.min_confidence,
            inputs.len(),
            tsv_path.display()
        );
    }
    let mat = a.out.join("digitStruct.mat");
    svhn::write_digit_struct(&mat, &entries)?;
    println!(
        "kept {} of {} photos (confidence >= {}) in {}; {} unreadable",
        entries.len(),
        inputs.len(),
        a.min_confidence,
        mat.display(),
        failed
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Read `paths` under `locate`: decoding, localising and framing in parallel, then the strips of
/// every photo that decoded in one pass ([`Reader::read_prepared`]) (each photo's reading as `read`
/// gives it). A failure is that photo's result only.
fn label_chunk(
    reader: &Reader,
    locator: &Locator,
    paths: &[PathBuf],
) -> Vec<housenum::Result<Labelled>> {
    let prepared: Vec<housenum::Result<_>> = paths
        .par_iter()
        .map(|path| {
            let img = read::load_image(path)?;
            let rect = locator.locate_with(&img, reader.margin())?;
            Ok((rect, reader.framed_strips(&img, rect)))
        })
        .collect();
    reader
        .read_prepared(prepared, Protocol::Locate)
        .into_iter()
        .map(|r| r.map(|(rect, _, d)| (d.digits, d.confidence, rect)))
        .collect()
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{}: not a file name this layout can hold", p.display()))
}

/// `dst` made a link to `src` (a symbolic link to its absolute path; a copy where there are
/// none), replacing what was there.
fn link(src: &Path, dst: &Path) -> Result<()> {
    let abs = std::fs::canonicalize(src).with_context(|| format!("resolving {}", src.display()))?;
    if dst.symlink_metadata().is_ok() {
        std::fs::remove_file(dst).with_context(|| format!("replacing {}", dst.display()))?;
    }
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(&abs, dst);
    #[cfg(not(unix))]
    let made = std::fs::copy(&abs, dst).map(|_| ());
    made.with_context(|| format!("linking {} to {}", dst.display(), abs.display()))
}
