//! Parity: the training-side forward pass, tract on the exported ONNX, and onnxruntime agree.
#![cfg(feature = "train")]

mod common;

use housenum::data::svhn::{split_by_name, SvhnSet};
use housenum::engine::crnn::{log_probs, Crnn, ModelConfig};
use housenum::read::{self, Protocol, Strip};
use housenum::rng::Rng;
use housenum::train::checkpoint::Checkpoint;
use housenum::Reader;

/// tract vs the training engine, on [`max_diff`]'s scale.
const TOL: f32 = 1e-4;
/// tract vs onnxruntime: two different kernels; on random-noise strips the least likely classes
/// (log p ≈ −30) differ by ~1e-4, real images by less.
const ORT_TOL: f32 = 1e-3;

/// Largest difference between two log-probability tensors, absolute where `|b| ≤ 1` and relative
/// to `|b|` beyond (tract and the engine sum in different orders, and float32 rounding grows
/// with the magnitudes involved: on the shipped reader's validation strips every difference
/// over 6e-5 is at log p between −6.8 and −11.5, the largest 1.17e-4 at −6.78, 1.7e-5 of it; a
/// wrong weight or layout moves the likely classes by ≫ 1e-3).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// `model` with every residual block's gate set to `gate` (they start at 0, the identity).
fn with_gates(mut model: Crnn, gate: f32) -> Crnn {
    for (idx, (name, _)) in model.config.param_specs().iter().enumerate() {
        if name.ends_with(".gate") {
            let r = model.param_range(idx);
            model.params[r].fill(gate);
        }
    }
    model
}

/// `model` with its normalisations' scales, shifts and running statistics drawn away from the
/// identity (a fresh model's are 1, 0, 0, 1), so that folding them at export does something.
fn with_drawn_norms(mut model: Crnn, seed: u64) -> Crnn {
    let mut rng = Rng::new(seed);
    for (idx, (name, _)) in model.config.param_specs().iter().enumerate() {
        if !name.starts_with("bn") {
            continue;
        }
        let positive = name.ends_with(".weight") || name.ends_with(".running_var");
        let r = model.param_range(idx);
        for v in &mut model.params[r] {
            *v = if positive {
                rng.uniform(0.5, 2.0)
            } else {
                rng.uniform(-0.5, 0.5)
            };
        }
    }
    model
}

#[test]
fn random_model_exported_runs_the_same_in_tract() {
    // Unpadded and padded (the Pad node and the `housenum.pad` metadata), with the stretch
    // carried in the `housenum.stretch` metadata.
    // With residual blocks (Conv padded in height, Slice, Add; the gates multiplied into the
    // convolutions), and the window in the `housenum.window` metadata.
    // With batch normalisation, folded into the convolutions: tract against the engine's
    // inference (running statistics).
    for (pad, stretch, blocks, norm) in [
        (0, 1.0, [0, 0], false),
        (12, 1.4, [0, 0], false),
        (32, 1.4, [1, 2], false),
        (12, 1.4, [0, 0], true),
        (32, 1.4, [1, 2], true),
    ] {
        let cfg = ModelConfig {
            channels: [8, 12, 16, 20],
            hidden: 10,
            pad,
            stretch,
            blocks,
            norm,
            ..ModelConfig::default()
        };
        let model = with_drawn_norms(with_gates(Crnn::new(cfg.clone(), 42), 0.8), 3);
        let bytes = housenum::export::to_onnx_bytes(&model, &[]);
        let reader = Reader::from_bytes(&bytes, std::path::Path::new("<test>")).unwrap();
        assert_eq!(reader.geometry(), cfg.geometry());
        let mut rng = Rng::new(1);
        for (n, w) in [(1, 32), (1, 57), (3, 130), (2, 26)] {
            let x: Vec<f32> = (0..n * 3 * 32 * w).map(|_| rng.normal()).collect();
            let (got, t) = reader.log_probs(&x, n, w).unwrap();
            assert_eq!(t, cfg.steps(w));
            let want = log_probs(&model, &x, n, w);
            let d = max_diff(&got, &want);
            assert!(
                d < TOL,
                "pad {pad} blocks {blocks:?} norm {norm} n {n} w {w}: max |Δ| {d}"
            );
        }
    }
}

#[test]
fn random_ensemble_exported_runs_each_member_in_tract() {
    use housenum::export::{ensemble_mismatch, ensemble_to_onnx};
    use prost::Message;
    let cfg = |channels, hidden, pad| ModelConfig {
        channels,
        hidden,
        pad,
        stretch: 1.4,
        ..ModelConfig::default()
    };
    let members = [
        Crnn::new(cfg([8, 12, 16, 20], 10, 12), 1),
        Crnn::new(cfg([4, 8, 8, 12], 6, 12), 2),
        Crnn::new(cfg([8, 12, 16, 20], 10, 12), 3),
    ];
    let refs: Vec<&Crnn> = members.iter().collect();
    assert_eq!(ensemble_mismatch(&refs), None);
    let bytes = ensemble_to_onnx(&refs, &[]).encode_to_vec();
    let reader = Reader::from_bytes(&bytes, std::path::Path::new("<ensemble>")).unwrap();
    assert_eq!(reader.members(), 3);
    assert_eq!(reader.geometry(), members[0].config.geometry());
    let mut rng = Rng::new(5);
    for (n, w) in [(1, 32), (2, 75)] {
        let x: Vec<f32> = (0..n * 3 * 32 * w).map(|_| rng.normal()).collect();
        let (got, t) = reader.log_probs(&x, n, w).unwrap();
        assert_eq!(t, members[0].config.steps(w));
        assert_eq!(got.len(), 3 * t * n * 11, "[M, T, N, 11]");
        for (k, m) in members.iter().enumerate() {
            let want = log_probs(m, &x, n, w);
            let d = max_diff(&got[k * want.len()..][..want.len()], &want);
            assert!(d < TOL, "member {k} n {n} w {w}: max |Δ| {d}");
        }
    }
    // Members that read other strips cannot be one ensemble.
    for other in [cfg([4, 4, 4, 4], 4, 0), {
        let mut c = cfg([4, 4, 4, 4], 4, 12);
        c.stretch = 1.0;
        c
    }] {
        let odd = Crnn::new(other, 4);
        let why = ensemble_mismatch(&[&members[0], &odd]).expect("mismatch found");
        assert!(why.contains("member 1"), "{why}");
    }
}

#[test]
fn an_ensemble_of_a_model_with_itself_reads_as_the_model_alone() {
    use housenum::export::{ensemble_to_onnx, to_onnx_bytes};
    use prost::Message;
    let model = shipped().remove(0);
    let alone = Reader::from_bytes(&to_onnx_bytes(&model, &[]), std::path::Path::new("a")).unwrap();
    let twice = ensemble_to_onnx(&[&model, &model], &[]).encode_to_vec();
    let twice = Reader::from_bytes(&twice, std::path::Path::new("aa")).unwrap();
    assert_eq!(twice.members(), 2);
    for (path, _) in common::samples() {
        let img = read::load_image(&path).unwrap();
        for protocol in [Protocol::Locate, Protocol::Search, Protocol::Full] {
            let (ra, a) = alone.read_image(&img, protocol, &[]).unwrap();
            let (rb, b) = twice.read_image(&img, protocol, &[]).unwrap();
            let what = format!("{} {protocol:?}", path.display());
            assert_eq!((ra, &a.digits), (rb, &b.digits), "{what}");
            assert!(
                (a.log_prob - b.log_prob).abs() < 1e-6,
                "{what}: {a:?} {b:?}"
            );
        }
    }
}

/// The shipped model's weights: `onnx/housenum.safetensors`, or for an ensemble each member's
/// `onnx/housenum-K.safetensors` (what `housenum export --weights` writes).
fn shipped() -> Vec<Crnn> {
    let members = Reader::embedded().unwrap().members();
    (0..members)
        .map(|k| {
            let name = if members == 1 {
                "onnx/housenum.safetensors".to_string()
            } else {
                format!("onnx/housenum-{k}.safetensors")
            };
            Checkpoint::load(&common::root().join(name)).unwrap().model
        })
        .collect()
}

/// Largest |Δ log p| between the reader's members and `models` on `strips`, and how many
/// (strip, member) greedy readings differ.
fn compare_on(strips: &[Strip], models: &[Crnn], reader: &Reader) -> (f32, usize) {
    let mut worst = 0f32;
    let mut differ = 0;
    for s in strips {
        let (got, t) = reader.log_probs(&s.data, 1, s.width).unwrap();
        for (k, model) in models.iter().enumerate() {
            let want = log_probs(model, &s.data, 1, s.width);
            let got = &got[k * want.len()..][..want.len()];
            worst = worst.max(max_diff(got, &want));
            let a = housenum::read::ctc::greedy_decode(got, t, 1, 0).digits;
            let b = housenum::read::ctc::greedy_decode(&want, t, 1, 0).digits;
            differ += usize::from(a != b);
        }
    }
    (worst, differ)
}

#[test]
fn shipped_model_tract_matches_training_engine_on_validation() {
    let models = shipped();
    let reader = Reader::embedded().unwrap();
    let stretch = reader.geometry().stretch;
    for model in &models {
        assert_eq!(reader.geometry(), model.config.geometry());
    }
    let mut strips: Vec<Strip> = common::samples()
        .iter()
        .map(|(p, _)| read::preprocess_file(p, Protocol::Full, &[], stretch).unwrap())
        .collect();
    if let Some(svhn) = common::svhn() {
        let set = SvhnSet::open(&svhn.join("train")).unwrap();
        let (_, val) = split_by_name(&set.records, 0.1);
        for protocol in [Protocol::Crop, Protocol::Full] {
            for r in &val {
                strips.push(read::preprocess_file(&r.path, protocol, &r.boxes, stretch).unwrap());
            }
        }
    }
    let (worst, differ) = compare_on(&strips, &models, &reader);
    assert!(
        worst < TOL,
        "max |Δ log p| = {worst} over {} strips",
        strips.len()
    );
    assert_eq!(differ, 0, "decoded digits differ on {differ} strips");
}

/// onnxruntime on the same inputs, through `onnx/parity.py`: the shipped model, and a random
/// three-member ensemble (output `[M, T, N, 11]`). Skipped when python3 cannot import
/// onnxruntime, unless `HOUSENUM_REQUIRE_ORT=1` (CI), which makes that a failure.
#[test]
fn onnxruntime_matches_tract() {
    if !common::python_has("onnxruntime, numpy", "HOUSENUM_REQUIRE_ORT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ensemble = dir.path().join("ensemble.onnx");
    let cfg = |c| ModelConfig {
        channels: [c, 8, 12, 12],
        hidden: 6,
        pad: 12,
        stretch: 1.4,
        ..ModelConfig::default()
    };
    let members: Vec<Crnn> = (0..3).map(|k| Crnn::new(cfg(4 + k), k as u64)).collect();
    let refs: Vec<&Crnn> = members.iter().collect();
    let bytes = prost::Message::encode_to_vec(&housenum::export::ensemble_to_onnx(&refs, &[]));
    std::fs::write(&ensemble, bytes).unwrap();
    // A reader with residual blocks in both stages.
    let residual = dir.path().join("residual.onnx");
    let deep = ModelConfig {
        pad: 32,
        blocks: [1, 2],
        ..cfg(6)
    };
    let deep = with_gates(Crnn::new(deep, 7), -0.6);
    std::fs::write(&residual, housenum::export::to_onnx_bytes(&deep, &[])).unwrap();
    for path in [
        common::root().join("onnx/housenum.onnx"),
        ensemble,
        residual,
    ] {
        ort_matches_tract_on(&path, &Reader::from_path(&path).unwrap(), dir.path());
    }
}

fn ort_matches_tract_on(model: &std::path::Path, reader: &Reader, dir: &std::path::Path) {
    let mut rng = Rng::new(3);
    let mut cases = Vec::new();
    for (i, (p, _)) in common::samples().iter().enumerate() {
        let s = read::preprocess_file(p, Protocol::Full, &[], reader.geometry().stretch).unwrap();
        cases.push((s.data, s.width, i));
    }
    for w in [32, 77, 200] {
        cases.push(((0..3 * 32 * w).map(|_| rng.normal()).collect(), w, 100 + w));
    }
    let mut json = Vec::new();
    for (x, w, _) in &cases {
        let (lp, t) = reader.log_probs(x, 1, *w).unwrap();
        json.push(serde_json::json!({"width": w, "input": x, "steps": t, "log_probs": lp}));
    }
    let file = dir.join("cases.json");
    std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(common::root().join("onnx/parity.py"))
        .arg(model)
        .arg(&file)
        .arg(ORT_TOL.to_string())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {text}", model.display());
    assert!(text.contains(&format!("{} cases", cases.len())), "{text}");
}

#[test]
fn bad_geometry_metadata_is_an_error_naming_the_file_and_key() {
    use housenum::read::metadata::{PAD_KEY, STRETCH_KEY, WINDOW_KEY};
    use prost::Message;
    let model = Crnn::new(
        ModelConfig {
            channels: [4, 4, 4, 4],
            hidden: 4,
            ..ModelConfig::default()
        },
        1,
    );
    let path = std::path::Path::new("odd.onnx");
    for (key, value) in [
        (STRETCH_KEY, "wide"),
        (STRETCH_KEY, "0"),
        (STRETCH_KEY, "NaN"),
        (STRETCH_KEY, "100"),
        (PAD_KEY, "-1"),
        (WINDOW_KEY, "wide"),
        (WINDOW_KEY, "25"),
        (WINDOW_KEY, "100000"),
        // A window the graph does not have: its steps do not match.
        (WINDOW_KEY, "42"),
    ] {
        let proto = housenum::export::to_onnx(&model, &[]);
        let proto = housenum::export::with_metadata(&proto.encode_to_vec(), key, value).unwrap();
        let e = Reader::from_bytes(&proto, path).unwrap_err().to_string();
        assert!(
            e.contains("odd.onnx") && e.contains(key),
            "{key}={value}: {e}"
        );
    }
}

/// `onnx/read.py`'s verifier (its features and weights, which `data/fit_verifier.py` fits with)
/// scores every option that `housenum read --candidates` lists as the reader did: on the sample
/// plates and on phone-size photos of two of them and of a bare wall. Skipped when python3 cannot
/// import onnxruntime, unless `HOUSENUM_REQUIRE_ORT=1` (CI), which makes that a failure.
#[test]
fn read_py_scores_the_looks_options_as_housenum_read() {
    if !common::python_has("onnxruntime, numpy, PIL", "HOUSENUM_REQUIRE_ORT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<String> = common::samples()
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    let phones = [
        (Some(("sample-2.png", 1)), (570, 1000)),
        (Some(("sample-3.png", 1)), (660, 900)),
        (None, (0, 0)),
    ];
    for (k, (sample, at)) in phones.into_iter().enumerate() {
        let path = dir.path().join(format!("phone-{k}.png"));
        image::DynamicImage::ImageRgb32F(common::phone_photo(sample, at))
            .to_rgb8()
            .save(&path)
            .unwrap();
        paths.push(path.display().to_string());
    }
    let out = std::process::Command::new(common::bin())
        .args(["read", "--candidates"])
        .args(&paths)
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(
        code == 0 || code == 4,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = dir.path().join("candidates.jsonl");
    std::fs::write(&listing, &out.stdout).unwrap();
    let scored: usize = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["verifier"].is_number())
                .count()
        })
        .sum();
    assert!(scored >= 2, "the plates' candidates are scored");
    let check = std::process::Command::new("python3")
        .arg(common::root().join("data/fit_verifier.py"))
        .args(["--check", "0.01"])
        .arg(&listing)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `onnx/read.py` decodes the localiser's profiles at the band threshold its metadata names
/// (`housenum.localiser.threshold`), as `housenum read` does: the shipped localiser with a
/// threshold of 0.2 written into it, on the samples and, with SVHN, 40 training photos, where
/// that threshold changes some readings. Skipped like the test above without onnxruntime.
#[test]
fn read_py_decodes_profiles_at_the_metadata_threshold() {
    if !common::python_has("onnxruntime, numpy, PIL", "HOUSENUM_REQUIRE_ORT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().join("threshold.onnx");
    let bytes = housenum::export::with_metadata(
        housenum::read::locate::EMBEDDED_LOCALISER,
        housenum::read::metadata::LOC_THRESHOLD_KEY,
        "0.2",
    )
    .unwrap();
    std::fs::write(&loc, bytes).unwrap();
    let svhn = common::svhn();
    let paths = samples_and_training_photos();
    let stdout = |cmd: &mut std::process::Command| stdout_on(cmd, &paths);
    let ours = stdout(
        std::process::Command::new(common::bin())
            .args(["read", "--localiser"])
            .arg(&loc),
    );
    let theirs = stdout(
        std::process::Command::new("python3")
            .arg(common::root().join("onnx/read.py"))
            .arg("--localiser")
            .arg(&loc),
    );
    assert_eq!(
        ours, theirs,
        "housenum read vs onnx/read.py at threshold 0.2"
    );
    if svhn.is_some() {
        let default = stdout(std::process::Command::new(common::bin()).arg("read"));
        assert_ne!(ours, default, "a threshold of 0.2 changed no reading");
    }
}

/// `onnx/read.py --margin on` reads as `housenum read --margin on`: on the samples, and on the
/// samples and (with SVHN) 40 training photos cut at their digits' box (`eval --tight 0
/// --save-framed`), where the look in the margin changes some readings. Skipped like the tests
/// above without onnxruntime.
#[test]
fn read_py_looks_in_the_margin_as_housenum_read() {
    if !common::python_has("onnxruntime, numpy, PIL", "HOUSENUM_REQUIRE_ORT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = samples_and_training_photos();
    if let Some(svhn) = common::svhn() {
        let cut = dir.path().join("cut");
        let out = std::process::Command::new(common::bin())
            .arg("eval")
            .arg(svhn.join("train"))
            .args([
                "--split",
                "all",
                "--limit",
                "40",
                "--tight",
                "0",
                "-q",
                "--save-framed",
            ])
            .arg(&cut)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        paths.extend((1..=40).map(|i| cut.join(format!("{i}.png"))));
    }
    let stdout = |cmd: &mut std::process::Command| stdout_on(cmd, &paths);
    let ours = stdout(std::process::Command::new(common::bin()).args(["read", "--margin", "on"]));
    let theirs = stdout(
        std::process::Command::new("python3")
            .arg(common::root().join("onnx/read.py"))
            .args(["--margin", "on"]),
    );
    assert_eq!(ours, theirs, "housenum read vs onnx/read.py, --margin on");
    if common::svhn().is_some() {
        let without = stdout(std::process::Command::new(common::bin()).arg("read"));
        assert_ne!(ours, without, "the margin changed no reading");
    }
}

/// `onnx/read.py` reads a reader with residual blocks (a wider window, `housenum.window`, and
/// more padding) as `housenum read` does, under `search` (which maps time steps back to image
/// columns through the window) and `locate`: the shipped reader with two blocks added and their
/// gates opened a little, on the samples and, with SVHN, 40 training photos. Skipped like the
/// tests above without onnxruntime.
#[test]
fn read_py_reads_a_residual_reader_as_housenum_read() {
    if !common::python_has("onnxruntime, numpy, PIL", "HOUSENUM_REQUIRE_ORT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("residual.onnx");
    let deep = with_gates(shipped().remove(0).deepened([0, 2], 3).unwrap(), 0.05);
    assert_eq!(deep.config.window(), 26 + 32);
    std::fs::write(&model, housenum::export::to_onnx_bytes(&deep, &[])).unwrap();
    let paths = samples_and_training_photos();
    let stdout = |cmd: &mut std::process::Command| stdout_on(cmd, &paths);
    for protocol in ["search", "locate"] {
        let ours = stdout(
            std::process::Command::new(common::bin())
                .args(["read", "--protocol", protocol, "--model"])
                .arg(&model),
        );
        let theirs = stdout(
            std::process::Command::new("python3")
                .arg(common::root().join("onnx/read.py"))
                .args(["--protocol", protocol, "--model"])
                .arg(&model),
        );
        assert_eq!(ours, theirs, "{protocol}: housenum read vs onnx/read.py");
    }
}

/// The sample photos and, with SVHN, its first 40 training photos.
fn samples_and_training_photos() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<std::path::PathBuf> =
        common::samples().into_iter().map(|(p, _)| p).collect();
    if let Some(svhn) = common::svhn() {
        paths.extend((1..=40).map(|i| svhn.join(format!("train/{i}.png"))));
    }
    paths
}

/// What `cmd` prints reading `paths`, after checking that it exits 0 (all read) or 4 (some
/// photo holds no number).
fn stdout_on(cmd: &mut std::process::Command, paths: &[std::path::PathBuf]) -> String {
    let out = cmd.args(paths).output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 4)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
