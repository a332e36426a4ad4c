//! Confidence calibration. The raw score of a reading is the model's log-probability of its
//! digits (summed over all CTC alignments, [`crate::read::ctc::sequence_log_prob`]), which ranks
//! readings well but is not the probability that the reading is right. Platt scaling maps it to
//! one: `p = σ(a · logit(raw) + b)`, with `a`, `b` fitted by logistic regression on held-out
//! readings (`housenum calibrate`). The logit is computed from the log-probability in f64
//! (`log p − log(1 − p)`), so readings with `p` within 1e-8 of 1 keep their order; it is clamped
//! to ±[`LOGIT_LIMIT`]. The map is monotone, so coverage at any accuracy is unchanged; it is
//! stored in the ONNX file's metadata under [`CALIBRATION_KEY`](crate::read::metadata::CALIBRATION_KEY) as JSON, so every runtime
//! (`onnx/read.py` too) applies the same one.

/// Platt scaling parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Slope on the logit of the raw confidence.
    pub a: f64,
    /// Offset.
    pub b: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration::IDENTITY
    }
}

/// Largest |logit| a raw score maps to (`p` within about 1e-15 of 0 or 1).
pub const LOGIT_LIMIT: f64 = 35.0;

/// `log(p / (1 − p))` of `p = exp(log_p)`, precise near `p = 1`, clamped to ±[`LOGIT_LIMIT`].
pub fn logit_of_log_prob(log_p: f64) -> f64 {
    if log_p.is_nan() {
        return -LOGIT_LIMIT;
    }
    let log_p = log_p.min(0.0);
    (log_p - (-log_p.exp_m1()).ln()).clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Calibration {
    /// The identity map (raw probabilities, up to the logit clamp).
    pub const IDENTITY: Calibration = Calibration { a: 1.0, b: 0.0 };

    /// Calibrated confidence of a reading whose raw log-probability is `log_p`.
    pub fn apply(&self, log_p: f64) -> f32 {
        sigmoid(self.a * logit_of_log_prob(log_p) + self.b) as f32
    }

    /// Fit by logistic regression (Newton's method, a tiny ridge for stability) on
    /// `(raw log-probability, read right)` pairs. With no pairs, or only right or only wrong
    /// ones, the fit still converges (the ridge keeps it finite).
    pub fn fit(pairs: &[(f64, bool)]) -> Calibration {
        let xs: Vec<(f64, f64)> = pairs
            .iter()
            .map(|&(lp, y)| (logit_of_log_prob(lp), f64::from(u8::from(y))))
            .collect();
        let (mut a, mut b) = (1.0f64, 0.0f64);
        const RIDGE: f64 = 1e-3;
        for _ in 0..100 {
            // Gradient and Hessian of the negative log-likelihood + ridge on (a − 1, b).
            let (mut ga, mut gb) = (RIDGE * (a - 1.0), RIDGE * b);
            let (mut haa, mut hab, mut hbb) = (RIDGE, 0.0, RIDGE);
            for &(z, y) in &xs {
                let p = sigmoid(a * z + b);
                let r = p - y;
                ga += r * z;
                gb += r;
                let w = (p * (1.0 - p)).max(1e-12);
                haa += w * z * z;
                hab += w * z;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() + db.abs() < 1e-10 {
                break;
            }
        }
        Calibration { a, b }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_is_monotone_and_identity_is_near_identity() {
        let c = Calibration { a: 0.7, b: 0.3 };
        let ps = [0.01f64, 0.2, 0.5, 0.8, 0.99];
        assert!(ps
            .windows(2)
            .all(|w| c.apply(w[0].ln()) < c.apply(w[1].ln())));
        for p in ps {
            assert!((Calibration::IDENTITY.apply(p.ln()) as f64 - p).abs() < 1e-6);
        }
    }

    #[test]
    fn logits_keep_their_order_next_to_certainty() {
        // (log p, logit): p within 1e-9 .. 1e-12 of 1 still differ; 0 and -inf hit the clamp.
        let cases = [
            (-1e-9f64, 1e-9f64.recip().ln()),
            (-1e-12, 1e-12f64.recip().ln()),
            ((0.5f64).ln(), 0.0),
            (0.0, LOGIT_LIMIT),
            (f64::NEG_INFINITY, -LOGIT_LIMIT),
            (f64::NAN, -LOGIT_LIMIT),
        ];
        for (lp, want) in cases {
            let got = logit_of_log_prob(lp);
            assert!(
                (got - want).abs() < 1e-3,
                "logit of exp({lp}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn degenerate_inputs_give_finite_fits() {
        for pairs in [vec![], vec![(-0.1, true); 10], vec![(-1.2, false); 10]] {
            let c = Calibration::fit(&pairs);
            assert!(c.a.is_finite() && c.b.is_finite(), "{c:?}");
        }
    }
}
