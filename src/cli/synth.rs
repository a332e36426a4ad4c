//! `housenum synth`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use housenum::data::svhn::{self, DigitStructEntry, SvhnSet};
use housenum::data::synth::{self, FontSet, Synth, SynthConfig};
use housenum::rng::Rng;
use rayon::prelude::*;

/// Generate synthetic house numbers in the official SVHN layout (`1.png`, `2.png`, … and
/// `digitStruct.mat`; also `labels.tsv`), so `eval`, `train` and any SVHN tool read them like
/// real data.
/// Deterministic: image i depends only on (--seed, i).
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How many images.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fewest digits per number.
    #[arg(long, default_value_t = 1)]
    pub min_len: usize,
    /// Most digits per number.
    #[arg(long, default_value_t = 10)]
    pub max_len: usize,
    /// Largest digit height in pixels (real SVHN digits: median 29, 95th percentile 68).
    #[arg(long, default_value_t = 64.0)]
    pub max_digit_height: f32,
    /// Official-layout folder whose photos give real backgrounds (the digit-free parts around
    /// the labelled boxes); its validation split (by name hash) is never used.
    #[arg(long)]
    pub backgrounds: Option<PathBuf>,
    /// Validation fraction of the backgrounds folder to leave out (same hash as `train`).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Take backgrounds only from the photos a `--fold I/K` run trains on (the other folds), so
    /// that synthetic numbers added to a fold's training never show its held-out photos.
    #[arg(long, requires = "backgrounds")]
    pub fold: Option<svhn::Fold>,
    /// Instead of writing files, generate `--count` training strips (32 px high) in memory and
    /// report images per second.
    #[arg(long)]
    pub bench: bool,
    /// Which fonts: all, those training draws, or only the held-out families (styles the
    /// reader never trained on; `housenum::data::synth::HELD_OUT_FAMILIES`).
    #[arg(long, value_enum, default_value_t = Fonts::All)]
    pub fonts: Fonts,
    /// Share of numbers set as type is set: digits on one baseline, each at its font's advance
    /// (a `1` keeps the space its font gives it), as on printed plates; the rest keep SVHN's
    /// measured gaps between digits.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::parse_share)]
    pub typeset: f32,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--fonts`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fonts {
    /// Every embedded font.
    All,
    /// The fonts `train --synth` draws (all but the held-out families).
    Training,
    /// Only the held-out families.
    HeldOut,
}

/// Run the subcommand.
pub fn run(a: SynthArgs) -> Result<ExitCode> {
    if a.min_len == 0 || a.max_len < a.min_len {
        bail!("--min-len must be >= 1 and <= --max-len");
    }
    let (backgrounds, background_photos) = match &a.backgrounds {
        Some(dir) => {
            let set = SvhnSet::open(dir).with_context(|| format!("reading {}", dir.display()))?;
            let (train, _) = svhn::split_held_out(&set.records, a.val_fraction, a.fold);
            let b = synth::load_backgrounds(&train);
            eprintln!(
                "backgrounds: {} patches from {} training-split photos of {}",
                b.len(),
                train.len(),
                dir.display()
            );
            (b, train.len())
        }
        None => (Vec::new(), 0),
    };
    let config = SynthConfig {
        min_len: a.min_len,
        max_len: a.max_len,
        max_digit_height: if a.bench { 30.0 } else { a.max_digit_height },
        max_margin: if a.bench { 1.6 } else { 6.0 },
        fonts: match a.fonts {
            Fonts::All => FontSet::All,
            Fonts::Training => FontSet::Training,
            Fonts::HeldOut => FontSet::HeldOut,
        },
        typeset_prob: a.typeset,
        ..SynthConfig::default()
    };
    let gen = Synth::new(config, backgrounds);
    let started = Instant::now();
    let pb = housenum::progress::bar(a.count, "synth", a.quiet);
    let chunk = 512u64;
    if a.bench {
        let mut widths = 0usize;
        for c in (0..a.count).step_by(chunk as usize) {
            let n = chunk.min(a.count - c);
            widths += (c..c + n)
                .into_par_iter()
                .map(|i| gen.strip(1.0, &mut Rng::derive(a.seed, i)).0.width)
                .sum::<usize>();
            pb.inc(n);
        }
        pb.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        let rate = a.count as f64 / secs;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"strips": a.count, "seconds": secs, "images_per_second": rate,
                    "mean_width": widths as f64 / a.count.max(1) as f64, "threads": rayon::current_num_threads()})
            );
        } else {
            println!(
                "{} strips in {:.2} s: {:.0} images/s on {} threads",
                a.count,
                secs,
                rate,
                rayon::current_num_threads()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(out) = &a.out else {
        bail!("--out DIR is required (or --bench)");
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut entries: Vec<DigitStructEntry> = Vec::with_capacity(a.count as usize);
    for c in (0..a.count).step_by(chunk as usize) {
        let n = chunk.min(a.count - c);
        let done: Vec<Result<DigitStructEntry>> = (c..c + n)
            .into_par_iter()
            .map(|i| {
                let s = gen.render_nth(a.seed, i);
                let name = format!("{}.png", i + 1);
                let path = out.join(&name);
                image::DynamicImage::ImageRgb32F(s.image)
                    .to_rgb8()
                    .save(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok((name, s.digits, s.boxes))
            })
            .collect();
        for e in done {
            entries.push(e?);
        }
        pb.inc(n);
    }
    pb.finish_and_clear();
    let mat = out.join("digitStruct.mat");
    svhn::write_digit_struct(&mat, &entries)?;
    // The same labels as plain text, for eyes and scripts.
    let tsv = out.join("labels.tsv");
    let text: String = entries
        .iter()
        .map(|(name, digits, _)| {
            format!("{name}\t{}\n", housenum::alphabet::digits_to_string(digits))
        })
        .collect();
    std::fs::write(&tsv, text).with_context(|| format!("writing {}", tsv.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"out": out, "images": a.count, "seed": a.seed, "seconds": secs,
                "digit_struct": mat, "fonts": gen.num_fonts(), "background_photos": background_photos})
        );
    } else {
        println!(
            "wrote {} images and {} in {:.1} s ({} fonts, seed {})",
            a.count,
            mat.display(),
            secs,
            gen.num_fonts(),
            a.seed
        );
    }
    Ok(ExitCode::SUCCESS)
}
