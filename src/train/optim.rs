//! The optimiser: Adam, the learning-rate schedule, gradient clipping, and the guard that skips
//! a step whose loss or gradient is not finite.

use rayon::prelude::*;

/// Adam with bias correction.
#[derive(Debug, Clone)]
pub struct Adam {
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
    /// Steps taken.
    pub t: u64,
}

impl Adam {
    /// Fresh state for `n` parameters.
    pub fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One update of `params` with `grad` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t as i32);
        let c2 = 1.0 - B2.powi(self.t as i32);
        params
            .par_chunks_mut(4096)
            .zip(grad.par_chunks(4096))
            .zip(self.m.par_chunks_mut(4096).zip(self.v.par_chunks_mut(4096)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    m[i] = B1 * m[i] + (1.0 - B1) * g[i];
                    v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
                    p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                }
            });
    }
}

/// One optimiser step with its guards: clip the gradient to `clip` (global norm), and update the
/// parameters only when the loss and the gradient are finite and some sample had an alignment.
/// Returns whether the step was applied; a skipped step leaves parameters and Adam state as
/// they were.
pub(crate) fn apply_step(
    params: &mut [f32],
    adam: &mut Adam,
    grad: &mut [f32],
    loss: f32,
    used: usize,
    clip: f32,
    lr: f32,
) -> bool {
    let norm = clip_grad_norm(grad, clip);
    if used == 0 || !loss.is_finite() || !norm.is_finite() {
        return false;
    }
    adam.step(params, grad, lr);
    true
}

/// Learning rate at `step` of `total`: linear warm-up over 300 steps, cosine decay to 5 %.
pub fn lr_at(peak: f32, step: u64, total: u64) -> f32 {
    let warm = 300u64.min(total / 10).max(1);
    if step < warm {
        return peak * (step + 1) as f32 / warm as f32;
    }
    let p = (step - warm) as f32 / (total.saturating_sub(warm)).max(1) as f32;
    peak * (0.05 + 0.95 * 0.5 * (1.0 + (std::f32::consts::PI * p.min(1.0)).cos()))
}

/// Scale `grad` so its L2 norm is at most `max`; returns the norm before clipping.
pub fn clip_grad_norm(grad: &mut [f32], max: f32) -> f32 {
    let norm = grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt() as f32;
    if norm > max && norm.is_finite() {
        let s = max / norm;
        grad.iter_mut().for_each(|g| *g *= s);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_warms_up_and_decays() {
        assert!(lr_at(1.0, 0, 10_000) < 0.01);
        assert!((lr_at(1.0, 300, 10_000) - 1.0).abs() < 1e-3);
        assert!((lr_at(1.0, 10_000, 10_000) - 0.05).abs() < 1e-3);
    }

    #[test]
    fn non_finite_steps_are_skipped_and_change_nothing() {
        let mut params = vec![1.0f32, -2.0, 0.5];
        let mut adam = Adam {
            m: vec![0.0; 3],
            v: vec![0.0; 3],
            t: 0,
        };
        // (loss, gradient, samples used, applied?)
        let cases = [
            (f32::NAN, vec![0.1, 0.1, 0.1], 4, false),
            (1.0, vec![f32::INFINITY, 0.0, 0.0], 4, false),
            (1.0, vec![f32::NAN, 0.0, 0.0], 4, false),
            (1.0, vec![0.1, 0.1, 0.1], 0, false),
            (1.0, vec![0.1, -0.2, 0.3], 4, true),
        ];
        for (loss, grad, used, want) in cases {
            let before = (params.clone(), adam.m.clone(), adam.t);
            let mut g = grad.clone();
            let applied = apply_step(&mut params, &mut adam, &mut g, loss, used, 5.0, 0.01);
            assert_eq!(applied, want, "loss {loss} grad {grad:?} used {used}");
            if !want {
                assert_eq!((params.clone(), adam.m.clone(), adam.t), before);
            } else {
                assert_ne!(params, before.0);
                assert!(params.iter().all(|p| p.is_finite()));
            }
        }
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let mut g = vec![3.0, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut small = vec![0.1, 0.1];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, vec![0.1, 0.1]);
    }
}
