//! CTC decoding: the greedy (best-path) reading with its confidence, and the log-probability of
//! a reading summed over all its alignments. Class 0 is the blank (see [`crate::alphabet`]).

use crate::alphabet::{class_of_digit, digit_of_class, BLANK, NUM_CLASSES};

/// `log(exp(a) + exp(b))` without overflow.
pub(crate) fn lse(a: f32, b: f32) -> f32 {
    if a == f32::NEG_INFINITY {
        return b;
    }
    if b == f32::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// The CTC forward variables of `labels` (class indices, no blanks) over `t` steps whose
/// log-probabilities `lp(step, class)` gives, and the log-likelihood of the labels (the
/// log-sum over every alignment). `None` when no alignment exists (too few steps, or `t = 0`).
///
/// # Shapes
/// Returns `alpha`: `[t, 2·labels.len() + 1]` (the labels interleaved with blanks).
pub(crate) fn forward(
    t: usize,
    labels: &[usize],
    lp: impl Fn(usize, usize) -> f32,
) -> Option<(Vec<f32>, f32)> {
    let s_len = 2 * labels.len() + 1;
    let ext = |s: usize| if s % 2 == 0 { BLANK } else { labels[s / 2] };
    let ninf = f32::NEG_INFINITY;
    if t == 0 {
        return None;
    }
    let mut alpha = vec![ninf; t * s_len];
    alpha[0] = lp(0, BLANK);
    if s_len > 1 {
        alpha[1] = lp(0, ext(1));
    }
    for tt in 1..t {
        for s in 0..s_len {
            let mut a = alpha[(tt - 1) * s_len + s];
            if s >= 1 {
                a = lse(a, alpha[(tt - 1) * s_len + s - 1]);
            }
            if s >= 2 && ext(s) != BLANK && ext(s) != ext(s - 2) {
                a = lse(a, alpha[(tt - 1) * s_len + s - 2]);
            }
            alpha[tt * s_len + s] = if a == ninf { ninf } else { a + lp(tt, ext(s)) };
        }
    }
    let last = (t - 1) * s_len;
    let log_p = if s_len > 1 {
        lse(alpha[last + s_len - 1], alpha[last + s_len - 2])
    } else {
        alpha[last]
    };
    log_p.is_finite().then_some((alpha, log_p))
}

/// Log-probability of reading exactly `digits` from sample `b` of a batch: the log-sum over
/// every alignment (path) that collapses to them, not only the best one. This is what
/// [`Decoded::log_prob`] holds, and it ranks readings far better than the best path's
/// probability, which splits a confident reading's mass over its alignments. `-inf` when no
/// alignment exists.
///
/// # Shapes
/// `log_probs`: `[t, n, NUM_CLASSES]` log-probabilities.
pub fn sequence_log_prob(log_probs: &[f32], t: usize, n: usize, b: usize, digits: &[u8]) -> f64 {
    let labels: Vec<usize> = digits.iter().map(|&d| class_of_digit(d)).collect();
    let lp = |tt: usize, k: usize| log_probs[(tt * n + b) * NUM_CLASSES + k];
    forward(t, &labels, lp).map_or(f64::NEG_INFINITY, |(_, log_p)| log_p as f64)
}

/// What `housenum read` prints in the digits column for a reading without digits: the photo
/// holds no number (its confidence is then how sure the reader is that there is none).
pub const NO_NUMBER: &str = "no number";

/// A decoded number.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decoded {
    /// The digits, left to right.
    pub digits: Vec<u8>,
    /// Confidence that the reading is right, in [0, 1]: the probability of the digits
    /// (`exp(log_prob)`) as decoded, mapped through the model's calibration by
    /// [`crate::read::reader::Reader`].
    pub confidence: f32,
    /// Log-probability of exactly these digits under the model: the log-sum over every
    /// alignment that collapses to them ([`sequence_log_prob`]); never calibrated. Ranks
    /// readings (coverage, search's votes) and feeds the calibration.
    pub log_prob: f64,
    /// Probability of the best path alone (the product over steps of the winning class
    /// probability), in [0, 1]: the score on which the shipped model's recipe filters its pseudo
    /// labels (`read --path-confidence`).
    pub path_prob: f32,
    /// For each digit, the time steps `[first, last]` whose argmax emitted it.
    pub spans: Vec<(usize, usize)>,
    /// For each digit, the highest probability its class reached over its span, in [0, 1].
    pub digit_confidences: Vec<f32>,
    /// The digits of a reading withheld as too unsure ([`Decoded::withhold`]): `digits` is then
    /// empty (no number) and `confidence` is still that reading's. Empty otherwise.
    pub withheld: Vec<u8>,
}

impl Decoded {
    /// The digits as text.
    pub fn text(&self) -> String {
        crate::alphabet::digits_to_string(&self.digits)
    }

    /// This reading reported as no number when it is less than `below` sure: its digits move
    /// to [`Decoded::withheld`] and its spans are dropped; the confidence, log-probability and
    /// path probability stay the reading's, so that it still ranks as the unsure reading it was.
    /// A reading of no number, or one at least `below` sure, is returned as it is.
    pub fn withhold(mut self, below: f32) -> Decoded {
        if !self.digits.is_empty() && self.confidence < below {
            self.withheld = std::mem::take(&mut self.digits);
            self.spans.clear();
            self.digit_confidences.clear();
        }
        self
    }
}

/// Greedy (best-path) CTC decoding of sample `b` of a batch: argmax per step, merge repeats,
/// drop blanks; the reading's probability is then summed over all its alignments.
///
/// # Shapes
/// `log_probs`: `[t, n, NUM_CLASSES]` log-probabilities.
pub fn greedy_decode(log_probs: &[f32], t: usize, n: usize, b: usize) -> Decoded {
    let c = NUM_CLASSES;
    let mut digits = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut digit_confidences: Vec<f32> = Vec::new();
    let mut log_conf = 0f64;
    let mut prev = BLANK;
    for tt in 0..t {
        let row = &log_probs[(tt * n + b) * c..][..c];
        let (k, v) = row
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |acc, (k, &v)| if v > acc.1 { (k, v) } else { acc },
            );
        log_conf += v as f64;
        if k != BLANK {
            if k == prev {
                if let (Some(last), Some(c)) = (spans.last_mut(), digit_confidences.last_mut()) {
                    last.1 = tt;
                    *c = c.max(v.exp());
                }
            } else if let Some(d) = digit_of_class(k) {
                digits.push(d);
                spans.push((tt, tt));
                digit_confidences.push(v.exp());
            }
        }
        prev = k;
    }
    let log_prob = sequence_log_prob(log_probs, t, n, b, &digits).min(0.0);
    Decoded {
        digits,
        confidence: log_prob.exp() as f32,
        log_prob,
        path_prob: log_conf.exp().clamp(0.0, 1.0) as f32,
        spans,
        digit_confidences,
        withheld: Vec::new(),
    }
}

/// `[t, 1, C]` log-probs that put probability `p` on the given class per step (tests only).
#[cfg(test)]
pub(crate) fn peaked(path: &[usize], p: f32) -> Vec<f32> {
    let rest = ((1.0 - p) / (NUM_CLASSES - 1) as f32).ln();
    path.iter()
        .flat_map(|&k| (0..NUM_CLASSES).map(move |j| if j == k { p.ln() } else { rest }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_decode_table() {
        // (best path, expected digits); class d+1 is digit d.
        let cases: Vec<(Vec<usize>, &str)> = vec![
            (vec![0, 0, 0], ""),
            (vec![2, 2, 0, 2], "11"),
            (vec![2, 2, 2], "1"),
            (vec![1, 0, 1, 0, 10], "009"),
            (vec![4, 5, 6], "345"),
            (vec![0, 3, 0, 3, 3, 0], "22"),
        ];
        let mut failures = Vec::new();
        for (path, want) in &cases {
            let lp = peaked(path, 0.9);
            let d = greedy_decode(&lp, path.len(), 1, 0);
            if d.text() != *want {
                failures.push(format!("{path:?}: got {} want {want}", d.text()));
            }
            let expect_conf = 0.9f32.powi(path.len() as i32);
            assert!((d.path_prob - expect_conf).abs() < 1e-4);
            // Other alignments of the same digits only add probability.
            assert!(d.confidence >= d.path_prob && d.log_prob <= 0.0, "{d:?}");
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn withhold_table() {
        // (path, peak probability, threshold, digits kept, digits withheld)
        let cases: Vec<(Vec<usize>, f32, f32, &str, &str)> = vec![
            (vec![2, 0, 3], 0.9, 0.12, "12", ""),
            (vec![2, 0, 3], 0.3, 0.12, "", "12"),
            (vec![2, 0, 3], 0.3, 0.0, "12", ""),
            (vec![0, 0, 0], 0.3, 0.12, "", ""),
            (vec![0, 0, 0], 0.9, 1.0, "", ""),
        ];
        let mut failures = Vec::new();
        for (path, p, below, kept, withheld) in &cases {
            let d = greedy_decode(&peaked(path, *p), path.len(), 1, 0);
            let w = d.clone().withhold(*below);
            let got = (w.text(), crate::alphabet::digits_to_string(&w.withheld));
            if got != (kept.to_string(), withheld.to_string()) {
                failures.push(format!("{path:?} at {p} below {below}: got {got:?}"));
            }
            // The confidence and ranking stay the reading's; a withheld one has no spans.
            assert_eq!((w.confidence, w.log_prob), (d.confidence, d.log_prob));
            assert_eq!(w.spans.len(), w.digits.len());
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn decode_spans_follow_the_path() {
        let lp = peaked(&[0, 2, 2, 0, 3, 0], 0.8);
        let d = greedy_decode(&lp, 6, 1, 0);
        assert_eq!(d.spans, vec![(1, 2), (4, 4)]);
        assert_eq!(d.digit_confidences.len(), 2);
        assert!((d.digit_confidences[0] - 0.8).abs() < 1e-5);
    }
}
