//! The CTC loss and its gradient with respect to the logits (log-space forward–backward), on
//! the forward variables of [`crate::read::ctc`].

use crate::alphabet::{BLANK, NUM_CLASSES};
use crate::read::ctc::{forward, lse};

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

/// Distillation towards a teacher's posteriors of the same strip (the same steps): the loss
/// `Σ_t KL(q_t ‖ p_t)`, `q` the teacher's and `p` the student's distributions over the classes,
/// and its gradient with respect to the student's *logits*, `p − q`: CTC's gradient with the
/// teacher's posteriors in place of the occupancy of the label's alignments.
///
/// # Shapes
/// `student`, `teacher`: `[t, NUM_CLASSES]` log-softmax outputs. Returns `(loss, grad [t,
/// NUM_CLASSES])`.
pub fn distillation_loss_grad(student: &[f32], teacher: &[f32], t: usize) -> (f32, Vec<f32>) {
    let c = NUM_CLASSES;
    assert_eq!(student.len(), t * c, "student must be [t, NUM_CLASSES]");
    assert_eq!(teacher.len(), t * c, "teacher must be [t, NUM_CLASSES]");
    let mut loss = 0f32;
    let grad = student
        .iter()
        .zip(teacher)
        .map(|(&lp, &lq)| {
            let q = lq.exp();
            // q · (log q − log p), 0 where q is 0 (its limit).
            if q > 0.0 {
                loss += q * (lq - lp);
            }
            lp.exp() - q
        })
        .collect();
    (loss, grad)
}

/// Digits in the greedy reading of `log_probs` `[t, NUM_CLASSES]` (the most likely class at each
/// step, repeats merged, blanks dropped): the length a distillation target is scaled by, as a
/// CTC target is by its label's length.
pub fn greedy_length(log_probs: &[f32]) -> usize {
    let mut prev = BLANK;
    let mut n = 0;
    for row in log_probs.chunks_exact(NUM_CLASSES) {
        let k = (0..NUM_CLASSES)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .expect("classes");
        if k != BLANK && k != prev {
            n += 1;
        }
        prev = k;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::digit_of_class;
    use crate::read::ctc::{peaked, sequence_log_prob};

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
        crate::engine::layers::log_softmax_rows(&mut logits, NUM_CLASSES);
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

    /// Random logits `[t, NUM_CLASSES]` from a small LCG.
    fn logits(t: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..t * NUM_CLASSES)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0) * scale
            })
            .collect()
    }

    #[test]
    fn distillation_gradient_matches_finite_differences_and_vanishes_at_the_teacher() {
        let log_softmax = |mut v: Vec<f32>| {
            crate::engine::layers::log_softmax_rows(&mut v, NUM_CLASSES);
            v
        };
        // (steps, student's seed and scale, teacher's seed and scale): flat and peaked
        // distributions on either side, one step and several.
        for (t, ss, sk, ts, tk) in [
            (1, 1, 1.0, 2, 1.0),
            (5, 3, 0.5, 4, 6.0),
            (4, 5, 4.0, 6, 0.2),
            (7, 7, 2.0, 8, 2.0),
        ] {
            let z = logits(t, ss, sk);
            let q = log_softmax(logits(t, ts, tk));
            let (loss, grad) = distillation_loss_grad(&log_softmax(z.clone()), &q, t);
            assert!(loss >= 0.0, "KL is never negative: {loss}");
            for (i, &g) in grad.iter().enumerate() {
                let eps = 1e-2;
                let at = |d: f32| {
                    let mut v = z.clone();
                    v[i] += d;
                    distillation_loss_grad(&log_softmax(v), &q, t).0
                };
                let num = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (num - g).abs() < 2e-3,
                    "t {t} [{i}]: numeric {num} analytic {g}"
                );
            }
            // Taught its own posteriors, the student has nothing to learn.
            let p = log_softmax(z);
            let (loss, grad) = distillation_loss_grad(&p, &p, t);
            assert!(loss.abs() < 1e-6, "{loss}");
            assert!(grad.iter().all(|g| g.abs() < 1e-6));
        }
    }

    #[test]
    fn greedy_length_counts_digits_of_the_best_path() {
        // Best classes per step -> digits (repeats merged, blanks dropped).
        let cases: [(&[usize], usize); 5] = [
            (&[0, 0, 0], 0),
            (&[0, 2, 2, 0, 3, 0], 2),
            (&[2, 0, 2], 2),
            (&[4, 4, 4, 4], 1),
            (&[1, 2, 3, 4, 5, 6, 7], 7),
        ];
        for (path, want) in cases {
            assert_eq!(greedy_length(&peaked(path, 0.9)), want, "{path:?}");
        }
    }
}
