//! The number localiser: a small CNN that looks at the whole photo, resized to a fixed
//! `height × width` (48 × 96 by default; the shipped one 64 × 128), and predicts the box around
//! the house number as fractions of the image (`x0, y0, x1, y1`, each in `[0, 1]`). The reader
//! then reads that box grown by 30 %, as the crop protocol reads the labelled box: the `locate`
//! protocol.
//!
//! Architecture (valid 3×3 convolutions, like the reader's): conv → ReLU → 2×2 max-pool, three
//! times, conv → ReLU, flatten (`[c4, h4, w4]` order, as ONNX's `Flatten`), linear to 4, sigmoid.
//!
//! With [`LocaliserConfig::bins`] the head predicts *profiles* instead of a box: for each of `bx`
//! column bands and `by` row bands of the image, the share of the band that the number's box covers
//! (sigmoid outputs, trained with binary cross-entropy on those soft targets).
//! [`profile_span`](crate::read::locate::profile_span) decodes them: the run of bands over ½ with
//! the most mass on each axis, its edges placed inside the bands by their coverage. A box regressor
//! that cannot decide whether a neighbouring number belongs to the box predicts edges between the
//! two answers; profiles can keep the number and leave the neighbour out. Forward and backward run
//! on the kernels of [`crate::engine::layers`]; the exported ONNX graph
//! ([`crate::export::localiser_to_onnx`]) and tract ([`crate::read::locate::Locator`]) compute the
//! same.

use crate::engine::layers::{self, conv3x3_stack, ConvShape};
use crate::read::locate::{decode, OUTPUTS, THRESHOLD};

/// Architecture of a [`Localiser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocaliserConfig {
    /// Input height in pixels.
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
    /// Output channels of the four convolutions.
    pub channels: [usize; 4],
    /// `[bx, by]`: predict column and row profiles over that many bands instead of the box
    /// (module docs). `None` (the shipped localiser, and every config made before profiles
    /// existed): the box head.
    #[serde(default)]
    pub bins: Option<[usize; 2]>,
}

impl Default for LocaliserConfig {
    /// A box head on a 48 × 96 input, 32/64/128/128 channels (249 k parameters). The shipped one is
    /// this with `bins: Some([32, 16])` on a 64 × 128 input (536 k parameters; `data/recipe.sh`).
    fn default() -> Self {
        LocaliserConfig {
            height: 48,
            width: 96,
            channels: [32, 64, 128, 128],
            bins: None,
        }
    }
}

impl LocaliserConfig {
    /// The four convolutions.
    pub fn convs(&self) -> [ConvShape; 4] {
        conv3x3_stack(self.channels)
    }

    /// Spatial sizes `(h, w)` of the inputs of conv1..conv4 and of conv4's output; `None` when
    /// the input is too small for the stack.
    pub fn sizes(&self) -> Option<[(usize, usize); 5]> {
        let step = |(h, w): (usize, usize), pool: bool| -> Option<(usize, usize)> {
            let (h, w) = (h.checked_sub(2)?, w.checked_sub(2)?);
            let (h, w) = if pool { (h / 2, w / 2) } else { (h, w) };
            (h > 0 && w > 0).then_some((h, w))
        };
        let s0 = (self.height, self.width);
        let s1 = step(s0, true)?;
        let s2 = step(s1, true)?;
        let s3 = step(s2, true)?;
        let s4 = step(s3, false)?;
        Some([s0, s1, s2, s3, s4])
    }

    /// Length of the flattened conv4 output: `c4 · h4 · w4`.
    pub fn features(&self) -> usize {
        let [.., (h, w)] = self.sizes().expect("a valid localiser geometry");
        self.channels[3] * h * w
    }

    /// Length of the head's output: [`OUTPUTS`] for a box, `bx + by` for profiles.
    pub fn outputs(&self) -> usize {
        self.bins.map_or(OUTPUTS, |[bx, by]| bx + by)
    }

    /// The box `(x0, y0, x1, y1)`, fractions of the image with `x0 ≤ x1` and `y0 ≤ y1`, from one
    /// image's head output, profiles decoded at the default threshold ([`THRESHOLD`]).
    ///
    /// # Shapes
    /// `out`: `[outputs()]` → `[4]`.
    pub fn decode(&self, out: &[f32]) -> [f32; 4] {
        decode(self.bins, THRESHOLD, out)
    }

    /// Names and shapes of all parameters, in storage order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for (i, s) in self.convs().iter().enumerate() {
            v.push((
                format!("conv{}.weight", i + 1),
                vec![s.co, s.ci, s.kh, s.kw],
            ));
            v.push((format!("conv{}.bias", i + 1), vec![s.co]));
        }
        v.push(("fc.weight".into(), vec![self.outputs(), self.features()]));
        v.push(("fc.bias".into(), vec![self.outputs()]));
        v
    }
}

/// A localiser: its config and all parameters in one flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Localiser {
    /// Architecture.
    pub config: LocaliserConfig,
    /// All parameters, concatenated in [`LocaliserConfig::param_specs`] order.
    pub params: Vec<f32>,
    offsets: Vec<(usize, usize)>,
}

/// The forward pass of a batch, with what its backward pass needs.
#[derive(Debug, Clone)]
pub struct LocForward {
    /// Batch size.
    pub n: usize,
    /// What conv1..conv4 and the three poolings keep for the backward pass.
    stack: layers::StackCache,
    /// Flattened features `[n, features]`.
    feat: Vec<f32>,
    /// Head outputs `[n, outputs]` after the sigmoid: box fractions, or column then row
    /// profiles ([`LocaliserConfig::outputs`]).
    pub outputs: Vec<f32>,
}

impl Localiser {
    /// A freshly initialised localiser: He-uniform convolutions, uniform `±1/√fan_in` head,
    /// zero biases.
    pub fn new(config: LocaliserConfig, seed: u64) -> Localiser {
        let params = layers::init_params(&config.param_specs(), seed);
        Localiser::from_params(config, params).expect("sizes follow the specs")
    }

    /// A localiser from a config and a flat parameter buffer; `None` when the geometry is
    /// invalid or the size does not match.
    pub fn from_params(config: LocaliserConfig, params: Vec<f32>) -> Option<Localiser> {
        config.sizes()?;
        let (offsets, total) = layers::param_offsets(&config.param_specs());
        (total == params.len()).then_some(Localiser {
            config,
            params,
            offsets,
        })
    }

    /// Parameter `idx` (in spec order) as a slice.
    pub fn param(&self, idx: usize) -> &[f32] {
        let (o, l) = self.offsets[idx];
        &self.params[o..o + l]
    }

    fn param_range(&self, idx: usize) -> std::ops::Range<usize> {
        let (o, l) = self.offsets[idx];
        o..o + l
    }

    /// Forward pass of a batch.
    ///
    /// # Shapes
    /// `x`: `[n, 3, height, width]` (each image normalised like a strip) → [`LocForward`] whose
    /// `outputs` is `[n, outputs]`.
    pub fn forward(&self, x: &[f32], n: usize) -> LocForward {
        let cfg = &self.config;
        let (h0, w0) = (cfg.height, cfg.width);
        assert_eq!(
            x.len(),
            n * 3 * h0 * w0,
            "input must be [n, 3, height, width]"
        );
        let s = cfg.convs();
        let sz = cfg.sizes().expect("checked at construction");
        let params: Vec<(&[f32], &[f32])> = (0..4)
            .map(|i| (self.param(2 * i), self.param(2 * i + 1)))
            .collect();
        let stack = layers::conv_stack(
            layers::to_channel_major(x, n, 3, h0 * w0),
            &s,
            &sz[..4],
            3,
            n,
            &params,
        );
        let (h4, w4) = sz[4];
        let c4 = cfg.channels[3];
        let f = c4 * h4 * w4;
        let hw = h4 * w4;
        let mut feat = vec![0f32; n * f];
        for c in 0..c4 {
            for b in 0..n {
                feat[b * f + c * hw..][..hw]
                    .copy_from_slice(&stack.acts[3][(c * n + b) * hw..][..hw]);
            }
        }
        let k = cfg.outputs();
        let mut outputs = vec![0f32; n * k];
        for row in outputs.chunks_exact_mut(k) {
            row.copy_from_slice(self.param(9));
        }
        layers::gemm(
            n,
            f,
            k,
            &feat,
            false,
            self.param(8),
            true,
            &mut outputs,
            1.0,
        );
        outputs
            .iter_mut()
            .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
        LocForward {
            n,
            stack,
            feat,
            outputs,
        }
    }

    /// Backward pass: `dout` `[n, outputs]` is the loss gradient w.r.t. the head's outputs (after
    /// the sigmoid). Returns the gradient of every parameter, flat, in storage order.
    pub fn backward(&self, fwd: &LocForward, dout: &[f32]) -> Vec<f32> {
        let dlogit: Vec<f32> = dout
            .iter()
            .zip(&fwd.outputs)
            .map(|(d, y)| d * y * (1.0 - y))
            .collect();
        self.backward_logits(fwd, &dlogit)
    }

    /// [`Localiser::backward`] from the gradient w.r.t. the head's logits (before the
    /// sigmoid), `[n, outputs]`: what [`profile_bce`] gives, exact where the sigmoid saturates.
    pub fn backward_logits(&self, fwd: &LocForward, dlogit: &[f32]) -> Vec<f32> {
        let cfg = &self.config;
        let n = fwd.n;
        let s = cfg.convs();
        let sz = cfg.sizes().expect("checked at construction");
        let k = cfg.outputs();
        let mut grad = vec![0f32; self.params.len()];
        let (h4, w4) = sz[4];
        let c4 = cfg.channels[3];
        let hw = h4 * w4;
        let f = c4 * hw;
        layers::gemm(
            k,
            n,
            f,
            dlogit,
            true,
            &fwd.feat,
            false,
            &mut grad[self.param_range(8)],
            1.0,
        );
        {
            let db = &mut grad[self.param_range(9)];
            for row in dlogit.chunks_exact(k) {
                db.iter_mut().zip(row).for_each(|(g, d)| *g += d);
            }
        }
        let mut dfeat = vec![0f32; n * f];
        layers::gemm(
            n,
            k,
            f,
            dlogit,
            false,
            self.param(8),
            false,
            &mut dfeat,
            0.0,
        );
        let mut dy = vec![0f32; c4 * n * hw];
        for c in 0..c4 {
            for b in 0..n {
                dy[(c * n + b) * hw..][..hw].copy_from_slice(&dfeat[b * f + c * hw..][..hw]);
            }
        }
        let weights: Vec<&[f32]> = (0..4).map(|i| self.param(2 * i)).collect();
        layers::conv_stack_backward(
            dy,
            &fwd.stack,
            &s,
            &sz[..4],
            3,
            n,
            &weights,
            &mut layers::conv_grads(&mut grad, &self.offsets, 4),
        );
        grad
    }
}

/// The mean of several localisers' outputs on one image, as
/// [`crate::export::localiser_ensemble_to_onnx`] computes it: every member's outputs and, with
/// `mirror`, its outputs on the image mirrored left to right with the column bands reversed
/// back. Members (at least one) share one [`LocaliserConfig`]'s input and outputs (`mirror`
/// needs profiles): [`crate::export::localiser_ensemble_mismatch`] says when they do not.
///
/// # Shapes
/// `x`: `[3, height, width]` (normalised like a strip) → `[outputs]`.
pub fn mean_outputs(locs: &[&Localiser], mirror: bool, x: &[f32]) -> Vec<f32> {
    let cfg = &locs[0].config;
    let (h, w) = (cfg.height, cfg.width);
    let flipped: Vec<f32> = (0..3 * h)
        .flat_map(|row| x[row * w..][..w].iter().rev().copied())
        .collect();
    let bx = cfg.bins.map_or(0, |[bx, _]| bx);
    let images: &[(&[f32], bool)] = if mirror {
        &[(x, false), (&flipped, true)]
    } else {
        &[(x, false)]
    };
    let mut sum = vec![0f32; cfg.outputs()];
    for l in locs {
        for &(img, back) in images {
            let out = l.forward(img, 1).outputs;
            for (i, s) in sum.iter_mut().enumerate() {
                *s += out[if back && i < bx { bx - 1 - i } else { i }];
            }
        }
    }
    let views = (locs.len() * images.len()) as f32;
    sum.iter().map(|s| s / views).collect()
}

/// Smooth-L1 (Huber) loss with transition `beta`, averaged over all `n · 4` coordinates, and its
/// gradient w.r.t. `pred`.
///
/// # Shapes
/// `pred`, `target`: `[n, 4]` → (loss, `[n, 4]` gradient).
pub fn smooth_l1(pred: &[f32], target: &[f32], beta: f32) -> (f32, Vec<f32>) {
    let k = pred.len().max(1) as f32;
    let mut loss = 0f64;
    let grad = pred
        .iter()
        .zip(target)
        .map(|(p, t)| {
            let d = p - t;
            if d.abs() < beta {
                loss += (0.5 * d * d / beta) as f64;
                d / beta / k
            } else {
                loss += (d.abs() - 0.5 * beta) as f64;
                d.signum() / k
            }
        })
        .collect();
    ((loss / k as f64) as f32, grad)
}

/// Soft profile targets of the box `(x0, y0, x1, y1)` (fractions of the image): for each of the
/// `bx` column bands, then each of the `by` row bands, the share of the band inside the box.
///
/// # Shapes
/// → `[bx + by]`.
pub fn profile_targets(b: [f32; 4], [bx, by]: [usize; 2]) -> Vec<f32> {
    let axis = |lo: f32, hi: f32, bins: usize| {
        (0..bins).map(move |j| {
            let (a, z) = (j as f32 / bins as f32, (j + 1) as f32 / bins as f32);
            ((hi.min(z) - lo.max(a)) * bins as f32).clamp(0.0, 1.0)
        })
    };
    axis(b[0].min(b[2]), b[0].max(b[2]), bx)
        .chain(axis(b[1].min(b[3]), b[1].max(b[3]), by))
        .collect()
}

/// Binary cross-entropy of sigmoid outputs `pred` against soft `target`s, averaged over all
/// values, and its gradient w.r.t. the logits (`(pred − target) / len`).
///
/// # Shapes
/// `pred`, `target`: `[n, k]` → (loss, `[n, k]` gradient).
pub fn profile_bce(pred: &[f32], target: &[f32]) -> (f32, Vec<f32>) {
    let k = pred.len().max(1) as f32;
    let mut loss = 0f64;
    let grad = pred
        .iter()
        .zip(target)
        .map(|(&p, &t)| {
            let q = p.clamp(1e-7, 1.0 - 1e-7) as f64;
            loss -= t as f64 * q.ln() + (1.0 - t as f64) * (1.0 - q).ln();
            (p - t) / k
        })
        .collect();
    ((loss / k as f64) as f32, grad)
}

/// Intersection over union of two `(x0, y0, x1, y1)` boxes (0 when either is empty).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::locate::profile_span;
    use crate::rng::Rng;

    fn tiny() -> LocaliserConfig {
        LocaliserConfig {
            height: 40,
            width: 46,
            channels: [3, 4, 5, 3],
            bins: None,
        }
    }

    /// `grad` (of `loss_of` at `loc`) against central differences along four random directions
    /// (ReLU and max-pool kinks average out over all parameters): within 2 %.
    fn directional_derivatives_agree(
        loc: &Localiser,
        grad: &[f32],
        loss_of: impl Fn(&Localiser) -> f64,
        rng: &mut Rng,
    ) {
        for trial in 0..4 {
            let dir: Vec<f32> = (0..loc.params.len()).map(|_| rng.normal()).collect();
            let eps = 1e-4f32;
            let shifted = |sign: f32| {
                let mut p = loc.clone();
                p.params
                    .iter_mut()
                    .zip(&dir)
                    .for_each(|(v, d)| *v += sign * eps * d);
                loss_of(&p)
            };
            let num = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
            let ana: f64 = grad.iter().zip(&dir).map(|(g, d)| (*g * *d) as f64).sum();
            let err = (num - ana).abs() / num.abs().max(ana.abs());
            assert!(err < 0.02, "trial {trial}: numeric {num} vs analytic {ana}");
        }
    }

    #[test]
    fn profile_targets_decode_to_their_box() {
        // (box, bins): the decoded box is the box, wherever its edges fall in their bands (each
        // edge's neighbouring bands covered from one side: boxes over a band wide).
        let cases: [([f32; 4], [usize; 2]); 6] = [
            ([0.2, 0.1, 0.7, 0.9], [32, 16]),
            ([0.0, 0.0, 1.0, 1.0], [32, 16]),
            ([0.31, 0.33, 0.40, 0.45], [32, 16]),
            ([0.5, 0.25, 0.75, 0.5], [8, 4]),
            ([0.7, 0.9, 0.2, 0.1], [10, 10]),
            ([0.01, 0.3, 0.99, 0.7], [7, 3]),
        ];
        for (b, bins) in cases {
            let cfg = LocaliserConfig {
                bins: Some(bins),
                ..LocaliserConfig::default()
            };
            let t = profile_targets(b, bins);
            assert_eq!(t.len(), cfg.outputs());
            assert!(t.iter().all(|v| (0.0..=1.0).contains(v)));
            let d = cfg.decode(&t);
            let want = [
                b[0].min(b[2]),
                b[1].min(b[3]),
                b[0].max(b[2]),
                b[1].max(b[3]),
            ];
            for (got, w) in d.iter().zip(want) {
                assert!((got - w).abs() < 1e-5, "{b:?} {bins:?}: decoded {d:?}");
            }
        }
    }

    #[test]
    fn profile_decoding_keeps_the_heaviest_run() {
        // (profile, threshold, span): two runs over the threshold, the heavier wins; none over
        // it, the top band.
        let cases: [(&[f32], f32, (f32, f32)); 8] = [
            (&[0.0, 0.9, 0.9, 0.0, 0.0, 1.0, 1.0, 1.0], 0.5, (0.625, 1.0)),
            (&[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.0], 0.5, (0.0, 0.25)),
            (&[0.1, 0.3, 0.2, 0.0], 0.5, (0.25, 0.5)),
            (&[0.0, 0.0, 0.0, 0.0], 0.5, (0.0, 0.25)),
            // A lower threshold takes in the edge bands a number's profile leaves below ½...
            (&[0.0, 0.45, 0.9, 0.45, 0.0], 0.5, (0.33, 0.67)),
            (&[0.0, 0.45, 0.9, 0.45, 0.0], 0.4, (0.31, 0.69)),
            // ...and may join two runs into one heavier than either.
            (
                &[0.8, 0.45, 0.8, 0.0, 0.0, 0.9, 0.9, 0.0],
                0.5,
                (0.6375, 0.8625),
            ),
            (
                &[0.8, 0.45, 0.8, 0.0, 0.0, 0.9, 0.9, 0.0],
                0.4,
                (0.025, 0.35),
            ),
        ];
        for (p, threshold, (lo, hi)) in cases {
            let (a, b) = profile_span(p, threshold);
            assert!(
                (a - lo).abs() < 1e-6 && (b - hi).abs() < 1e-6,
                "{p:?}: {a}, {b}"
            );
        }
    }

    #[test]
    fn profile_gradient_matches_finite_differences() {
        let cfg = LocaliserConfig {
            bins: Some([6, 4]),
            ..tiny()
        };
        let loc = Localiser::new(cfg, 4);
        let mut rng = Rng::new(11);
        let n = 2;
        let x: Vec<f32> = (0..n * 3 * 40 * 46).map(|_| rng.normal()).collect();
        let mut target = profile_targets([0.2, 0.1, 0.65, 0.8], [6, 4]);
        target.extend(profile_targets([0.5, 0.3, 0.9, 0.6], [6, 4]));
        let loss_of = |l: &Localiser| profile_bce(&l.forward(&x, n).outputs, &target).0 as f64;
        let fwd = loc.forward(&x, n);
        assert_eq!(fwd.outputs.len(), n * 10);
        let (_, d) = profile_bce(&fwd.outputs, &target);
        let grad = loc.backward_logits(&fwd, &d);
        directional_derivatives_agree(&loc, &grad, loss_of, &mut rng);
    }

    #[test]
    fn geometry_of_the_default_config() {
        let c = LocaliserConfig::default();
        assert_eq!(c.sizes().unwrap()[4], (2, 8));
        assert_eq!(c.features(), 128 * 16);
        assert!(LocaliserConfig { height: 20, ..c }.sizes().is_none());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Directional derivatives along random directions (ReLU and max-pool kinks average out
        // over all parameters), with beta = 1 so that the loss is quadratic in the boxes.
        let loc = Localiser::new(tiny(), 3);
        let mut rng = Rng::new(9);
        let n = 2;
        let x: Vec<f32> = (0..n * 3 * 40 * 46).map(|_| rng.normal()).collect();
        let target = [0.1, 0.2, 0.7, 0.9, 0.3, 0.1, 0.5, 0.6];
        let loss_of = |l: &Localiser| smooth_l1(&l.forward(&x, n).outputs, &target, 1.0).0 as f64;
        let fwd = loc.forward(&x, n);
        let (_, d) = smooth_l1(&fwd.outputs, &target, 1.0);
        let grad = loc.backward(&fwd, &d);
        directional_derivatives_agree(&loc, &grad, loss_of, &mut rng);
        // Gradient steps lower the loss.
        let mut p = loc.clone();
        p.params
            .iter_mut()
            .zip(&grad)
            .for_each(|(v, g)| *v -= 0.1 * g);
        assert!(loss_of(&p) < loss_of(&loc));
    }

    #[test]
    fn smooth_l1_table() {
        // (pred, target, beta, loss)
        let cases = [
            (0.5, 0.5, 0.1, 0.0),
            (0.55, 0.5, 0.1, 0.0125),
            (0.9, 0.5, 0.1, 0.35),
        ];
        for (p, t, b, want) in cases {
            let (l, _) = smooth_l1(&[p], &[t], b);
            assert!((l - want).abs() < 1e-6, "{p} {t} {b}: {l} != {want}");
        }
    }

    #[test]
    fn iou_table() {
        let cases = [
            ([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], 1.0),
            ([0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.5, 1.0], 1.0 / 3.0),
            ([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], 0.0),
        ];
        for (a, b, want) in cases {
            assert!((iou(a, b) - want).abs() < 1e-6);
        }
    }
}
