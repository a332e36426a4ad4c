//! How well confidences are calibrated: the expected calibration error, and that of a fit checked
//! on readings it did not see.

use crate::read::calibration::Calibration;

/// Expected calibration error over `bins` equal-width confidence bins: the mean over readings of
/// |accuracy of its bin − mean confidence of its bin|.
pub fn expected_calibration_error(pairs: &[(f32, bool)], bins: usize) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let mut sum = vec![(0f64, 0f64, 0usize); bins];
    for &(p, y) in pairs {
        let k = ((p as f64 * bins as f64) as usize).min(bins - 1);
        sum[k].0 += p as f64;
        sum[k].1 += f64::from(u8::from(y));
        sum[k].2 += 1;
    }
    sum.iter()
        .filter(|s| s.2 > 0)
        .map(|&(c, y, _)| (y - c).abs())
        .sum::<f64>()
        / pairs.len() as f64
}

/// Calibration error of a fit checked on data it did not see: the `(raw log-probability, read
/// right)` pairs are split in two by index parity, each half is calibrated with the fit on the
/// other, and the ECE of the pooled out-of-fold confidences is returned.
pub fn cross_fitted_error(pairs: &[(f64, bool)], bins: usize) -> f64 {
    let half = |r: usize| -> Vec<(f64, bool)> {
        pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == r)
            .map(|(_, p)| *p)
            .collect()
    };
    let (h0, h1) = (half(0), half(1));
    let (c0, c1) = (Calibration::fit(&h1), Calibration::fit(&h0));
    let pooled: Vec<(f32, bool)> = h0
        .iter()
        .map(|&(p, y)| (c0.apply(p), y))
        .chain(h1.iter().map(|&(p, y)| (c1.apply(p), y)))
        .collect();
    expected_calibration_error(&pooled, bins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn fit_recovers_a_known_map() {
        // Readings whose true correctness probability is σ(2·logit(raw) − 1).
        let truth = Calibration { a: 2.0, b: -1.0 };
        let mut rng = Rng::new(3);
        let pairs: Vec<(f64, bool)> = (0..20_000)
            .map(|_| {
                let raw = (rng.uniform(0.02, 0.999) as f64).ln();
                (raw, rng.f32() < truth.apply(raw))
            })
            .collect();
        let fit = Calibration::fit(&pairs);
        assert!(
            (fit.a - 2.0).abs() < 0.15 && (fit.b + 1.0).abs() < 0.15,
            "{fit:?}"
        );
        let raw: Vec<(f32, bool)> = pairs.iter().map(|&(lp, y)| (lp.exp() as f32, y)).collect();
        let raw_ece = expected_calibration_error(&raw, 10);
        let cal: Vec<(f32, bool)> = pairs.iter().map(|&(p, y)| (fit.apply(p), y)).collect();
        assert!(expected_calibration_error(&cal, 10) < 0.02);
        assert!(
            raw_ece > 0.05,
            "raw confidences are miscalibrated here ({raw_ece})"
        );
        assert!(cross_fitted_error(&pairs, 10) < 0.03);
    }
}
