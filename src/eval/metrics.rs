//! Batch evaluation over a folder in the official SVHN layout: sequence accuracy, digit accuracy,
//! edit distance, speed, and the worst misreads. Unreadable images are reported, counted as
//! misreads, and the run goes on.

use std::time::Instant;

use rayon::prelude::*;

use crate::alphabet::digits_to_string;
use crate::data::svhn::Record;
use crate::error::Result;
use crate::read::reader::{Candidates, Reader};
use crate::read::DigitBox;
use crate::read::{self, Protocol};

/// Most photos [`evaluate`] prepares and reads together: enough that strips of one width meet
/// in a batch ([`crate::read::reader::MAX_BATCH`]; 1,024 read no faster, and hold four times
/// the strips).
const EVAL_CHUNK: usize = 256;
/// Photos in [`evaluate`]'s first chunk, before any photo's size is known.
const FIRST_CHUNK: usize = 64;
/// Decoded pixels a chunk holds, about (12 bytes each): large photos make smaller chunks.
const CHUNK_PIXELS: usize = 32 << 20;

/// Levenshtein distance between two digit sequences.
pub fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// One image's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// File name.
    pub name: String,
    /// Ground truth.
    pub truth: String,
    /// What was read (empty on error).
    pub predicted: String,
    /// Confidence of the reading (0 on error).
    pub confidence: f32,
    /// The model's raw log-probability of the reading (`-inf` on error): breaks ties between
    /// confidences that round to the same `f32` (near 1) when ranking.
    #[serde(skip)]
    pub log_prob: f64,
    /// Edit distance between truth and reading (the truth's length on error).
    pub edit_distance: usize,
    /// The error, when the image could not be read.
    pub error: Option<String>,
}

impl Outcome {
    /// Whether the image was read exactly (an unreadable image never is).
    pub fn is_right(&self) -> bool {
        self.error.is_none() && self.predicted == self.truth
    }
}

/// Summary of an evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    /// Images evaluated (including unreadable ones).
    pub images: usize,
    /// Images that could not be decoded or preprocessed.
    pub unreadable: usize,
    /// Share of images read exactly.
    pub sequence_accuracy: f64,
    /// `1 − Σ edit distance / Σ truth length`, floored at 0: the share of true digits read right.
    pub digit_accuracy: f64,
    /// Mean edit distance per image.
    pub mean_edit_distance: f64,
    /// Images per second, end to end (decode + preprocess + infer + CTC decode).
    pub images_per_second: f64,
    /// `crop`, `full` or `search`.
    pub protocol: Protocol,
    /// Share of images answered when abstaining on the least confident ones so that the answered
    /// ones are at least 98 % right (0 if no threshold reaches it).
    pub coverage_at_98: f64,
    /// Expected calibration error of the confidences (10 bins): how far "confidence 0.8" is
    /// from "right 80 % of the time", on average.
    pub calibration_error: f64,
    /// The worst misreads: highest edit distance first, then most confident.
    pub worst: Vec<Outcome>,
    /// Every unreadable image and why.
    pub errors: Vec<Outcome>,
    /// Every image's outcome, in input order (not in the JSON output).
    #[serde(skip)]
    pub outcomes: Vec<Outcome>,
}

/// Coverage at a target accuracy over `(confidence, raw log-probability, read right)` triples:
/// sort by confidence, descending (ties, e.g. confidences that round to 1 in `f32`, by the raw
/// log-probability), and take the longest prefix whose accuracy is ≥ `target`.
pub fn coverage_at(outcomes: &[(f32, f64, bool)], target: f64) -> f64 {
    let mut v = outcomes.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let mut ok = 0usize;
    let mut best = 0usize;
    for (i, (_, _, right)) in v.iter().enumerate() {
        ok += usize::from(*right);
        if ok as f64 >= target * (i + 1) as f64 {
            best = i + 1;
        }
    }
    best as f64 / v.len().max(1) as f64
}

/// Read already-preprocessed images (each one or more candidate strips, or its error) and
/// score them against `truths`.
fn score<I: std::borrow::Borrow<image::Rgb32FImage> + Send>(
    reader: &Reader,
    truths: &[(String, Vec<u8>)],
    strips: Vec<Result<(I, Candidates)>>,
    protocol: Protocol,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Outcome>> {
    let read = reader.read_prepared_images(strips, protocol);
    let mut out = Vec::with_capacity(truths.len());
    for ((name, digits), s) in truths.iter().zip(read) {
        let truth = digits_to_string(digits);
        out.push(match s {
            Ok((_, _, d)) => Outcome {
                name: name.clone(),
                edit_distance: edit_distance(digits, &d.digits),
                predicted: d.text(),
                confidence: d.confidence,
                log_prob: d.log_prob,
                truth,
                error: None,
            },
            Err(e) => Outcome {
                name: name.clone(),
                edit_distance: digits.len(),
                predicted: String::new(),
                confidence: 0.0,
                log_prob: f64::NEG_INFINITY,
                truth,
                error: Some(e.to_string()),
            },
        });
        progress.inc(1);
    }
    Ok(out)
}

/// Evaluate `reader` on `records` under `protocol`, in chunks: each chunk is preprocessed in
/// parallel and then read in width-grouped batches. `progress` advances once per image.
pub fn evaluate(
    reader: &Reader,
    records: &[Record],
    protocol: Protocol,
    progress: &indicatif::ProgressBar,
) -> Result<EvalReport> {
    let started = Instant::now();
    // Each photo's strips, and the photo itself where reading still looks at it; with the
    // number of pixels decoded, which sizes the chunks.
    let keep_photo = Reader::looks_at_photo(protocol);
    type Prepared = Result<(usize, (image::Rgb32FImage, Candidates))>;
    let prepare = |chunk: &[Record]| -> Vec<Prepared> {
        chunk
            .par_iter()
            .map(|r| {
                let img = read::load_image(&r.path)?;
                let strips = reader.strips(&img, protocol, &r.boxes)?;
                let pixels = img.width() as usize * img.height() as usize;
                let img = if keep_photo {
                    img
                } else {
                    image::Rgb32FImage::new(0, 0)
                };
                Ok((pixels, (img, strips)))
            })
            .collect()
    };
    let truths_of = |chunk: &[Record]| -> Vec<(String, Vec<u8>)> {
        chunk
            .iter()
            .map(|r| (r.name.clone(), r.digits.clone()))
            .collect()
    };
    // Pipeline: while chunk k is read, rayon prepares chunk k + 1, sized from the photos of
    // chunk k (at most EVAL_CHUNK photos and about CHUNK_PIXELS decoded pixels).
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(records.len());
    let mut chunk = &records[..FIRST_CHUNK.min(records.len())];
    let mut end = chunk.len();
    let mut current = prepare(chunk);
    while !chunk.is_empty() {
        let decoded: Vec<usize> = current.iter().flatten().map(|(px, _)| *px).collect();
        let mean = decoded.iter().sum::<usize>() / decoded.len().max(1);
        let size = (CHUNK_PIXELS / mean.max(1)).clamp(1, EVAL_CHUNK);
        let next_chunk = &records[end..(end + size).min(records.len())];
        let strips = std::mem::take(&mut current)
            .into_iter()
            .map(|p| p.map(|(_, photo)| photo))
            .collect();
        let (scored, next) = rayon::join(
            || score(reader, &truths_of(chunk), strips, protocol, progress),
            || prepare(next_chunk),
        );
        outcomes.extend(scored?);
        (chunk, current) = (next_chunk, next);
        end += next_chunk.len();
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(summarise(outcomes, protocol, secs))
}

/// An image held in memory with its digit boxes and number (e.g. a recombined number).
#[derive(Debug, Clone)]
pub struct LabelledImage {
    /// A name for reports.
    pub name: String,
    /// The picture.
    pub image: image::Rgb32FImage,
    /// One box per digit.
    pub boxes: Vec<DigitBox>,
    /// The number.
    pub digits: Vec<u8>,
}

/// [`evaluate`] for images held in memory.
pub fn evaluate_images(
    reader: &Reader,
    images: &[LabelledImage],
    protocol: Protocol,
    progress: &indicatif::ProgressBar,
) -> Result<EvalReport> {
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(images.len());
    for chunk in images.chunks(256) {
        let strips: Vec<Result<(image::Rgb32FImage, Candidates)>> = chunk
            .par_iter()
            .map(|li| {
                Ok((
                    li.image.clone(),
                    reader.strips(&li.image, protocol, &li.boxes)?,
                ))
            })
            .collect();
        let truths: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|l| (l.name.clone(), l.digits.clone()))
            .collect();
        outcomes.extend(score(reader, &truths, strips, protocol, progress)?);
    }
    Ok(summarise(
        outcomes,
        protocol,
        started.elapsed().as_secs_f64(),
    ))
}

/// [`evaluate`] for images made on demand, `chunk` at a time (for pictures too large to hold
/// all at once, such as phone-sized ones): `make(i)` builds image `i` and its digit boxes (or
/// fails, naming the file), `truths[i]` is its name and number. Images are made and framed in
/// parallel and dropped once their strips exist.
pub fn evaluate_generated<F>(
    reader: &Reader,
    truths: &[(String, Vec<u8>)],
    make: F,
    protocol: Protocol,
    chunk: usize,
    progress: &indicatif::ProgressBar,
) -> Result<EvalReport>
where
    F: Fn(usize) -> Result<(image::Rgb32FImage, Vec<DigitBox>)> + Sync,
{
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(truths.len());
    let indices: Vec<usize> = (0..truths.len()).collect();
    for part in indices.chunks(chunk.max(1)) {
        let strips: Vec<Result<(image::Rgb32FImage, Candidates)>> = part
            .par_iter()
            .map(|&i| {
                let (image, boxes) = make(i)?;
                let strips = reader.strips(&image, protocol, &boxes)?;
                Ok((image, strips))
            })
            .collect();
        outcomes.extend(score(
            reader,
            &truths[part[0]..part[0] + part.len()],
            strips,
            protocol,
            progress,
        )?);
    }
    Ok(summarise(
        outcomes,
        protocol,
        started.elapsed().as_secs_f64(),
    ))
}

/// Turn per-image outcomes into a report.
pub fn summarise(outcomes: Vec<Outcome>, protocol: Protocol, seconds: f64) -> EvalReport {
    let n = outcomes.len();
    let right = outcomes.iter().filter(|o| o.is_right()).count();
    let total_digits: usize = outcomes.iter().map(|o| o.truth.len()).sum();
    let total_edit: usize = outcomes.iter().map(|o| o.edit_distance).sum();
    let ranked: Vec<(f32, f64, bool)> = outcomes
        .iter()
        .map(|o| (o.confidence, o.log_prob, o.is_right()))
        .collect();
    let pairs: Vec<(f32, bool)> = ranked.iter().map(|&(c, _, y)| (c, y)).collect();
    let mut wrong: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.error.is_none() && o.predicted != o.truth)
        .cloned()
        .collect();
    wrong.sort_by(|a, b| {
        b.edit_distance
            .cmp(&a.edit_distance)
            .then(b.confidence.total_cmp(&a.confidence))
    });
    wrong.truncate(20);
    let errors: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .cloned()
        .collect();
    EvalReport {
        images: n,
        unreadable: errors.len(),
        sequence_accuracy: right as f64 / n.max(1) as f64,
        digit_accuracy: (1.0 - total_edit as f64 / total_digits.max(1) as f64).max(0.0),
        mean_edit_distance: total_edit as f64 / n.max(1) as f64,
        images_per_second: n as f64 / seconds.max(1e-9),
        protocol,
        coverage_at_98: coverage_at(&ranked, 0.98),
        calibration_error: crate::eval::calibration::expected_calibration_error(&pairs, 10),
        worst: wrong,
        errors,
        outcomes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_table() {
        let cases: [(&[u8], &[u8], usize); 6] = [
            (&[], &[], 0),
            (&[1, 2, 3], &[1, 2, 3], 0),
            (&[1, 2, 3], &[1, 3], 1),
            (&[1, 2], &[2, 1], 2),
            (&[], &[5, 5], 2),
            (&[1, 2, 3, 4], &[9, 2, 3, 4, 5], 2),
        ];
        let bad: Vec<_> = cases
            .iter()
            .filter(|(a, b, d)| edit_distance(a, b) != *d)
            .map(|(a, b, d)| format!("{a:?} vs {b:?}: got {} want {d}", edit_distance(a, b)))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn coverage_table() {
        // Confident and right first, then a wrong one.
        let v = [
            (0.9, -0.1, true),
            (0.8, -0.2, true),
            (0.7, -0.3, false),
            (0.1, -2.0, true),
        ];
        assert_eq!(coverage_at(&v, 0.98), 0.5);
        assert_eq!(coverage_at(&v, 0.7), 1.0);
        assert_eq!(coverage_at(&[(0.5, -0.7, false)], 0.98), 0.0);
        // Confidences tied at 1: the raw log-probability orders them (the wrong one last).
        let tied = [(1.0, -1e-9, false), (1.0, -1e-12, true), (1.0, 0.0, true)];
        assert_eq!(coverage_at(&tied, 0.98), 2.0 / 3.0);
    }

    #[test]
    fn summary_counts_errors_as_misreads() {
        let o = |t: &str, p: &str, err: bool| Outcome {
            name: "x".into(),
            truth: t.into(),
            predicted: p.into(),
            confidence: 0.5,
            log_prob: 0.5f64.ln(),
            edit_distance: if err {
                t.len()
            } else {
                edit_distance(t.as_bytes(), p.as_bytes())
            },
            error: err.then(|| "bad".to_string()),
        };
        let r = summarise(
            vec![o("12", "12", false), o("34", "35", false), o("5", "", true)],
            Protocol::Crop,
            1.0,
        );
        assert_eq!(r.images, 3);
        assert_eq!(r.unreadable, 1);
        assert!((r.sequence_accuracy - 1.0 / 3.0).abs() < 1e-9);
        assert!((r.digit_accuracy - (1.0 - 2.0 / 5.0)).abs() < 1e-9);
        assert_eq!(r.worst.len(), 1);
    }
}
