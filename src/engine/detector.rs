//! The number detector: a fully convolutional network that marks, for every 8 × 8 block of a
//! photo of any size, whether the block lies on a house number. Its work is shared across
//! positions the way the reader's window CNN shares it across windows, so one pass over a photo
//! (at each scale of a pyramid, [`crate::read::detect`]) finds numbers anywhere in it.
//!
//! Architecture (valid 3×3 convolutions, like the localiser's): conv → ReLU → 2×2 max-pool, three
//! times, then conv → ReLU twice, and a 1×1 convolution to one logit per cell (the sigmoid of which
//! is the cell's share of the number's box). The receptive field is 54 px; an input padded by
//! [`PAD`] pixels on each side, `8a + 2·PAD` by `8b + 2·PAD`, gives exactly `a × b` cells, cell
//! `(i, j)` covering input pixels `8i..8i+8` × `8j..8j+8` of the unpadded image.
//!
//! Forward and backward run on the kernels of [`crate::engine::layers`]; the exported ONNX graph
//! ([`crate::export::detector_to_onnx`], which pads inside the graph) and tract
//! ([`crate::read::detect::Detector`]) compute the same.

use crate::engine::layers::{self, conv3x3_stack, ConvShape};

/// Pixels of one output cell along each side.
pub const STRIDE: usize = 8;

/// Padding on each side that aligns cell `i` with input pixels `8i..8i+8` (module docs).
pub const PAD: usize = 23;

/// Architecture of a [`Detector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DetectorConfig {
    /// Output channels of the five 3×3 convolutions.
    pub channels: [usize; 5],
}

impl Default for DetectorConfig {
    /// 8/16/32/64/64 channels (61,521 parameters): about 1.7 k multiply-adds per input pixel.
    fn default() -> Self {
        DetectorConfig {
            channels: [8, 16, 32, 64, 64],
        }
    }
}

impl DetectorConfig {
    /// The five 3×3 convolutions.
    pub fn convs(&self) -> [ConvShape; 5] {
        conv3x3_stack(self.channels)
    }

    /// Spatial sizes `(h, w)` of the inputs of conv1..conv5 and of the head for an `h × w`
    /// input; `None` when the input is too small for the stack.
    pub fn sizes(&self, h: usize, w: usize) -> Option<[(usize, usize); 6]> {
        let step = |(h, w): (usize, usize), pool: bool| -> Option<(usize, usize)> {
            let (h, w) = (h.checked_sub(2)?, w.checked_sub(2)?);
            let (h, w) = if pool { (h / 2, w / 2) } else { (h, w) };
            (h > 0 && w > 0).then_some((h, w))
        };
        let s0 = (h, w);
        let s1 = step(s0, true)?;
        let s2 = step(s1, true)?;
        let s3 = step(s2, true)?;
        let s4 = step(s3, false)?;
        let s5 = step(s4, false)?;
        Some([s0, s1, s2, s3, s4, s5])
    }

    /// Names and shapes of all parameters, in storage order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let mut specs = Vec::new();
        for (i, s) in self.convs().iter().enumerate() {
            specs.push((
                format!("conv{}.weight", i + 1),
                vec![s.co, s.ci, s.kh, s.kw],
            ));
            specs.push((format!("conv{}.bias", i + 1), vec![s.co]));
        }
        specs.push(("head.weight".into(), vec![1, self.channels[4], 1, 1]));
        specs.push(("head.bias".into(), vec![1]));
        specs
    }
}

/// A detector: its config and all parameters in one flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    /// Architecture.
    pub config: DetectorConfig,
    /// All parameters, concatenated in [`DetectorConfig::param_specs`] order.
    pub params: Vec<f32>,
    offsets: Vec<(usize, usize)>,
}

/// The forward pass of a batch, with what its backward pass needs.
#[derive(Debug, Clone)]
pub struct DetForward {
    /// Batch size.
    pub n: usize,
    /// Input size `(h, w)`.
    pub size: (usize, usize),
    /// Cells `(ho, wo)` per image.
    pub cells: (usize, usize),
    /// What conv1..conv5 and the three poolings keep for the backward pass.
    stack: layers::StackCache,
    /// Cell logits `[n, ho, wo]` (before the sigmoid).
    pub logits: Vec<f32>,
}

impl Detector {
    /// A freshly initialised detector: He-uniform convolutions, uniform `±1/√fan_in` head, zero
    /// biases except the head's, which starts at −4 (cells are mostly background).
    pub fn new(config: DetectorConfig, seed: u64) -> Detector {
        let mut params = layers::init_params(&config.param_specs(), seed);
        *params.last_mut().expect("the head's bias is last") = -4.0;
        Detector::from_params(config, params).expect("sizes follow the specs")
    }

    /// A detector from a config and a flat parameter buffer; `None` when the size does not
    /// match.
    pub fn from_params(config: DetectorConfig, params: Vec<f32>) -> Option<Detector> {
        let (offsets, total) = layers::param_offsets(&config.param_specs());
        (total == params.len() && config.channels.iter().all(|&c| c > 0)).then_some(Detector {
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

    /// Forward pass of a batch of equal-size inputs (already padded: see the module docs).
    ///
    /// # Shapes
    /// `x`: `[n, 3, h, w]` → [`DetForward`] whose `logits` is `[n, ho, wo]`.
    ///
    /// # Panics
    /// When `x` is not `n · 3 · h · w` long or the input is too small for the stack.
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize) -> DetForward {
        assert_eq!(x.len(), n * 3 * h * w, "input must be [n, 3, h, w]");
        let s = self.config.convs();
        let sz = self.config.sizes(h, w).expect("input too small");
        let params: Vec<(&[f32], &[f32])> = (0..5)
            .map(|i| (self.param(2 * i), self.param(2 * i + 1)))
            .collect();
        let stack = layers::conv_stack(
            layers::to_channel_major(x, n, 3, h * w),
            &s,
            &sz[..5],
            3,
            n,
            &params,
        );
        let (ho, wo) = sz[5];
        let cells = n * ho * wo;
        let mut logits = vec![self.param(11)[0]; cells];
        layers::gemm(
            1,
            self.config.channels[4],
            cells,
            self.param(10),
            false,
            &stack.acts[4],
            false,
            &mut logits,
            1.0,
        );
        DetForward {
            n,
            size: (h, w),
            cells: (ho, wo),
            stack,
            logits,
        }
    }

    /// Backward pass from the loss gradient w.r.t. the cell logits, `[n, ho, wo]`. Returns the
    /// gradient of every parameter, flat, in storage order.
    pub fn backward_logits(&self, fwd: &DetForward, dlogit: &[f32]) -> Vec<f32> {
        let s = self.config.convs();
        let sz = self
            .config
            .sizes(fwd.size.0, fwd.size.1)
            .expect("checked by forward");
        let n = fwd.n;
        let c5 = self.config.channels[4];
        let cells = dlogit.len();
        let mut grad = vec![0f32; self.params.len()];
        layers::gemm(
            1,
            cells,
            c5,
            dlogit,
            false,
            &fwd.stack.acts[4],
            true,
            &mut grad[self.param_range(10)],
            1.0,
        );
        grad[self.param_range(11)][0] = layers::sum_f32(dlogit);
        let mut dy = vec![0f32; c5 * cells];
        layers::gemm(
            c5,
            1,
            cells,
            self.param(10),
            true,
            dlogit,
            false,
            &mut dy,
            0.0,
        );
        let weights: Vec<&[f32]> = (0..5).map(|i| self.param(2 * i)).collect();
        layers::conv_stack_backward(
            dy,
            &fwd.stack,
            &s,
            &sz[..5],
            3,
            n,
            &weights,
            &mut layers::conv_grads(&mut grad, &self.offsets, 5),
        );
        grad
    }
}

/// Binary cross-entropy of cell logits against soft targets in `[0, 1]`, averaged over the
/// cells whose `weight` is non-zero (weights scale each cell's term). Returns the loss and its
/// gradient w.r.t. the logits.
pub fn cell_bce(logits: &[f32], target: &[f32], weight: &[f32]) -> (f32, Vec<f32>) {
    let total: f32 = weight.iter().sum::<f32>().max(1e-6);
    let mut loss = 0f64;
    let grad = logits
        .iter()
        .zip(target)
        .zip(weight)
        .map(|((&z, &t), &w)| {
            // softplus(z) − t·z, stable for large |z|.
            let sp = z.max(0.0) + (-z.abs()).exp().ln_1p();
            loss += (w * (sp - t * z)) as f64;
            w * (1.0 / (1.0 + (-z).exp()) - t) / total
        })
        .collect();
    ((loss / total as f64) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn padded_inputs_give_one_cell_per_eight_pixels() {
        let cfg = DetectorConfig::default();
        for (a, b) in [(1, 1), (2, 5), (16, 16), (7, 30)] {
            let sz = cfg
                .sizes(STRIDE * a + 2 * PAD, STRIDE * b + 2 * PAD)
                .expect("fits");
            assert_eq!(sz[5], (a, b), "{a}x{b} cells");
        }
        assert!(cfg.sizes(2 * PAD, 2 * PAD).is_none());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let cfg = DetectorConfig {
            channels: [2, 3, 3, 4, 3],
        };
        let det = Detector::new(cfg, 3);
        let (n, h, w) = (2, 2 * PAD + 16, 2 * PAD + 8);
        let mut rng = Rng::new(9);
        let x: Vec<f32> = (0..n * 3 * h * w).map(|_| rng.f32() - 0.5).collect();
        let fwd = det.forward(&x, n, h, w);
        let cells = fwd.logits.len();
        let target: Vec<f32> = (0..cells).map(|i| (i % 3) as f32 / 2.0).collect();
        let weight = vec![1.0; cells];
        let (_, d) = cell_bce(&fwd.logits, &target, &weight);
        let grad = det.backward_logits(&fwd, &d);
        let loss_at = |p: &[f32]| {
            let m = Detector::from_params(cfg, p.to_vec()).unwrap();
            cell_bce(&m.forward(&x, n, h, w).logits, &target, &weight).0 as f64
        };
        // One parameter of each tensor (a ReLU kink can make one index fail; take a spread).
        let (offsets, _) = layers::param_offsets(&cfg.param_specs());
        let mut checked = 0;
        for &(o, l) in &offsets {
            for k in [o, o + l / 2, o + l - 1] {
                let eps = 1e-2f32;
                let mut p = det.params.clone();
                p[k] += eps;
                let up = loss_at(&p);
                p[k] -= 2.0 * eps;
                let down = loss_at(&p);
                let num = (up - down) / (2.0 * eps as f64);
                let ana = grad[k] as f64;
                if (num - ana).abs() <= 2e-3 + 0.05 * num.abs().max(ana.abs()) {
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= offsets.len() * 3 - 2,
            "{checked} of {} gradients match",
            offsets.len() * 3
        );
    }

    #[test]
    fn cell_bce_table() {
        // (logit, target, weight, expected loss)
        let cases: [(f32, f32, f32, f32); 4] = [
            (0.0, 0.5, 1.0, std::f32::consts::LN_2),
            (0.0, 1.0, 1.0, std::f32::consts::LN_2),
            (20.0, 1.0, 1.0, 0.0),
            (-20.0, 1.0, 1.0, 20.0),
        ];
        for (z, t, w, want) in cases {
            let (l, g) = cell_bce(&[z], &[t], &[w]);
            assert!((l - want).abs() < 1e-4, "{z} {t}: {l}");
            let s = 1.0 / (1.0 + (-z).exp());
            assert!((g[0] - (s - t)).abs() < 1e-6);
        }
        // A zero-weight cell adds nothing.
        let (l, g) = cell_bce(&[0.0, 5.0], &[1.0, 0.0], &[1.0, 0.0]);
        assert!((l - std::f32::consts::LN_2).abs() < 1e-5 && g[1] == 0.0);
    }
}
