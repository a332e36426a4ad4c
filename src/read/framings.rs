//! Reading a box under several framings: the `crop` and `locate` protocols give the reader one
//! box, and a reading of that box grown 30 % depends on where exactly its edges fall (a digit
//! half outside, a neighbour half inside). [`FRAMINGS`] reads it grown less and more, wider and
//! taller, and shifted left and right; [`combine`] then scores every distinct reading under
//! *every* framing — the sum of its CTC log-probabilities over the framings, a product of
//! experts — and answers with the best. Its confidence is the mean of those log-probabilities:
//! a reading that only one framing believes ranks low. Chosen on the development split and the
//! training split (docs/experiments.md, "Reading several framings"); `--views 1` reads the
//! single 30 % box.
//! An ensemble's members ([`crate::Reader::members`]) are more experts of the same product:
//! every member's reading of every framing is scored under every member and framing.

use crate::read::ctc::{sequence_log_prob, Decoded};
use crate::read::{expand_region, Region};

/// The framings of a box `(grow x, grow y, shift)`: the box is first moved right by `shift`
/// times its width, then grown around its centre. The first is the single-view protocol's
/// region (grown 30 %).
pub const FRAMINGS: [(f32, f32, f32); 7] = [
    (1.3, 1.3, 0.0),
    (1.15, 1.15, 0.0),
    (1.5, 1.3, 0.0),
    (1.3, 1.5, 0.0),
    (1.5, 1.5, 0.0),
    (1.3, 1.3, -0.08),
    (1.3, 1.3, 0.08),
];

/// The default early exit ([`crate::Reader::set_early_exit`]): the other framings are read only
/// when the first one's reading has a calibrated confidence below this. Chosen on the development
/// split (docs/experiments.md, "Reading fewer framings"; 0.95 since rule E3, with v21).
pub const EARLY_EXIT: f32 = 0.95;

/// The regions of the first `views` [`FRAMINGS`] (at least one, at most all) of the box
/// `(left, top, right, bottom)` in an image of `size`, clamped to the image.
pub fn framings(rect: (f32, f32, f32, f32), views: usize, size: (u32, u32)) -> Vec<Region> {
    let (l, t, r, b) = rect;
    let w = r - l;
    FRAMINGS[..views.clamp(1, FRAMINGS.len())]
        .iter()
        .map(|&(fx, fy, shift)| expand_region((l + shift * w, t, r + shift * w, b), fx, fy, size))
        .collect()
}

/// One framing's reading with the log-probabilities it was decoded from.
///
/// # Shapes
/// `log_probs`: `[t, NUM_CLASSES]`.
#[derive(Debug, Clone)]
pub struct ViewReading {
    /// The greedy reading of this framing (raw confidence).
    pub decoded: Decoded,
    /// The model's log-probabilities for this framing's strip.
    pub log_probs: Vec<f32>,
    /// Time steps in `log_probs`.
    pub t: usize,
}

/// Choose among the readings of one box's framings: each distinct non-empty reading (or the
/// empty one when every framing read nothing) is scored by the sum over framings of its CTC
/// log-probability ([`sequence_log_prob`], at most 0 as in [`Decoded::log_prob`]); the highest wins, the earliest seen on ties.
/// Returns the index of the first framing that read it, and the mean of its log-probabilities
/// over the framings (f64 sums, in framing order).
///
/// # Panics
/// When `views` is empty.
pub fn combine(views: &[ViewReading]) -> (usize, f64) {
    assert!(!views.is_empty(), "combine needs at least one reading");
    if views.len() == 1 {
        return (0, views[0].decoded.log_prob);
    }
    let mut candidates: Vec<(usize, &[u8])> = Vec::new();
    for (i, v) in views.iter().enumerate() {
        let d = v.decoded.digits.as_slice();
        if !d.is_empty() && !candidates.iter().any(|c| c.1 == d) {
            candidates.push((i, d));
        }
    }
    if candidates.is_empty() {
        candidates.push((0, &[]));
    }
    let mut best: Option<(usize, f64)> = None;
    for &(i, digits) in &candidates {
        let total: f64 = views
            .iter()
            .map(|v| sequence_log_prob(&v.log_probs, v.t, 1, 0, digits).min(0.0))
            .sum();
        if best.is_none_or(|(_, s)| total > s) {
            best = Some((i, total));
        }
    }
    let (i, total) = best.expect("at least one candidate");
    (i, total / views.len() as f64)
}

/// [`combine`], returning the winning reading itself: the index of the first reading that
/// read it and its [`Decoded`] with `log_prob` set to the mean over `views` (unchanged when
/// there is one view). An ensemble's members reading one strip are combined this way too.
///
/// # Panics
/// When `views` is empty.
pub fn combine_into(views: Vec<ViewReading>) -> (usize, Decoded) {
    let (best, log_prob) = combine(&views);
    let mut d = views.into_iter().nth(best).expect("index in range").decoded;
    d.log_prob = log_prob;
    (best, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::NUM_CLASSES;
    use crate::read::ctc::greedy_decode;

    /// Log-probabilities of `t` steps, step `k` putting probability `p` on class `classes[k]`
    /// and the rest evenly on the others.
    fn steps(classes: &[usize], p: f32) -> Vec<f32> {
        let rest = (1.0 - p) / (NUM_CLASSES - 1) as f32;
        classes
            .iter()
            .flat_map(|&c| (0..NUM_CLASSES).map(move |k| if k == c { p.ln() } else { rest.ln() }))
            .collect()
    }

    fn view(classes: &[usize], p: f32) -> ViewReading {
        let log_probs = steps(classes, p);
        let t = classes.len();
        ViewReading {
            decoded: greedy_decode(&log_probs, t, 1, 0),
            log_probs,
            t,
        }
    }

    #[test]
    fn the_reading_most_framings_support_wins_with_its_mean_log_prob() {
        // Classes: 0 blank, d + 1 digit d. Two framings read 12 weakly, one reads 1 strongly.
        let views = [
            view(&[2, 0, 3], 0.5),
            view(&[2, 0, 3, 0], 0.5),
            view(&[2, 0, 0], 0.7),
        ];
        let texts: Vec<String> = views.iter().map(|v| v.decoded.text()).collect();
        assert_eq!(texts, ["12", "12", "1"]);
        let (i, mean) = combine(&views);
        assert_eq!(i, 0, "12 is supported by two framings");
        let want: f64 = views
            .iter()
            .map(|v| sequence_log_prob(&v.log_probs, v.t, 1, 0, &[1, 2]))
            .sum::<f64>()
            / 3.0;
        assert!((mean - want).abs() < 1e-9);
        // The strong single reading alone wins when the others are barely sure of 12.
        let views = [
            view(&[2, 0, 3], 0.15),
            view(&[2, 0, 0], 0.99),
            view(&[2, 0, 3], 0.15),
        ];
        assert_eq!(combine(&views).0, 1);
    }

    #[test]
    fn one_framing_is_the_plain_reading_and_empty_readings_lose() {
        let one = [view(&[2, 0, 3], 0.6)];
        assert_eq!(combine(&one), (0, one[0].decoded.log_prob));
        let views = [view(&[0, 0, 0], 0.9), view(&[4, 0, 0], 0.3)];
        assert_eq!(
            combine(&views).0,
            1,
            "a non-empty reading beats an empty one"
        );
        let blank = [view(&[0, 0], 0.9), view(&[0, 0, 0], 0.9)];
        assert_eq!(combine(&blank).0, 0);
    }

    #[test]
    fn framings_table() {
        let size = (200, 100);
        let rect = (50.0, 20.0, 150.0, 80.0);
        let all = framings(rect, 99, size);
        assert_eq!(all.len(), FRAMINGS.len());
        assert_eq!(framings(rect, 0, size).len(), 1);
        assert_eq!(all[0], expand_region(rect, 1.3, 1.3, size));
        // (x0, y0, x1, y1) of each framing of a 100 × 60 box.
        let want = [
            (35, 11, 165, 89),
            (42, 15, 158, 85),
            (25, 11, 175, 89),
            (35, 5, 165, 95),
            (25, 5, 175, 95),
            (27, 11, 157, 89),
            (43, 11, 173, 89),
        ];
        for (r, w) in all.iter().zip(want) {
            assert_eq!((r.x0, r.y0, r.x1, r.y1), w);
        }
        // Near an edge they are clamped, never empty.
        for r in framings((0.0, 0.0, 10.0, 100.0), 7, size) {
            assert!(r.x0 < r.x1 && r.x1 <= 200 && r.y1 <= 100);
        }
    }
}
