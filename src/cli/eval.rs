//! `housenum eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use housenum::data::recombine::{compose, compose_stacked, cut_digits};
use housenum::data::svhn::{is_validation_name, Fold, SvhnSet};
use housenum::data::svhn::{DigitStructEntry, Record};
use housenum::eval::{evaluate, evaluate_images, LabelledImage};
use housenum::rng::Rng;
use housenum::Protocol;
use rayon::prelude::*;

use super::read::{LookArgs, ModelArgs};

/// Which images of the folder to evaluate.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Split {
    /// Every image.
    All,
    /// Only the validation split that `housenum train` holds out (by file-name hash).
    Val,
    /// Only the training split.
    Train,
    /// Only the development split: the next `--val-fraction` of names by hash after the
    /// validation split, held out from the localisers (`train-localiser --val-fraction 0.2`)
    /// but not from the reader. Decide on it; report on `val`.
    Dev,
    /// Only the fold `--fold I/K` held out by `train --fold I/K` (k-fold cross-validation).
    Fold,
}

/// Evaluate a model on a folder in the official SVHN layout (`N.png` + `digitStruct.mat`).
///
/// Reports sequence accuracy, digit accuracy, mean edit distance, images/second and the 20 worst
/// misreads. Unreadable images are reported, counted as misreads, and the run goes on.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Folder in the official layout.
    pub dir: PathBuf,
    /// `crop`: the union of the digit boxes grown by 30 % (the standard SVHN protocol), read
    /// under `--views` framings; `full`: the whole image; `search`: the whole image and centred
    /// crops of it, their readings voting; `locate`: the box the localiser predicts, read like
    /// `crop`'s.
    #[arg(long, value_enum, default_value = "crop")]
    pub protocol: ProtocolArg,
    /// Evaluate only this split (`val` is what training never saw).
    #[arg(long, value_enum, default_value = "all")]
    pub split: Split,
    /// Validation share used by `--split` (must match the training run's `--val-fraction`).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// With `--split fold`: which fold (`I/K`, e.g. `2/5`).
    #[arg(long, value_name = "I/K", required_if_eq("split", "fold"))]
    pub fold: Option<Fold>,
    /// Evaluate at most N images (after the split).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub look: LookArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Instead of the images themselves, evaluate new numbers recombined from their real digits,
    /// with lengths drawn uniformly from MIN-MAX (e.g. `6-10`).
    #[arg(long, value_name = "MIN-MAX")]
    pub recombine: Option<String>,
    /// Frame every photo K times looser (K ≥ 1): placed at a random position in a canvas K
    /// times its width and height, filled with digit-free parts of the other photos; the digit
    /// boxes move with it, so `crop` reads the same numbers. With `--recombine`, each made
    /// number is framed so. The framing benchmark: compare
    /// `--protocol locate` (what `read` does) with `crop` at K = 1, 2 and 4.
    #[arg(long, value_name = "K", value_parser = parse_zoom)]
    pub zoom_out: Option<f32>,
    /// Frame every photo like a landscape phone photo: `--zoom-out` K times its width in a 4:3
    /// canvas (taller than K times its height for photos wider than 4:3), scaled to a phone
    /// camera's 4,000 px width, the number at least 20 px high.
    #[arg(long, conflicts_with = "recombine")]
    pub phone: bool,
    /// Replace every photo by one with no number: a canvas of its framed size (`--zoom-out`,
    /// `--phone`) made only of digit-free parts of the other photos, whose right reading is no
    /// number. Sequence accuracy is then the share of such photos that `read` says hold none.
    #[arg(long, conflicts_with = "recombine")]
    pub no_number: bool,
    /// Cut every photo to its number, as people crop a photo to what they want read: the
    /// digits' box grown by MARGIN times its width and height on each side (0: at the digits'
    /// edges), the boxes moved along.
    #[arg(long, value_name = "MARGIN", value_parser = parse_margin,
          conflicts_with_all = ["recombine", "zoom_out", "phone", "no_number"])]
    pub tight: Option<f32>,
    /// Also fill the canvases of `--zoom-out`, `--phone` and `--no-number` with the parts that
    /// `data/digit_parts.tsv` lists as showing digits SVHN did not label (left out by default):
    /// the canvases before that list, on which the earlier measurements in docs/experiments.md
    /// were made.
    #[arg(long)]
    pub keep_digit_parts: bool,
    /// With `--zoom-out`, `--phone`, `--no-number`, `--tight` or `--recombine`: also write each framed
    /// photo or made number to DIR as `NAME` (PNG), with `DIR/labels.tsv` (name, digits, the
    /// digits' box `left,top,right,bottom`) and, unless `--no-number`, `DIR/digitStruct.mat`:
    /// an official-layout folder, so that another tool can be measured, or a model trained, on
    /// exactly these images.
    #[arg(long, value_name = "DIR")]
    pub save_framed: Option<PathBuf>,
    /// With `--recombine`: stack each number's digits vertically, one above the next.
    #[arg(long, requires = "recombine")]
    pub stacked: bool,
    /// How many recombined numbers to make.
    #[arg(long, default_value_t = 500)]
    pub count: usize,
    /// Seed of the recombination and of `--zoom-out`'s canvases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write a self-contained HTML report (metrics, accuracy by length, digit confusion,
    /// calibration, worst misreads with thumbnails) to DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also write every image's outcome to FILE as tab-separated values (`name`, `truth`,
    /// `read`, `confidence`, `right`, `error`), in input order: to compare two models image by
    /// image (which misreads a change fixed, which it broke).
    #[arg(long, value_name = "FILE")]
    pub outcomes: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Protocol as a CLI value.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProtocolArg {
    /// Digit boxes grown by 30 % (and the other `--views` framings).
    Crop,
    /// The whole image.
    Full,
    /// The whole image and centred crops; their readings vote.
    Search,
    /// The box the localiser predicts, framed like `crop`'s (no labelled boxes used).
    Locate,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Crop => Protocol::Crop,
            ProtocolArg::Full => Protocol::Full,
            ProtocolArg::Search => Protocol::Search,
            ProtocolArg::Locate => Protocol::Locate,
        }
    }
}

/// Run the subcommand.
pub fn run(a: EvalArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        a.fold.is_none() || a.split == Split::Fold,
        "--fold needs --split fold"
    );
    anyhow::ensure!(
        a.save_framed.is_none()
            || a.zoom_out.is_some()
            || a.phone
            || a.no_number
            || a.tight.is_some()
            || a.recombine.is_some(),
        "--save-framed needs --zoom-out, --phone, --no-number, --tight or --recombine"
    );
    anyhow::ensure!(
        !a.keep_digit_parts || a.zoom_out.is_some() || a.phone || a.no_number,
        "--keep-digit-parts needs a canvas: --zoom-out, --phone or --no-number"
    );
    let mut reader = a.models.reader()?;
    a.look.apply(&mut reader)?;
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
            Split::Dev => {
                is_validation_name(&r.name, 2.0 * a.val_fraction)
                    && !is_validation_name(&r.name, a.val_fraction)
            }
            Split::Fold => a.fold.is_some_and(|f| f.contains(&r.name, a.val_fraction)),
        })
        .collect();
    if let Some(l) = a.limit {
        records.truncate(l);
    }
    let protocol = Protocol::from(a.protocol);
    let mut in_memory: Vec<LabelledImage> = Vec::new();
    let report = match &a.recombine {
        None if a.zoom_out.is_some() || a.phone || a.no_number || a.tight.is_some() => {
            let pb = housenum::progress::bar(records.len() as u64, "eval", a.quiet);
            let k = a.zoom_out.unwrap_or(1.0);
            if let Some(dir) = &a.save_framed {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let saved = std::sync::Mutex::new(Vec::new());
            let save = a.save_framed.as_deref().map(|d| (d, &saved));
            let framing = Framing {
                k,
                phone: a.phone,
                no_number: a.no_number,
                tight: a.tight,
                keep_digit_parts: a.keep_digit_parts,
                seed: a.seed,
            };
            let r = reframed(&reader, &records, framing, protocol, save, &pb)?;
            if let Some(dir) = &a.save_framed {
                let mut entries = saved.into_inner().expect("labels lock");
                entries.sort_by(|x, y| x.0.cmp(&y.0));
                write_saved(dir, &entries)?;
            }
            pb.finish_and_clear();
            r
        }
        None => {
            let pb = housenum::progress::bar(records.len() as u64, "eval", a.quiet);
            let r = evaluate(&reader, &records, protocol, &pb)?;
            pb.finish_and_clear();
            r
        }
        Some(range) => {
            in_memory = recombined(&records, range, a.count, a.seed, a.stacked)?;
            if let Some(k) = a.zoom_out {
                zoom_out_all(&records, &mut in_memory, k, a.seed, a.keep_digit_parts);
            }
            if let Some(dir) = &a.save_framed {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let entries = in_memory
                    .par_iter()
                    .map(|l| {
                        let name = format!("{}.png", l.name);
                        save_framed(dir, &name, &l.image)?;
                        Ok((name, l.digits.clone(), l.boxes.clone()))
                    })
                    .collect::<housenum::Result<Vec<DigitStructEntry>>>()?;
                write_saved(dir, &entries)?;
            }
            let pb = housenum::progress::bar(in_memory.len() as u64, "eval", a.quiet);
            let r = evaluate_images(&reader, &in_memory, protocol, &pb)?;
            pb.finish_and_clear();
            r
        }
    };
    if let Some(dir) = &a.report {
        let thumb = |o: &housenum::eval::Outcome| -> Option<Vec<u8>> {
            let (img, boxes) = match in_memory.iter().find(|l| l.name == o.name) {
                Some(l) => (l.image.clone(), l.boxes.clone()),
                None => {
                    let r = records.iter().find(|r| r.name == o.name)?;
                    (housenum::read::load_image(&r.path).ok()?, r.boxes.clone())
                }
            };
            let region = housenum::read::protocol_region(protocol, img.dimensions(), &boxes);
            let w = (region.width() * 48 / region.height().max(1)).clamp(1, 400);
            let data = housenum::read::resize_region(&img, region, w as usize, 48);
            let plane = (48 * w) as usize;
            let rgb = image::RgbImage::from_fn(w, 48, |x, y| {
                let i = (y * w + x) as usize;
                let v = |c: usize| (data[c * plane + i] * 255.0).round().clamp(0.0, 255.0) as u8;
                image::Rgb([v(0), v(1), v(2)])
            });
            let mut png = Vec::new();
            rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .ok()?;
            Some(png)
        };
        let title = match &a.recombine {
            Some(r) => format!(
                "{} ({:?} split, numbers of {r} digits recombined)",
                a.dir.display(),
                a.split
            ),
            None => format!(
                "{} ({} split)",
                a.dir.display(),
                format!("{:?}", a.split).to_lowercase()
            ),
        };
        let page = housenum::eval::report::html(&report, &title, &thumb);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("index.html");
        std::fs::write(&file, page).with_context(|| format!("writing {}", file.display()))?;
        eprintln!("report: {}", file.display());
    }
    if let Some(file) = &a.outcomes {
        std::fs::write(file, outcomes_tsv(&report.outcomes))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    for e in &report.errors {
        eprintln!("unreadable: {}", e.error.as_deref().unwrap_or_default());
    }
    let mut out = String::new();
    if a.json {
        out = serde_json::to_string(&report)? + "\n";
    } else {
        use std::fmt::Write as _;
        let pct = |v: f64| format!("{:.2} %", 100.0 * v);
        writeln!(out, "images              {}", report.images)?;
        writeln!(out, "unreadable          {}", report.unreadable)?;
        writeln!(out, "protocol            {}", report.protocol)?;
        writeln!(out, "sequence accuracy   {}", pct(report.sequence_accuracy))?;
        writeln!(out, "digit accuracy      {}", pct(report.digit_accuracy))?;
        writeln!(out, "mean edit distance  {:.4}", report.mean_edit_distance)?;
        writeln!(out, "coverage at 98 %    {}", pct(report.coverage_at_98))?;
        writeln!(out, "images/second       {:.1}", report.images_per_second)?;
        if !report.worst.is_empty() {
            writeln!(out, "worst misreads (name, truth, read, confidence):")?;
            for o in &report.worst {
                writeln!(
                    out,
                    "  {}\t{}\t{}\t{:.3}",
                    o.name, o.truth, o.predicted, o.confidence
                )?;
            }
        }
    }
    std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn parse_margin(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(m) if (0.0..=4.0).contains(&m) => Ok(m),
        _ => Err(format!("expected a margin from 0 to 4, got {s:?}")),
    }
}

fn parse_zoom(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(k) if (1.0..=64.0).contains(&k) => Ok(k),
        _ => Err(format!("expected a factor from 1 to 64, got {s:?}")),
    }
}

/// `records` framed `k` times looser (and scaled to phone size with `phone`), each canvas
/// filled with digit-free patches of up to 16 other photos, or cut to the number (`tight`);
/// made and read a chunk at a time.
fn reframed(
    reader: &housenum::Reader,
    records: &[Record],
    Framing {
        k,
        phone,
        no_number,
        tight,
        seed,
        keep_digit_parts,
    }: Framing,
    protocol: Protocol,
    save: Option<(&std::path::Path, &std::sync::Mutex<Vec<DigitStructEntry>>)>,
    pb: &indicatif::ProgressBar,
) -> Result<housenum::eval::EvalReport> {
    use housenum::data::framing::{background, cropped_close, phone_factors, phone_size, zoom_out};
    let patches = match tight {
        Some(_) => vec![Vec::new(); records.len()],
        None => digit_free_parts(records, keep_digit_parts),
    };
    let truths: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| {
            let digits = if no_number {
                Vec::new()
            } else {
                r.digits.clone()
            };
            (r.name.clone(), digits)
        })
        .collect();
    let make = |i: usize| {
        let r = &records[i];
        let img = housenum::read::load_image(&r.path)?;
        let mut rng = Rng::derive(seed, i as u64);
        let mut pool: Vec<&image::Rgb32FImage> = Vec::new();
        for _ in 0..16.min(records.len().saturating_sub(1)) {
            let j = (i + 1 + rng.below(records.len() - 1)) % records.len();
            pool.extend(patches[j].iter());
        }
        let factors = if phone {
            phone_factors(img.width(), img.height(), k)
        } else {
            (k, k)
        };
        let (img, boxes) = if let Some(margin) = tight {
            cropped_close(&img, &r.boxes, margin)
        } else if no_number {
            let (w, h) = img.dimensions();
            let (cw, ch) = (
                ((w as f32 * factors.0).round() as u32).max(w),
                ((h as f32 * factors.1).round() as u32).max(h),
            );
            (background(cw, ch, &pool, &mut rng), Vec::new())
        } else {
            zoom_out(&img, &r.boxes, factors, &pool, &mut rng)
        };
        let (img, boxes) = if phone {
            phone_size(&img, &boxes)
        } else {
            (img, boxes)
        };
        if let Some((dir, entries)) = save {
            save_framed(dir, &r.name, &img)?;
            let digits = if boxes.is_empty() {
                Vec::new()
            } else {
                r.digits.clone()
            };
            let entry = (r.name.clone(), digits, boxes.clone());
            entries.lock().expect("labels lock").push(entry);
        }
        Ok((img, boxes))
    };
    let chunk = if phone { 8 } else { 64 };
    Ok(housenum::eval::evaluate_generated(
        reader, &truths, make, protocol, chunk, pb,
    )?)
}

/// Writes `img` to `dir/name` as an 8-bit PNG.
fn save_framed(
    dir: &std::path::Path,
    name: &str,
    img: &image::Rgb32FImage,
) -> housenum::Result<()> {
    let file = dir.join(name);
    image::DynamicImage::ImageRgb32F(img.clone())
        .to_rgb8()
        .save(&file)
        .map_err(|e| housenum::Error::Io {
            path: file.clone(),
            source: std::io::Error::other(e),
        })
}

/// The labels of the images [`save_framed`] wrote to `dir`: `labels.tsv` (name, digits, the
/// union of the digit boxes as `left,top,right,bottom`; the name alone for no number) and, when
/// every image holds a number, `digitStruct.mat`, so that the folder is in the official layout
/// (`eval`, `train-detector --extra` read it).
fn write_saved(dir: &std::path::Path, entries: &[DigitStructEntry]) -> Result<()> {
    let text: String = entries
        .iter()
        .map(|(name, digits, boxes)| {
            if boxes.is_empty() {
                format!("{name}\t\t\n")
            } else {
                let (l, t, r, b) = housenum::read::boxes_union(boxes);
                let digits = housenum::alphabet::digits_to_string(digits);
                format!("{name}\t{digits}\t{l},{t},{r},{b}\n")
            }
        })
        .collect();
    let file = dir.join("labels.tsv");
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    if entries.iter().all(|(_, digits, _)| !digits.is_empty()) {
        let mat = dir.join("digitStruct.mat");
        housenum::data::svhn::write_digit_struct(&mat, entries)
            .with_context(|| format!("writing {}", mat.display()))?;
    }
    Ok(())
}

/// How `eval --zoom-out`/`--phone`/`--tight` frames each photo: `k` times looser, phone-sized
/// with `phone`, only the canvas with `no_number`, cut to the number grown by `tight`, the
/// canvases drawn from `seed`.
#[derive(Clone, Copy, Debug)]
struct Framing {
    k: f32,
    phone: bool,
    no_number: bool,
    tight: Option<f32>,
    seed: u64,
    keep_digit_parts: bool,
}

/// Each record's digit-free parts (none for a photo that does not decode): what the framing
/// benchmark's canvases are made of. Those `data/digit_parts.tsv` lists as showing digits are
/// left out unless `keep_digit_parts`.
fn digit_free_parts(records: &[Record], keep_digit_parts: bool) -> Vec<Vec<image::Rgb32FImage>> {
    use housenum::data::{framing::shows_digits, synth::background_parts};
    records
        .par_iter()
        .map(|r| {
            housenum::read::load_image(&r.path)
                .map(|img| {
                    let size = img.dimensions();
                    background_parts(&img, &r.boxes)
                        .into_iter()
                        .filter(|&(side, _)| keep_digit_parts || !shows_digits(&r.name, size, side))
                        .map(|(_, part)| part)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Each of `images` placed in a canvas `k` times its size made of `records`' digit-free
/// parts (`--recombine` with `--zoom-out`), its boxes moved along; image `i` draws from
/// `seed`'s stream `i`.
fn zoom_out_all(
    records: &[Record],
    images: &mut [LabelledImage],
    k: f32,
    seed: u64,
    keep_digit_parts: bool,
) {
    use housenum::data::framing::zoom_out;
    let patches: Vec<image::Rgb32FImage> = digit_free_parts(records, keep_digit_parts)
        .into_iter()
        .flatten()
        .collect();
    images.par_iter_mut().enumerate().for_each(|(i, l)| {
        let mut rng = Rng::derive(seed ^ 0x5a17, i as u64);
        let pool: Vec<&image::Rgb32FImage> = (0..16.min(patches.len()))
            .map(|_| &patches[rng.below(patches.len())])
            .collect();
        let (img, boxes) = zoom_out(&l.image, &l.boxes, (k, k), &pool, &mut rng);
        (l.image, l.boxes) = (img, boxes);
    });
}

/// `count` numbers with lengths in `range` ("MIN-MAX") made of the real digits of `records`.
fn recombined(
    records: &[Record],
    range: &str,
    count: usize,
    seed: u64,
    stacked: bool,
) -> Result<Vec<LabelledImage>> {
    let (lo, hi) = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .filter(|(a, b)| *a >= 1 && a <= b)
        .with_context(|| format!("--recombine {range}: expected MIN-MAX, e.g. 6-10"))?;
    let pool: Vec<_> = records
        .par_iter()
        .filter_map(|r| {
            let img = housenum::read::load_image(&r.path).ok()?;
            Some(cut_digits(&img, &r.boxes, &r.digits))
        })
        .flatten()
        .collect();
    anyhow::ensure!(!pool.is_empty(), "no digits to recombine");
    Ok((0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::derive(seed, i as u64);
            let len = lo + rng.below(hi - lo + 1);
            let (image, boxes, digits) = if stacked {
                compose_stacked(&pool, len, &mut rng)
            } else {
                compose(&pool, len, &mut rng)
            };
            LabelledImage {
                name: format!("recombined-{i}"),
                image,
                boxes,
                digits,
            }
        })
        .collect())
}

/// Every outcome as tab-separated values with a header line (`--outcomes`); tabs and newlines
/// inside an error message become spaces.
fn outcomes_tsv(outcomes: &[housenum::eval::Outcome]) -> String {
    let mut out = String::from("name\ttruth\tread\tconfidence\tright\terror\n");
    for o in outcomes {
        let error = o
            .error
            .as_deref()
            .unwrap_or_default()
            .replace(['\t', '\n', '\r'], " ");
        let right = u8::from(o.is_right());
        out.push_str(&format!(
            "{}\t{}\t{}\t{:.6}\t{right}\t{error}\n",
            o.name, o.truth, o.predicted, o.confidence
        ));
    }
    out
}
