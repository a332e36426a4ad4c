//! CTC: the loss with its gradient (log-space forward–backward) and greedy decoding with a
//! confidence. Class 0 is the blank (see [`crate::alphabet`]).

use crate::alphabet::{class_of_digit, digit_of_class, BLANK, NUM_CLASSES};

/// `log(exp(a) + exp(b))` without overflow.
fn lse(a: f32, b: f32) -> f32 {
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
fn forward(
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

/// Negative log-likelihood of `labels` (class indices, no blanks) under one sample's
/// log-probabilities, and its gradient with respect to the *logits* that produced them through
/// a log-softmax (`softmax − occupancy`).
///
/// # Shapes
/// `log_probs`: `[t, NUM_CLASSES]` (log-softmax outputs). Returns `(loss, grad [t, NUM_CLASSES])`,
/// or `None` when no alignment exists (too few steps for the labels).
pub fn ctc_loss_grad(log_probs: &[f32], t: usize, labels: &[usize]) -> Option<(f32, Vec<f32>)> {
    let c = NUM_CLASSES;
    let s_len = 2 * labels.len() + 1;
    let ext = |s: usize| if s % 2 == 0 { BLANK } else { labels[s / 2] };
    let lp = |tt: usize, k: usize| log_probs[tt * c + k];
    let ninf = f32::NEG_INFINITY;
    let (alpha, log_p) = forward(t, labels, lp)?;
    let mut beta = vec![ninf; t * s_len];
    let last = (t - 1) * s_len;
    beta[last + s_len - 1] = lp(t - 1, ext(s_len - 1));
    if s_len > 1 {
        beta[last + s_len - 2] = lp(t - 1, ext(s_len - 2));
    }
    for tt in (0..t - 1).rev() {
        for s in 0..s_len {
            let mut b = beta[(tt + 1) * s_len + s];
            if s + 1 < s_len {
                b = lse(b, beta[(tt + 1) * s_len + s + 1]);
            }
            if s + 2 < s_len && ext(s) != BLANK && ext(s) != ext(s + 2) {
                b = lse(b, beta[(tt + 1) * s_len + s + 2]);
            }
            beta[tt * s_len + s] = if b == ninf { ninf } else { b + lp(tt, ext(s)) };
        }
    }
    let mut grad = vec![0f32; t * c];
    for tt in 0..t {
        let mut occ = [ninf; NUM_CLASSES];
        for s in 0..s_len {
            let k = ext(s);
            occ[k] = lse(occ[k], alpha[tt * s_len + s] + beta[tt * s_len + s]);
        }
        for k in 0..c {
            let y = lp(tt, k).exp();
            let o = if occ[k] == ninf {
                0.0
            } else {
                (occ[k] - lp(tt, k) - log_p).exp()
            };
            grad[tt * c + k] = y - o;
        }
    }
    Some((-log_p, grad))
}

/// A decoded number.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decoded {
    /// The digits, left to right.
    pub digits: Vec<u8>,
    /// Confidence that the reading is right, in [0, 1]: the probability of the digits
    /// (`exp(log_prob)`) as decoded, mapped through the model's calibration by
    /// [`crate::infer::Reader`].
    pub confidence: f32,
    /// Log-probability of exactly these digits under the model: the log-sum over every
    /// alignment that collapses to them ([`sequence_log_prob`]); never calibrated. Ranks
    /// readings (coverage, search's votes) and feeds the calibration.
    pub log_prob: f64,
    /// Probability of the best path alone (the product over steps of the winning class
    /// probability), in [0, 1]: the confidence `read` printed in earlier versions, on which the
    /// shipped model's recipe filters its pseudo labels (`read --path-confidence`).
    pub path_prob: f32,
    /// For each digit, the time steps `[first, last]` whose argmax emitted it.
    pub spans: Vec<(usize, usize)>,
    /// For each digit, the highest probability its class reached over its span, in [0, 1].
    pub digit_confidences: Vec<f32>,
}

impl Decoded {
    /// The digits as text.
    pub fn text(&self) -> String {
        crate::alphabet::digits_to_string(&self.digits)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[t, 1, C]` log-probs that put probability `p` on the given class per step.
    fn peaked(path: &[usize], p: f32) -> Vec<f32> {
        let rest = ((1.0 - p) / (NUM_CLASSES - 1) as f32).ln();
        path.iter()
            .flat_map(|&k| (0..NUM_CLASSES).map(move |j| if j == k { p.ln() } else { rest }))
            .collect()
    }

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
    fn decode_spans_follow_the_path() {
        let lp = peaked(&[0, 2, 2, 0, 3, 0], 0.8);
        let d = greedy_decode(&lp, 6, 1, 0);
        assert_eq!(d.spans, vec![(1, 2), (4, 4)]);
        assert_eq!(d.digit_confidences.len(), 2);
        assert!((d.digit_confidences[0] - 0.8).abs() < 1e-5);
    }

    #[test]
    fn loss_of_a_certain_path_is_small_and_infeasible_is_none() {
        let lp = peaked(&[0, 2, 0, 3, 0], 0.999);
        let (loss, _) = ctc_loss_grad(&lp, 5, &[2, 3]).unwrap();
        assert!(loss < 0.02, "{loss}");
        // "11" needs at least 3 steps.
        assert!(ctc_loss_grad(&peaked(&[2, 2], 0.5), 2, &[2, 2]).is_none());
    }

    #[test]
    fn loss_matches_brute_force_enumeration() {
        // Uniform-ish random log-probs over T=4 and labels [1, 1]: sum over all 11^4 paths.
        let t = 4;
        let mut seed = 7u64;
        let mut logits: Vec<f32> = (0..t * NUM_CLASSES)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect();
        crate::nn::log_softmax_rows(&mut logits, NUM_CLASSES);
        // Labels (classes) to check: repeated, single, empty, three with a repeat apart.
        let cases: [&[usize]; 4] = [&[1, 1], &[2], &[], &[3, 4, 3]];
        for labels in cases {
            let mut total = 0f64;
            for code in 0..NUM_CLASSES.pow(t as u32) {
                let mut path = Vec::new();
                let mut c = code;
                for _ in 0..t {
                    path.push(c % NUM_CLASSES);
                    c /= NUM_CLASSES;
                }
                let mut collapsed = Vec::new();
                let mut prev = BLANK;
                for &k in &path {
                    if k != BLANK && k != prev {
                        collapsed.push(k);
                    }
                    prev = k;
                }
                if collapsed == labels {
                    total += path
                        .iter()
                        .enumerate()
                        .map(|(tt, &k)| logits[tt * NUM_CLASSES + k] as f64)
                        .sum::<f64>()
                        .exp();
                }
            }
            let (loss, _) = ctc_loss_grad(&logits, t, labels).unwrap();
            assert!(
                (loss as f64 + total.ln()).abs() < 1e-4,
                "{labels:?}: {loss} vs {}",
                -total.ln()
            );
            let digits: Vec<u8> = labels.iter().map(|&k| digit_of_class(k).unwrap()).collect();
            let seq = sequence_log_prob(&logits, t, 1, 0, &digits);
            assert!(
                (seq - total.ln()).abs() < 1e-4,
                "{labels:?}: {seq} vs {}",
                total.ln()
            );
        }
        let (_, grad) = ctc_loss_grad(&logits, t, &[1, 1]).unwrap();
        // Gradient w.r.t. logits sums to zero on every step.
        for row in grad.chunks(NUM_CLASSES) {
            assert!(row.iter().sum::<f32>().abs() < 1e-5);
        }
    }
}
