//! `train --bf16`: the engine's bulk products in bfloat16 on AMX tiles give the loss and the
//! gradient that `f32` gives, to bfloat16's precision. Its own test binary (one process), since
//! the switch is process-wide and other tests' gradient checks need `f32`. Skipped where the CPU
//! has no AMX bfloat16 tiles.

use housenum::engine::crnn::{loss_and_grad, Crnn, ModelConfig};
use housenum::engine::{amx, layers};
use housenum::rng::Rng;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn bf16_gives_the_f32_loss_and_gradient_to_its_precision() {
    if !amx::available() {
        assert!(
            layers::set_bf16(true).is_err(),
            "no AMX: --bf16 must be refused"
        );
        eprintln!("skipped: no AMX bfloat16 tiles on this machine");
        return;
    }
    // (model, strip width): the default reader, and one with residual blocks and normalisation.
    let cases = [
        (ModelConfig::default(), 96),
        (
            ModelConfig {
                blocks: [1, 1],
                norm: true,
                pad: 12,
                ..ModelConfig::default()
            },
            64,
        ),
    ];
    for (config, w) in cases {
        let model = Crnn::new(config.clone(), 3);
        let n = 8;
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..n * 3 * config.height * w)
            .map(|_| rng.normal())
            .collect();
        let targets: Vec<Vec<u8>> = (0..n)
            .map(|_| (0..1 + rng.below(4)).map(|_| rng.below(10) as u8).collect())
            .collect();
        layers::set_bf16(false).unwrap();
        let (loss32, grad32, used32) = loss_and_grad(&model, &x, n, w, &targets);
        layers::set_bf16(true).unwrap();
        let (loss16, grad16, used16) = loss_and_grad(&model, &x, n, w, &targets);
        layers::set_bf16(false).unwrap();
        assert_eq!(used32, used16);
        assert!(
            ((loss16 - loss32) / loss32).abs() < 5e-3,
            "{config:?}: loss {loss16} vs {loss32}"
        );
        let cos = cosine(&grad32, &grad16);
        assert!(cos > 0.995, "{config:?}: gradient cosine {cos}");
        assert_ne!(
            grad32, grad16,
            "bf16 must have run: the gradients are identical"
        );
    }
}
