//! The look's verifier: which of a photo's readings answers when the detector's look
//! ([`crate::read::reader::Reader::look_candidates`]) has run.
//!
//! The options are the first answer (the localiser's box) and every candidate the look read as
//! a number. Each option gets a score linear in a few features of it: the reader's confidence,
//! the detector's score, the box's size in the photo, how many digits, whether other candidates
//! read the same; and in features that compare it with the other options: its confidence
//! against the most confident, whether a longer reading around it holds its digits, whether it
//! holds a shorter one's. The highest score answers. The weights were fitted by
//! `data/fit_verifier.py` (a softmax over each photo's options, the right ones as targets) on the
//! training split's photos framed 1×, 2× and 4× looser and at phone size, on canvases holding no
//! number, and on made-up house fronts in the training fonts (`data/verifier_recipe.sh`;
//! docs/experiments.md, "A learned verifier" and "Options compared with each other").
//!
//! Every feature is computed here in `f32`, and `onnx/read.py` computes the same.

use super::ctc::Decoded;
use super::region::Region;

/// How many features an answer option has ([`answer_features`]).
pub const ANSWER_FEATURES: usize = 5;
/// How many features a candidate option has ([`candidate_features`]).
pub const CANDIDATE_FEATURES: usize = 11;
/// How many features every option has beside those, weighed alike for the first answer and
/// the candidates ([`shared_features`]).
pub const SHARED_FEATURES: usize = 5;

/// The verifier's weights: an option's score is the dot product of its features with them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weights of [`answer_features`], in their order.
    pub answer: [f32; ANSWER_FEATURES],
    /// Weights of [`candidate_features`], in their order.
    pub candidate: [f32; CANDIDATE_FEATURES],
    /// Weights of [`shared_features`], in their order.
    pub shared: [f32; SHARED_FEATURES],
}

/// The shipped weights, as `data/verifier_recipe.sh` prints them.
pub const WEIGHTS: Weights = Weights {
    answer: [0.2052, 0.7319, 0.2540, -1.9913, -0.1415],
    candidate: [
        0.3000, 0.3501, -1.0481, -0.2497, 1.1628, -0.3040, 0.4218, -0.0288, 0.2767, -0.2765, 0.0707,
    ],
    shared: [0.4620, -0.4387, 0.5669, -0.0456, 0.5783],
};

/// Photos of at least this many pixels are phone-size ([`answer_features`]' fourth feature).
pub const PHONE_PIXELS: f32 = 2_000_000.0;

/// A candidate option as the verifier sees it: the box the localiser placed, `(left, top,
/// right, bottom)` pixels, the detector's score, and the box's reading.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    /// The localiser's box, `(left, top, right, bottom)` pixels.
    pub rect: (f32, f32, f32, f32),
    /// The detector's score, `[0, 1]`.
    pub score: f32,
    /// The box's reading (non-empty).
    pub reading: &'a Decoded,
}

/// `ln(p / (1 - p))` with `p` clamped to `[1e-4, 1 - 1e-4]`.
pub fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// The features of the first answer `(region, reading)` in a `size = (width, height)` photo:
/// logit of its confidence; 1 if it is no number; ln of its region's share of the photo's area
/// (the area at least 1 pixel); 1 if the photo has at least [`PHONE_PIXELS`]; 1 (bias).
pub fn answer_features(
    (region, d): (Region, &Decoded),
    size: (u32, u32),
) -> [f32; ANSWER_FEATURES] {
    let pixels = size.0 as f32 * size.1 as f32;
    let area = (region.width() as f32 * region.height() as f32).max(1.0);
    [
        logit(d.confidence),
        f32::from(d.digits.is_empty()),
        (area / pixels).ln(),
        f32::from(pixels >= PHONE_PIXELS),
        1.0,
    ]
}

/// The features of each of `options` (a photo's candidates read as numbers, in the detector's
/// order) in a `size = (width, height)` photo whose first answer is `answer`:
///
/// 0. logit of the reading's confidence;
/// 1. logit of the detector's score;
/// 2. 1 if the reading is one digit;
/// 3. the reading's length, at most 5, over 5;
/// 4. ln of the box's height over the square root of the photo's area;
/// 5. how many other options read the same digits, at most 3, over 3;
/// 6. 1 if the reading equals the first answer's;
/// 7. 1 if the box's centre lies in the first answer's region ([`Region::contains`]);
/// 8. 1 for the option with the highest confidence × score (the first among equals);
/// 9. ln of the box's width over its height times the reading's length;
/// 10. 1 (bias).
///
/// Box sides count at least 1 pixel.
pub fn candidate_features(
    options: &[Choice<'_>],
    (region, d): (Region, &Decoded),
    size: (u32, u32),
) -> Vec<[f32; CANDIDATE_FEATURES]> {
    let root_area = (size.0 as f32 * size.1 as f32).sqrt();
    let mut top = 0;
    for (k, o) in options.iter().enumerate() {
        let best = &options[top];
        if o.reading.confidence * o.score > best.reading.confidence * best.score {
            top = k;
        }
    }
    options
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let (l, t, r, b) = o.rect;
            let (w, h) = ((r - l).max(1.0), (b - t).max(1.0));
            let n = o.reading.digits.len() as f32;
            let votes = options
                .iter()
                .enumerate()
                .filter(|&(j, p)| j != k && p.reading.digits == o.reading.digits)
                .count()
                .min(3) as f32;
            [
                logit(o.reading.confidence),
                logit(o.score),
                f32::from(o.reading.digits.len() == 1),
                n.min(5.0) / 5.0,
                (h / root_area).ln(),
                votes / 3.0,
                f32::from(o.reading.digits == d.digits),
                f32::from(region.contains((l + r) / 2.0, (t + b) / 2.0)),
                f32::from(k == top),
                (w / (h * n)).ln(),
                1.0,
            ]
        })
        .collect()
}

/// A box, `(left, top, right, bottom)` pixels.
type Rect = (f32, f32, f32, f32);

/// Whether `needle` (non-empty) occurs in `hay` as a run of digits.
fn holds_digits(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The features every option has, the first answer `(region, reading)` first and then each of
/// `options` (as [`candidate_features`]), weighed alike for all:
///
/// 0. logit of the reading's confidence less the highest such logit among the options;
/// 1. *part*: 1 if another option reads a longer number that holds this reading's digits, and
///    its box holds this box's centre;
/// 2. *holds*: 1 if this box holds the centre of another option whose digits this reading
///    holds (and are fewer);
/// 3. the share of the options (this one included) that read the same digits, 0 for no number;
/// 4. the reading's length less the longest option's.
///
/// A box holds a point as [`Region::contains`] does: `left ≤ x < right`, `top ≤ y < bottom`;
/// the first answer's box is its region.
pub fn shared_features(
    options: &[Choice<'_>],
    (region, d): (Region, &Decoded),
) -> Vec<[f32; SHARED_FEATURES]> {
    let first = (
        (
            region.x0 as f32,
            region.y0 as f32,
            region.x1 as f32,
            region.y1 as f32,
        ),
        d,
    );
    let all: Vec<(Rect, &Decoded)> = std::iter::once(first)
        .chain(options.iter().map(|o| (o.rect, o.reading)))
        .collect();
    let logits: Vec<f32> = all.iter().map(|o| logit(o.1.confidence)).collect();
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let longest = all.iter().map(|o| o.1.digits.len()).max().unwrap_or(0);
    let centre = |(l, t, r, b): Rect| ((l + r) / 2.0, (t + b) / 2.0);
    let holds_point = |(l, t, r, b): Rect, (x, y): (f32, f32)| x >= l && x < r && y >= t && y < b;
    all.iter()
        .enumerate()
        .map(|(k, &(rect, o))| {
            let digits = &o.digits;
            let others = || all.iter().enumerate().filter(move |&(j, _)| j != k);
            let part = others().any(|(_, &(r, p))| {
                p.digits.len() > digits.len()
                    && holds_digits(&p.digits, digits)
                    && holds_point(r, centre(rect))
            });
            let holds = others().any(|(_, &(r, p))| {
                digits.len() > p.digits.len()
                    && holds_digits(digits, &p.digits)
                    && holds_point(rect, centre(r))
            });
            let same = if digits.is_empty() {
                0
            } else {
                all.iter().filter(|p| p.1.digits == *digits).count()
            };
            [
                logits[k] - top,
                f32::from(part),
                f32::from(holds),
                same as f32 / all.len() as f32,
                digits.len() as f32 - longest as f32,
            ]
        })
        .collect()
}

/// The verifier's scores of a photo's options: the first answer's, then each option's.
pub type Scores = (f32, Vec<f32>);

/// `w · f`.
fn dot<const N: usize>(w: &[f32; N], f: &[f32; N]) -> f32 {
    w.iter().zip(f).map(|(a, b)| a * b).sum()
}

/// The verifier's scores under `weights`: the first answer's, then each option's
/// ([`answer_features`] or [`candidate_features`], plus [`shared_features`]).
pub fn scores(
    weights: &Weights,
    options: &[Choice<'_>],
    answer: (Region, &Decoded),
    size: (u32, u32),
) -> Scores {
    let shared = shared_features(options, answer);
    let a = dot(&weights.answer, &answer_features(answer, size)) + dot(&weights.shared, &shared[0]);
    let c = candidate_features(options, answer, size)
        .iter()
        .zip(&shared[1..])
        .map(|(f, x)| dot(&weights.candidate, f) + dot(&weights.shared, x))
        .collect();
    (a, c)
}

/// Which option answers, given [`scores`]' `(first answer's score, options' scores)`: `None`
/// for the first answer, else the index of the highest score if it beats the first answer's
/// (the first among equals).
pub fn choose((first, options): &Scores) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (k, &s) in options.iter().enumerate() {
        if s > best.map_or(*first, |b| b.1) {
            best = Some((k, s));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(digits: &[u8], confidence: f32) -> Decoded {
        Decoded {
            digits: digits.to_vec(),
            confidence,
            log_prob: f64::from(confidence).ln(),
            path_prob: confidence,
            spans: Vec::new(),
            digit_confidences: Vec::new(),
            withheld: Vec::new(),
        }
    }

    /// The first answer's region in the tests' 100 × 100 photo.
    const REGION: Region = Region {
        x0: 10,
        y0: 10,
        x1: 30,
        y1: 30,
    };

    /// An option beside [`REGION`], (40, 40)–(60, 50), detector score 0.9.
    fn beside(reading: &Decoded) -> Choice<'_> {
        Choice {
            rect: (40.0, 40.0, 60.0, 50.0),
            score: 0.9,
            reading,
        }
    }

    /// An option inside [`REGION`], (15, 15)–(25, 25), detector score 0.6.
    fn inside(reading: &Decoded) -> Choice<'_> {
        Choice {
            rect: (15.0, 15.0, 25.0, 25.0),
            score: 0.6,
            reading,
        }
    }

    /// A 100 × 100 photo whose first answer read `12` at 0.5 in (10, 10)–(30, 30); two options:
    /// `12` beside it (the most confidence × score) and `7` inside its region.
    #[test]
    fn features_are_as_documented() {
        let region = REGION;
        let first = reading(&[1, 2], 0.5);
        let (a, b) = (reading(&[1, 2], 0.8), reading(&[7], 0.99));
        let options = [beside(&a), inside(&b)];
        let ln = |x: f32| x.ln();
        let cases: [(&str, Vec<f32>, Vec<f32>); 3] = [
            (
                "the first answer",
                answer_features((region, &first), (100, 100)).to_vec(),
                vec![0.0, 0.0, ln(0.04), 0.0, 1.0],
            ),
            (
                "12 beside it",
                candidate_features(&options, (region, &first), (100, 100))[0].to_vec(),
                vec![
                    ln(4.0),
                    ln(9.0),
                    0.0,
                    0.4,
                    ln(0.1),
                    0.0,
                    1.0,
                    0.0,
                    1.0,
                    0.0,
                    1.0,
                ],
            ),
            (
                "7 inside it",
                candidate_features(&options, (region, &first), (100, 100))[1].to_vec(),
                vec![
                    ln(99.0),
                    ln(1.5),
                    1.0,
                    0.2,
                    ln(0.1),
                    0.0,
                    0.0,
                    1.0,
                    0.0,
                    0.0,
                    1.0,
                ],
            ),
        ];
        for (what, got, want) in cases {
            assert_eq!(got.len(), want.len(), "{what}");
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-4, "{what}, feature {k}: {g} against {w}");
            }
        }
    }

    /// The shared features of a first answer `12` (0.5 sure, region (10, 10)–(30, 30)) and three
    /// candidates: `12` beside it, `7` inside it, and `127` around both.
    #[test]
    fn shared_features_are_as_documented() {
        let region = REGION;
        let first = reading(&[1, 2], 0.5);
        let (a, b, c) = (
            reading(&[1, 2], 0.8),
            reading(&[7], 0.99),
            reading(&[1, 2, 7], 0.6),
        );
        let options = [
            beside(&a),
            inside(&b),
            Choice {
                rect: (5.0, 5.0, 50.0, 35.0),
                score: 0.5,
                reading: &c,
            },
        ];
        let top = 99f32.ln();
        let got = shared_features(&options, (region, &first));
        // (what, [confidence's logit less the top, part, holds, share reading the same, length
        // less the longest])
        let want: [(&str, [f32; SHARED_FEATURES]); 4] = [
            ("the first answer: part of 127", [-top, 1.0, 0.0, 0.5, -1.0]),
            (
                "12 beside it: 127's box stops short of its centre",
                [4f32.ln() - top, 0.0, 0.0, 0.5, -1.0],
            ),
            (
                "7 inside it: the most confident, part of 127",
                [0.0, 1.0, 0.0, 0.25, -2.0],
            ),
            (
                "127 around them: holds the first answer and 7",
                [1.5f32.ln() - top, 0.0, 1.0, 0.25, 0.0],
            ),
        ];
        assert_eq!(got.len(), want.len());
        for (g, (what, w)) in got.iter().zip(&want) {
            for (k, (g, w)) in g.iter().zip(w).enumerate() {
                assert!((g - w).abs() < 1e-4, "{what}, feature {k}: {g} against {w}");
            }
        }
        let none = reading(&[], 0.9);
        let alone = shared_features(&[], (region, &none));
        assert_eq!(
            alone,
            vec![[0.0, 0.0, 0.0, 0.0, 0.0]],
            "no number, no options"
        );
    }

    /// Readings of the same digits vote; a phone-size photo and a first answer of no number
    /// are flagged; extreme confidences are clamped.
    #[test]
    fn votes_phones_and_clamps() {
        let region = Region::full(4000, 3000);
        let none = reading(&[], 1.0);
        let r = reading(&[3, 0, 8], 0.0);
        let options: Vec<Choice> = (0..5)
            .map(|k| Choice {
                rect: (k as f32, 0.0, k as f32 + 30.0, 10.0),
                score: 1.0,
                reading: &r,
            })
            .collect();
        let a = answer_features((region, &none), (4000, 3000));
        assert_eq!(a[1], 1.0, "no number");
        assert_eq!(a[3], 1.0, "phone-size");
        assert!((a[0] - logit(1.0 - 1e-4)).abs() < 1e-6);
        for f in candidate_features(&options, (region, &none), (4000, 3000)) {
            assert_eq!(f[5], 1.0, "four others read the same: capped at 3");
            assert!((f[0] - logit(1e-4)).abs() < 1e-6 && f[0] < -9.0);
            assert_eq!(f[6], 0.0);
        }
    }

    /// The first answer wins ties; among options, the first of the highest.
    #[test]
    fn choose_takes_the_highest_score_over_the_first_answers() {
        let cases: [(Scores, Option<usize>); 5] = [
            ((0.0, vec![1.0, 2.0]), Some(1)),
            ((2.0, vec![1.0, 2.0]), None),
            ((0.0, vec![]), None),
            ((0.0, vec![1.0, 1.0]), Some(0)),
            ((-1.0, vec![-3.0, -2.0]), None),
        ];
        for (scores, want) in cases {
            assert_eq!(choose(&scores), want, "{scores:?}");
        }
    }
}
