//! housenum's CTC against PyTorch's `F.ctc_loss` on fixed inputs: losses and logit gradients
//! stored in `tests/fixtures/ctc_torch.json` (written by `benches/torch_train.py --ctc-fixture`).

use housenum::engine::ctc_loss::ctc_loss_grad;

#[test]
fn ctc_matches_pytorch_on_stored_cases() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctc_torch.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let t = case["t"].as_u64().unwrap() as usize;
        let labels: Vec<usize> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_u64().unwrap() as usize)
            .collect();
        let f = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (logits, want_grad) = (f("logits"), f("grad"));
        let want_loss = case["loss"].as_f64().unwrap();
        // log-softmax per step, in f64 then f32 like the engine's input.
        let mut lp = vec![0f32; logits.len()];
        for s in 0..t {
            let row = &logits[s * 11..(s + 1) * 11];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            for c in 0..11 {
                lp[s * 11 + c] = (row[c] - lse) as f32;
            }
        }
        let (loss, grad) = ctc_loss_grad(&lp, t, &labels).expect("an alignment exists");
        assert!(
            (loss as f64 - want_loss).abs() <= 1e-4 * want_loss.abs().max(1.0),
            "t={t} labels={labels:?}: loss {loss} vs PyTorch {want_loss}"
        );
        let worst = grad
            .iter()
            .zip(&want_grad)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-4,
            "t={t} labels={labels:?}: max |grad diff| {worst}"
        );
    }
}
