//! `housenum read`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::read::detect::Detector;
use housenum::read::reader::{Look, LookWith};
use housenum::read::Region;
use housenum::read::{self, explain};
use housenum::{Decoded, Protocol, Reader};
use rayon::prelude::*;

/// Read the house number in each image: one line per image, `IMAGE<TAB>DIGITS<TAB>CONFIDENCE`
/// (`--region` adds the region read; `--json` gives `path`, `digits`, `confidence`, `region`,
/// and `spans`: where each digit was read).
///
/// A photo in which the reader finds no number prints `no number` (`--json`: `"number": false`,
/// empty `digits`), with the confidence that there is none; so does one whose reading is less
/// than `--no-number-below` sure, with that reading's confidence (`--json`: its digits as
/// `withheld`).
///
/// Exit codes: 0 every image was read; 1 at least one image could not be read (each failure is
/// reported on stderr, naming the file, and the others are still read); 2 bad arguments or an
/// unusable model; 3 every image was read but at least one reading was below
/// `--min-confidence` (printed as `?`); 4 every image was read, none abstained, and at least
/// one holds no number.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Image files (PNG, JPEG, BMP, GIF, TIFF, WebP); a directory reads the images in it; `-`
    /// reads one image from standard input.
    #[arg(required_unless_present = "files_from")]
    pub images: Vec<PathBuf>,
    /// Also read the image files listed in FILE, one path a line (`-`: standard input), e.g.
    /// `find photos -name '*.jpg' | housenum read --files-from - --output readings.jsonl`.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,
    /// Append one JSON line per image to FILE instead of printing (as `--json`), each chunk of
    /// readings written as it is done. Started again with the same FILE, a stopped or killed
    /// run resumes: images already in FILE are skipped, so nothing is lost or written twice.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print one JSON object per image: `path`, `digits`, `confidence`, `region` (the framing
    /// read, pixels `x0, y0, x1, y1`) and `spans` (one per digit: `digit`, its `confidence`, and
    /// the image columns `x0`–`x1` and rows `y0`–`y1` of the windows that emitted it, as
    /// `--explain` draws them); or `path` and `error`.
    #[arg(long)]
    pub json: bool,
    /// With `--json` (implied): also give the `first` answer (the localiser's box in the whole
    /// photo: its `region`, `digits`, `confidence`), the photo's `size`, whether the second look
    /// ran (`looked`), and list the detector's `candidates` in each
    /// photo, as the second look reads them (`box` the localiser placed, the detector's `bounds`
    /// and `score`, the `region` of the framing that answered, `digits`, `confidence`), each with
    /// the `verifier`'s score (null for no number), and `answered` on the one that gave the
    /// answer; in the detector's order. The detector then runs on every photo; the answers stay the same.
    #[arg(long)]
    pub candidates: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub look: LookArgs,
    /// Abstain below this confidence: print `?` instead of the digits (exit code 3).
    #[arg(long, value_name = "X")]
    pub min_confidence: Option<f32>,
    /// Save a picture of each reading: the windows that emitted each digit, with the digit and
    /// its confidence above. One image: OUT is the PNG; several: OUT is a folder of
    /// `NAME.explain.png`.
    #[arg(long, value_name = "OUT")]
    pub explain: Option<PathBuf>,
    /// Add a fourth column `X0,Y0,X1,Y1`: the image region the answer was read from (the
    /// localiser's box grown 30 %, the crop `search` chose, or the whole image); `train --pseudo`
    /// then trains on that region.
    #[arg(long)]
    pub region: bool,
    /// `locate`: a small CNN (the localiser) predicts the number's box, which is read grown by
    /// 30 %; `search`: read the whole image and centred crops of it, crops that keep the whole
    /// image's central number voting with their confidences (six readings); `full`: read the
    /// whole image only (one pass, fastest).
    #[arg(long, value_enum, default_value = "locate")]
    pub protocol: ReadProtocol,
    /// Print (and abstain on) the raw probability of the best CTC path instead of the
    /// calibrated confidence. The recipe (data/recipe.sh) filters its pseudo labels on it, to
    /// reproduce the shipped model.
    #[arg(long)]
    pub path_confidence: bool,
}

/// What `read` looks at (there are no digit boxes, so no `crop`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadProtocol {
    /// The box the localiser predicts, grown by 30 %.
    Locate,
    /// The whole image and centred crops; their readings vote.
    Search,
    /// The whole image.
    Full,
}

impl From<ReadProtocol> for Protocol {
    fn from(p: ReadProtocol) -> Protocol {
        match p {
            ReadProtocol::Search => Protocol::Search,
            ReadProtocol::Full => Protocol::Full,
            ReadProtocol::Locate => Protocol::Locate,
        }
    }
}

/// The model, localiser and framings `read`, `eval` and `label` share.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Use this `.onnx` model instead of the one compiled in.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Use this localiser (`train-localiser --export`) for the `locate` protocol instead of
    /// the one compiled in.
    #[arg(long, value_name = "FILE")]
    pub localiser: Option<PathBuf>,
    /// Framings of the box read under `crop` and `locate` (1–7): the box grown 30 %, then
    /// grown less and more, wider, taller and shifted; the reading with the highest summed
    /// log-probability over them answers. 1 reads the single 30 % box (≈ 4× faster).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub views: u8,
    /// Read the first framing of every box, and the other framings only where its reading's
    /// confidence is below P; those read as with all framings. `off` reads every framing.
    #[arg(long, value_name = "P|off", value_parser = parse_early_exit)]
    pub early_exit: Option<EarlyExit>,
    /// Under `locate`, where the localiser's box spans 35 % of the photo's width or more, it
    /// looks again at the photo framed in a margin of its border's mean colour (an eighth of its
    /// width on each side, a twentieth of its height), so that a number filling a photo cropped
    /// close keeps its edge digits (docs/experiments.md, "Photos cropped close to the number":
    /// measured, not the default).
    #[arg(long, value_name = "on|off", default_value = "off", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    pub margin: bool,
    /// Under `locate`, report a reading less than P sure as no number (its digits are kept as
    /// `withheld` in `--json`): 0.12 unless set; `off` gives every reading
    /// (docs/experiments.md, "Photos cropped close to the number").
    #[arg(long, value_name = "P|off", value_parser = parse_early_exit)]
    pub no_number_below: Option<EarlyExit>,
}

fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off; got {s:?}")),
    }
}

/// `--second-look`, for `read` and `eval`.
#[derive(Args, Debug)]
pub struct LookArgs {
    /// Under `locate`, look again for the number when the answer's confidence is below P and
    /// its region covers less than `--look-area` of the photo: 0.98 unless set
    /// (docs/experiments.md, "A learned verifier").
    #[arg(long, value_name = "P|off", value_parser = parse_early_exit)]
    pub second_look: Option<EarlyExit>,
    /// Where the second look looks: `detector` (the default: the detector's candidates over a
    /// pyramid of the photo, each placed by the localiser) or `tiles` (the localiser in 3 × 3
    /// tiles of the photo, the tiles voting).
    #[arg(long, value_name = "tiles|detector", value_parser = parse_look_with)]
    pub look_with: Option<LookWith>,
    /// The second look runs only when the region read covers less than this share of the
    /// photo's area (1: wherever the answer is unsure). 0.04 unless set.
    #[arg(long, value_name = "SHARE")]
    pub look_area: Option<f64>,
    /// Use this detector (`train-detector --export`) instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    pub detector: Option<PathBuf>,
}

impl LookArgs {
    /// Apply to `reader`.
    pub fn apply(&self, reader: &mut Reader) -> anyhow::Result<()> {
        if let Some(t) = self.second_look {
            reader.set_second_look(t.threshold());
        }
        if let Some(with) = self.look_with {
            reader.set_look_with(with);
        }
        if let Some(share) = self.look_area {
            reader.set_look_area(share);
        }
        if let Some(path) = &self.detector {
            let d = Detector::from_path(path)
                .with_context(|| format!("loading the detector {}", path.display()))?;
            reader.set_detector(d);
        }
        Ok(())
    }
}

fn parse_look_with(s: &str) -> std::result::Result<LookWith, String> {
    match s {
        "tiles" => Ok(LookWith::Tiles),
        "detector" => Ok(LookWith::Detector),
        _ => Err(format!("expected tiles or detector; got {s:?}")),
    }
}

/// `--early-exit`, `--second-look`, `--no-number-below`: a confidence threshold, or `off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EarlyExit {
    /// Read every framing.
    Off,
    /// Stop after the first framing at this confidence or above.
    At(f32),
}

impl EarlyExit {
    /// The threshold as the reader's setters take it: `None` for `off`.
    fn threshold(self) -> Option<f32> {
        match self {
            EarlyExit::Off => None,
            EarlyExit::At(p) => Some(p),
        }
    }
}

fn parse_early_exit(s: &str) -> std::result::Result<EarlyExit, String> {
    if s == "off" {
        return Ok(EarlyExit::Off);
    }
    match s.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(EarlyExit::At(p)),
        _ => Err(format!(
            "expected a confidence from 0 to 1, or off; got {s:?}"
        )),
    }
}

impl ModelArgs {
    /// The reader these options choose (see [`load_reader`]).
    pub fn reader(&self) -> Result<Reader> {
        let mut reader = load_reader(self.model.as_deref(), self.localiser.as_deref(), self.views)?;
        if let Some(t) = self.early_exit {
            reader.set_early_exit(t.threshold());
        }
        if self.margin {
            reader.set_margin(Some(housenum::read::locate::MARGIN));
        }
        if let Some(t) = self.no_number_below {
            reader.set_no_number_below(t.threshold());
        }
        Ok(reader)
    }
}

/// The model chosen by `--model` (or the embedded one), with the localiser chosen by
/// `--localiser` (or, on first use, the embedded one), reading `views` framings of a box.
pub fn load_reader(model: Option<&Path>, localiser: Option<&Path>, views: u8) -> Result<Reader> {
    let mut reader = match model {
        Some(p) => {
            Reader::from_path(p).with_context(|| format!("loading model {}", p.display()))?
        }
        None => Reader::embedded().context("loading the embedded model")?,
    };
    if let Some(p) = localiser {
        let l = housenum::read::locate::Locator::from_path(p)
            .with_context(|| format!("loading localiser {}", p.display()))?;
        reader.set_locator(l);
    }
    reader.set_views(views as usize);
    Ok(reader)
}

const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// Expand directories into the image files they hold (sorted); other paths are kept as given.
/// Returns the files and the directories that held no image.
pub fn expand_inputs(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut out = Vec::new();
    let mut empty = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            files.sort();
            if files.is_empty() {
                empty.push(p.clone());
            }
            out.extend(files);
        } else if let Some(matches) = expand_glob(p) {
            if matches.is_empty() {
                empty.push(p.clone());
            }
            out.extend(matches);
        } else {
            out.push(p.clone());
        }
    }
    (out, empty)
}

/// `*` and `?` wildcards in the file-name part of a path that does not exist as given (e.g. a
/// quoted `'photos/*.jpg'`): the matching files, sorted. `None` when there is nothing to expand.
fn expand_glob(p: &Path) -> Option<Vec<PathBuf>> {
    let name = p.file_name()?.to_str()?;
    if p.exists() || !(name.contains('*') || name.contains('?')) {
        return None;
    }
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard_match(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| p.with_file_name(e.file_name()))
        .filter(|f| f.is_file())
        .collect();
    found.sort();
    Some(found)
}

/// Whether `text` matches `pattern`, where `*` matches any run and `?` any one byte.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], text)
                || (!text.is_empty() && wildcard_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &text[1..]),
        (Some(a), Some(b)) if a == b => wildcard_match(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Run the subcommand.
pub fn run(a: ReadArgs) -> Result<ExitCode> {
    let mut reader = a.models.reader()?;
    a.look.apply(&mut reader)?;
    let protocol = Protocol::from(a.protocol);
    let mut images = a.images.clone();
    if let Some(list) = &a.files_from {
        images.extend(read_file_list(list)?);
    }
    let (mut inputs, empty_dirs) = expand_inputs(&images);
    let json = a.json || a.output.is_some() || a.candidates;
    let mut out: Box<dyn Write> = match &a.output {
        Some(file) => {
            let done = resume_output(file)?;
            let before = inputs.len();
            inputs.retain(|p| !done.contains(&p.display().to_string()));
            if before > inputs.len() {
                eprintln!(
                    "{}: {} image(s) already read there, {} to read",
                    file.display(),
                    before - inputs.len(),
                    inputs.len()
                );
            }
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .with_context(|| format!("opening {}", file.display()))?,
            )
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut failed = empty_dirs.len();
    for d in &empty_dirs {
        eprintln!(
            "error: {}: no images there (an empty directory or a pattern that matches nothing)",
            d.display()
        );
    }
    if let (Some(out_path), true) = (&a.explain, inputs.len() > 1) {
        std::fs::create_dir_all(out_path)
            .with_context(|| format!("creating {}", out_path.display()))?;
    }
    let (mut abstained, mut without_number) = (0usize, 0usize);
    let pb = housenum::progress::bar(inputs.len() as u64, "read", false);
    for chunk in inputs.chunks(CHUNK) {
        // A chunk's lines are written at once: a run killed between chunks leaves whole lines.
        let mut lines: Vec<u8> = Vec::new();
        let results = read_chunk(&reader, protocol, chunk, a.candidates);
        for (path, result) in chunk.iter().zip(results) {
            let name = path.display().to_string();
            match result {
                Ok((img, region, mut d, look)) => {
                    if a.path_confidence {
                        d.confidence = d.path_prob;
                    }
                    let abstain = a.min_confidence.is_some_and(|m| d.confidence < m);
                    abstained += usize::from(abstain);
                    let none = !abstain && d.digits.is_empty();
                    without_number += usize::from(none);
                    let digits = if abstain {
                        "?".to_string()
                    } else if none {
                        housenum::read::ctc::NO_NUMBER.to_string()
                    } else {
                        d.text()
                    };
                    let r = [region.x0, region.y0, region.x1, region.y1];
                    if json {
                        let digits = if none { String::new() } else { digits.clone() };
                        let spans: Vec<serde_json::Value> = if abstain {
                            Vec::new()
                        } else {
                            explain::digit_spans(&d, region, reader.geometry())
                                .iter()
                                .map(|s| serde_json::json!({"digit": s.digit, "confidence": s.confidence, "x0": tenth(s.x0), "x1": tenth(s.x1), "y0": tenth(s.y0), "y1": tenth(s.y1)}))
                                .collect()
                        };
                        let mut v = serde_json::json!({"path": name, "digits": digits, "number": !none, "confidence": d.confidence, "region": r, "spans": spans});
                        if !d.withheld.is_empty() {
                            v["withheld"] = serde_json::json!(
                                housenum::alphabet::digits_to_string(&d.withheld)
                            );
                        }
                        if let Some(look) = &look {
                            let (first, candidates) = candidates_json(look);
                            v["size"] = serde_json::json!([img.width(), img.height()]);
                            v["looked"] = serde_json::json!(look.looked);
                            v["first"] = first;
                            v["candidates"] = candidates;
                        }
                        writeln!(lines, "{v}")?;
                    } else if a.region {
                        let [x0, y0, x1, y1] = r;
                        writeln!(
                            lines,
                            "{name}\t{digits}\t{:.3}\t{x0},{y0},{x1},{y1}",
                            d.confidence
                        )?;
                    } else {
                        writeln!(lines, "{name}\t{digits}\t{:.3}", d.confidence)?;
                    }
                    if let Some(target) = &a.explain {
                        let file = if inputs.len() > 1 {
                            let stem = path
                                .file_stem()
                                .map(|s| s.to_string_lossy().into_owned())
                                .unwrap_or_else(|| "stdin".into());
                            target.join(format!("{stem}.explain.png"))
                        } else {
                            target.clone()
                        };
                        let picture = explain::draw(
                            &img,
                            &explain::digit_spans(&d, region, reader.geometry()),
                        );
                        picture
                            .save(&file)
                            .with_context(|| format!("writing {}", file.display()))?;
                    }
                }
                Err(e) => {
                    failed += 1;
                    if json {
                        writeln!(
                            lines,
                            "{}",
                            serde_json::json!({"path": name, "error": e.to_string()})
                        )?;
                    }
                    pb.suspend(|| eprintln!("error: {e}"));
                }
            }
        }
        out.write_all(&lines)?;
        out.flush()?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if failed == 0 && abstained > 0 {
        return Ok(ExitCode::from(3));
    }
    if failed == 0 && without_number > 0 {
        return Ok(ExitCode::from(4));
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The paths listed in `list` (`-`: standard input), one a line, blank lines skipped.
fn read_file_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = if list.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the file list from standard input")?;
        s
    } else {
        std::fs::read_to_string(list)
            .with_context(|| format!("reading the file list {}", list.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect())
}

/// The paths already in a `--output` file, after cutting a last line left incomplete by a kill
/// (its image is read again). A missing file is an empty one.
fn resume_output(file: &Path) -> Result<std::collections::HashSet<String>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut done = std::collections::HashSet::new();
    for (i, line) in String::from_utf8_lossy(&bytes[..whole]).lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: not a line `read --output` writes; give another file",
                file.display(),
                i + 1
            )
        })?;
        let path = v["path"]
            .as_str()
            .with_context(|| format!("{}:{}: a JSON line without a path", file.display(), i + 1))?;
        done.insert(path.to_string());
    }
    // Only a file of our own lines is cut.
    if !bytes[whole..].starts_with(b"{") && whole < bytes.len() {
        anyhow::bail!(
            "{}: its last line is not one `read --output` writes; give another file",
            file.display()
        );
    }
    if whole < bytes.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .with_context(|| format!("opening {}", file.display()))?;
        f.set_len(whole as u64)
            .with_context(|| format!("cutting the incomplete last line of {}", file.display()))?;
    }
    Ok(done)
}

/// Images decoded, framed (the localiser run under `locate`) and prepared in parallel, this many
/// at a time; their strips are then read in one pass and printed in input order.
const CHUNK: usize = 32;

/// What reading one image gives: the decoded image (for `--explain`), the region read, the
/// reading, and with `--candidates` what the detector's look saw.
type ReadResult = housenum::Result<(image::Rgb32FImage, Region, Decoded, Option<Look>)>;

/// Read `paths` (`-` is standard input): decoding and framing in parallel, then every strip of
/// every image that decoded in one pass ([`Reader::read_prepared`]); the same readings as
/// [`Reader::read_image`] one image at a time. A failure is that image's result only.
fn read_chunk(
    reader: &Reader,
    protocol: Protocol,
    paths: &[PathBuf],
    list: bool,
) -> Vec<ReadResult> {
    let prepared: Vec<housenum::Result<_>> = paths
        .par_iter()
        .map(|path| {
            let img = load(path)?;
            let strips = reader.strips(&img, protocol, &[])?;
            Ok((img, strips))
        })
        .collect();
    reader.read_prepared_images_listed(prepared, protocol, list)
}

/// A pixel coordinate for JSON, to a tenth of a pixel (rounded in f64, so it prints short).
fn tenth(v: f32) -> f64 {
    (f64::from(v) * 10.0).round() / 10.0
}

/// `--candidates`' fields: the first answer, and the list of each candidate of `look` as a
/// JSON object, in the detector's order.
fn candidates_json(look: &Look) -> (serde_json::Value, serde_json::Value) {
    let rect = |(l, t, r, b): (f32, f32, f32, f32)| [l, t, r, b].map(tenth);
    let region = |r: Region| [r.x0, r.y0, r.x1, r.y1];
    let candidates = look
        .candidates
        .iter()
        .enumerate()
        .map(|(k, c)| {
            serde_json::json!({
                "box": rect(c.rect),
                "bounds": rect(c.bounds),
                "score": c.score,
                "region": region(c.region),
                "digits": c.reading.text(),
                "confidence": c.reading.confidence,
                "verifier": look.scores[k],
                "answered": look.answered == Some(k),
            })
        })
        .collect();
    let (first_region, first) = &look.first;
    let first = serde_json::json!({
        "region": region(*first_region),
        "digits": first.text(),
        "confidence": first.confidence,
        "verifier": look.first_score,
    });
    (first, candidates)
}

/// Decode an image file, or standard input for `-`.
fn load(path: &Path) -> housenum::Result<image::Rgb32FImage> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| housenum::Error::Io {
                path: PathBuf::from("<stdin>"),
                source: e,
            })?;
        read::decode_image(&bytes, Path::new("<stdin>"))
    } else {
        read::load_image(path)
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcard_table() {
        let cases = [
            ("*.png", "a.png", true),
            ("*.png", "a.jpg", false),
            ("s?.png", "s1.png", true),
            ("s?.png", "s10.png", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        let bad: Vec<_> = cases
            .iter()
            .filter(|(p, t, want)| wildcard_match(p.as_bytes(), t.as_bytes()) != *want)
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }
}
