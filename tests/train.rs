//! Training: reproducible from its seed; resuming from checkpoints, including after `kill -9`.
#![cfg(feature = "train")]

mod common;

use housenum::train::checkpoint::Checkpoint;

#[test]
fn training_resumes_from_its_checkpoint() {
    let Some(svhn) = common::svhn() else { return };
    let out = tempfile::tempdir().unwrap();
    let mut cfg = housenum::train::reader::TrainConfig {
        data: svhn.join("train"),
        out: out.path().to_path_buf(),
        epochs: 1,
        limit: Some(64),
        quiet: true,
        ..Default::default()
    };
    let first = housenum::train::reader::train(&cfg).unwrap();
    assert_eq!(first.epoch, 1);
    let after_one = Checkpoint::load(&out.path().join("last.safetensors")).unwrap();
    cfg.epochs = 2;
    let second = housenum::train::reader::train(&cfg).unwrap();
    assert_eq!(second.epoch, 2);
    assert_eq!(second.history.len(), 2);
    assert_eq!(second.step, 2 * first.step);
    assert_eq!(second.history[0].loss, first.history[0].loss);
    let after_two = Checkpoint::load(&out.path().join("last.safetensors")).unwrap();
    assert_ne!(after_one.model.params, after_two.model.params);
    assert!(out.path().join("curve.png").is_file() && out.path().join("history.json").is_file());
}

#[test]
fn online_training_learns_the_teachers_sure_readings_and_resumes_with_its_teacher() {
    // The shipped reader as the start: its moving average reads most unlabelled photos surely,
    // so some are trained on; the teacher is saved each epoch and taken up again on resuming.
    let Some(svhn) = common::svhn() else { return };
    let out = tempfile::tempdir().unwrap();
    let listing = out.path().join("unlabelled.tsv");
    let mut rows = String::new();
    for i in 0..48 {
        // Digits and confidence are ignored; every row counts, `no number` too.
        let path = svhn.join("unlabeled").join(format!("{i:06}.png"));
        let reading = if i % 2 == 0 {
            "no number\t0.1"
        } else {
            "7\t0.99"
        };
        rows += &format!("{}\t{reading}\n", path.display());
    }
    std::fs::write(&listing, rows).unwrap();
    let mut cfg = housenum::train::reader::TrainConfig {
        data: svhn.join("train"),
        out: out.path().join("run"),
        epochs: 1,
        limit: Some(32),
        lr: 1e-4,
        init: Some(common::root().join("onnx/housenum.onnx")),
        online: Some(listing),
        online_threshold: 0.5,
        model: housenum::engine::crnn::ModelConfig {
            pad: 12,
            stretch: 1.4,
            ..Default::default()
        },
        quiet: true,
        ..Default::default()
    };
    let first = housenum::train::reader::train(&cfg).unwrap();
    let (seen, kept) = first.history[0].online.unwrap();
    assert_eq!(seen, 48);
    assert!(kept > 0 && kept <= 48, "kept {kept}");
    // 32 labelled + the kept ones, in batches of 32.
    assert_eq!(first.step as usize, (32 + kept).div_ceil(32));
    let run = out.path().join("run");
    let model = Checkpoint::load(&run.join("last.safetensors"))
        .unwrap()
        .model;
    let teacher = Checkpoint::load(&run.join("teacher.safetensors")).unwrap();
    assert_eq!(teacher.state.epoch, 1);
    assert_ne!(
        teacher.model.params, model.params,
        "the average lags the model"
    );
    cfg.epochs = 2;
    let second = housenum::train::reader::train(&cfg).unwrap();
    assert_eq!(second.history.len(), 2);
    assert_eq!(second.history[1].online.unwrap().0, 48);
    let teacher2 = Checkpoint::load(&run.join("teacher.safetensors")).unwrap();
    assert_eq!(teacher2.state.epoch, 2);
    assert_ne!(teacher2.model.params, teacher.model.params);
}

#[test]
fn the_same_seed_trains_the_same_weights() {
    // Reproducible from its seed: two runs of one configuration (padding, stretch and
    // recombination included) end with identical weights; another seed does not.
    let Some(svhn) = common::svhn() else { return };
    let run = |seed: u64| {
        let out = tempfile::tempdir().unwrap();
        let cfg = housenum::train::reader::TrainConfig {
            data: svhn.join("train"),
            out: out.path().to_path_buf(),
            epochs: 1,
            limit: Some(64),
            seed,
            recombine_prob: 0.3,
            model: housenum::engine::crnn::ModelConfig {
                pad: 12,
                stretch: 1.4,
                channels: [8, 8, 16, 16],
                hidden: 16,
                ..Default::default()
            },
            quiet: true,
            ..Default::default()
        };
        housenum::train::reader::train(&cfg).unwrap();
        Checkpoint::load(&out.path().join("last.safetensors"))
            .unwrap()
            .model
    };
    let (a, b, c) = (run(5), run(5), run(6));
    assert_eq!((a.config.pad, a.config.stretch), (12, 1.4));
    assert_eq!(a.params, b.params);
    assert_ne!(a.params, c.params);
}

#[test]
fn kill_nine_during_training_loses_at_most_one_epoch() {
    let Some(svhn) = common::svhn() else { return };
    let out = tempfile::tempdir().unwrap();
    let args = |epochs: &str| {
        vec![
            "train".to_string(),
            "--data".into(),
            svhn.join("train").display().to_string(),
            "--out".into(),
            out.path().display().to_string(),
            "--limit".into(),
            "64".into(),
            "--epochs".into(),
            epochs.into(),
            "-q".into(),
        ]
    };
    let ck = out.path().join("last.safetensors");
    let mut child = std::process::Command::new(common::bin())
        .args(args("40"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // Wait for a few epochs to be checkpointed, then kill without warning.
    loop {
        if let Ok(c) = Checkpoint::load(&ck) {
            if c.state.epoch >= 3 {
                break;
            }
        }
        assert!(started.elapsed().as_secs() < 120, "no checkpoint written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = Checkpoint::load(&ck).expect("the checkpoint survives a kill -9");
    let done = before.state.epoch;
    assert!((3..40).contains(&done), "killed after {done} epochs");
    // Resume with the same command: it continues from the checkpoint and finishes.
    let argv = args("40");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (code, _, err) = common::run(&argv, None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("epoch {done} done")), "{err}");
    let after = Checkpoint::load(&ck).unwrap();
    assert_eq!(after.state.epoch, 40);
    let epochs: Vec<usize> = after.state.history.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, (1..=40).collect::<Vec<_>>());
    assert_eq!(
        after.state.history[..done]
            .iter()
            .map(|e| e.loss)
            .collect::<Vec<_>>(),
        before
            .state
            .history
            .iter()
            .map(|e| e.loss)
            .collect::<Vec<_>>()
    );
}

#[test]
fn distillation_brings_the_student_to_the_teachers_posteriors_and_refuses_other_steps() {
    // A fresh student taught the shipped reader's posteriors of 48 unlabelled photos (8 labelled
    // photos beside them): its divergence from the teacher on those photos, unaugmented, falls.
    let Some(svhn) = common::svhn() else { return };
    use housenum::engine::crnn::{Crnn, ModelConfig};
    let out = tempfile::tempdir().unwrap();
    let listing = out.path().join("unlabelled.tsv");
    let paths: Vec<_> = (0..48)
        .map(|i| svhn.join("unlabeled").join(format!("{i:06}.png")))
        .collect();
    let rows: String = paths
        .iter()
        .map(|p| format!("{}\tno number\t0.1\n", p.display()))
        .collect();
    std::fs::write(&listing, rows).unwrap();
    let shipped = common::root().join("onnx/housenum.onnx");
    let student = ModelConfig {
        pad: 12,
        stretch: 1.4,
        ..Default::default()
    };
    let cfg = housenum::train::reader::TrainConfig {
        data: svhn.join("train"),
        out: out.path().join("run"),
        epochs: 10,
        batch_size: 8,
        limit: Some(8),
        distil: Some(listing.clone()),
        teacher: Some(shipped.clone()),
        model: student.clone(),
        quiet: true,
        ..Default::default()
    };
    let teacher =
        housenum::export::crnn_from_onnx(&std::fs::read(&shipped).unwrap(), &shipped).unwrap();
    let strips: Vec<_> = paths
        .iter()
        .map(|p| {
            let img = housenum::read::load_image(p).unwrap();
            let (w, h) = img.dimensions();
            housenum::read::strip_from_region(&img, housenum::read::Region::full(w, h), 1.4)
        })
        .collect();
    // Mean over strips and steps of KL(teacher || model).
    let divergence = |m: &Crnn| {
        let (mut sum, mut steps) = (0f64, 0usize);
        for s in &strips {
            let q = teacher.forward(&s.data, 1, s.width).log_probs;
            let p = m.forward(&s.data, 1, s.width).log_probs;
            sum += q
                .iter()
                .zip(&p)
                .map(|(&lq, &lp)| (lq.exp() * (lq - lp)) as f64)
                .sum::<f64>();
            steps += q.len() / 11;
        }
        sum / steps as f64
    };
    let before = divergence(&Crnn::new(student.clone(), cfg.seed));
    let state = housenum::train::reader::train(&cfg).unwrap();
    // 8 labelled + 48 taught, in batches of 8, every epoch: nothing is left out.
    assert_eq!(state.step, 10 * 7);
    let after = divergence(
        &Checkpoint::load(&out.path().join("run/last.safetensors"))
            .unwrap()
            .model,
    );
    // The control: as many steps on the labelled photos alone (measured: 2.32 -> 0.80 distilled,
    // 1.08 for the control).
    let control_cfg = housenum::train::reader::TrainConfig {
        out: out.path().join("control"),
        epochs: 70,
        distil: None,
        teacher: None,
        ..cfg.clone()
    };
    housenum::train::reader::train(&control_cfg).unwrap();
    let control = divergence(
        &Checkpoint::load(&out.path().join("control/last.safetensors"))
            .unwrap()
            .model,
    );
    assert!(
        after < 0.5 * before && after < 0.85 * control,
        "KL to the teacher {before:.3} -> {after:.3} (control {control:.3})"
    );

    // Refused: a teacher with other steps (no padding), a listing without a teacher, and a
    // teacher without a listing; each before anything is written.
    let refusals = [
        (
            Some(listing.clone()),
            Some(shipped.clone()),
            ModelConfig::default(),
            "the same steps",
        ),
        (
            Some(listing.clone()),
            None,
            student.clone(),
            "needs a teacher",
        ),
        (
            None,
            Some(shipped.clone()),
            student.clone(),
            "a teacher is for distillation",
        ),
    ];
    for (distil, teacher, model, says) in refusals {
        let run = out.path().join("refused");
        let cfg = housenum::train::reader::TrainConfig {
            out: run.clone(),
            distil,
            teacher,
            model,
            ..cfg.clone()
        };
        let err = housenum::train::reader::train(&cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert!(!run.join("last.safetensors").exists());
    }
}

#[test]
fn out_of_range_training_options_are_refused() {
    let out = tempfile::tempdir().unwrap();
    // (option, bad values, what the message says)
    let cases = [
        (
            "--stretch",
            &["0", "-1", "NaN", "9", "wide"][..],
            "0.25 and 8",
        ),
        (
            "--loose",
            &["-0.1", "1.5", "NaN", "half"][..],
            "between 0 and 1",
        ),
    ];
    for (flag, bad, says) in cases {
        for v in bad {
            let o = std::process::Command::new(common::bin())
                .args(["train", "--epochs", "1", &format!("{flag}={v}"), "--out"])
                .arg(out.path())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{flag} {v}: {err}");
            assert!(err.contains(flag) && err.contains(says), "{err}");
        }
    }
    assert!(!out.path().join("last.safetensors").exists());
}

#[test]
fn widen_grows_an_init_model_and_refuses_to_shrink_it() {
    let Some(svhn) = common::svhn() else { return };
    let small = tempfile::tempdir().unwrap();
    let model = |c: [usize; 4], hidden: usize| housenum::engine::crnn::ModelConfig {
        channels: c,
        hidden,
        pad: 4,
        ..Default::default()
    };
    let base = housenum::train::reader::TrainConfig {
        data: svhn.join("train"),
        out: small.path().to_path_buf(),
        epochs: 1,
        limit: Some(32),
        model: model([8, 8, 16, 16], 16),
        quiet: true,
        ..Default::default()
    };
    housenum::train::reader::train(&base).unwrap();
    let init = small.path().join("last.safetensors");
    // (channels, hidden, grows?)
    let cases = [
        ([8, 12, 16, 24], 20, true),
        ([8, 8, 16, 16], 12, false),
        ([4, 8, 16, 16], 16, false),
    ];
    for (c, h, grows) in cases {
        let out = tempfile::tempdir().unwrap();
        let cfg = housenum::train::reader::TrainConfig {
            out: out.path().to_path_buf(),
            init: Some(init.clone()),
            widen: true,
            model: model(c, h),
            ..base.clone()
        };
        match housenum::train::reader::train(&cfg) {
            Ok(_) => {
                assert!(grows, "{c:?}/{h} should be refused");
                let ck = Checkpoint::load(&out.path().join("last.safetensors")).unwrap();
                assert_eq!((ck.model.config.channels, ck.model.config.hidden), (c, h));
            }
            Err(e) => {
                assert!(!grows, "{c:?}/{h}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains("cannot widen") && msg.contains("last.safetensors"),
                    "{msg}"
                );
            }
        }
    }
}

#[test]
fn blocks_deepen_an_init_model_and_are_never_removed() {
    // `--blocks` on an initial model adds residual blocks (the pad grows with the window); the
    // exported reader names its window in its metadata and reads; asking for fewer blocks than
    // a model has, or reviving channels of a model with blocks, is refused naming the file.
    let Some(svhn) = common::svhn() else { return };
    let model = |blocks: [usize; 2]| {
        let mut m = housenum::engine::crnn::ModelConfig {
            channels: [8, 8, 16, 16],
            hidden: 16,
            pad: 4,
            blocks,
            ..Default::default()
        };
        m.pad += m.extra_pad();
        m
    };
    let plain = tempfile::tempdir().unwrap();
    let base = housenum::train::reader::TrainConfig {
        data: svhn.join("train"),
        out: plain.path().to_path_buf(),
        epochs: 1,
        limit: Some(32),
        model: model([0, 0]),
        quiet: true,
        ..Default::default()
    };
    housenum::train::reader::train(&base).unwrap();
    let deep = tempfile::tempdir().unwrap();
    let cfg = housenum::train::reader::TrainConfig {
        out: deep.path().to_path_buf(),
        init: Some(plain.path().join("last.safetensors")),
        model: model([1, 1]),
        ..base.clone()
    };
    housenum::train::reader::train(&cfg).unwrap();
    let ck = Checkpoint::load(&deep.path().join("last.safetensors")).unwrap();
    assert_eq!(ck.model.config, model([1, 1]));
    assert_eq!(ck.model.config.pad, 4 + 4 + 8);
    let bytes = housenum::export::to_onnx_bytes(&ck.model, &[]);
    let reader = housenum::Reader::from_bytes(&bytes, std::path::Path::new("deep.onnx")).unwrap();
    assert_eq!(reader.geometry().window, 26 + 8 + 16);
    assert_eq!(reader.geometry(), ck.model.config.geometry());
    let (path, _) = &common::samples()[0];
    reader.read_file(path).unwrap();
    let init = deep.path().join("last.safetensors");
    for (blocks, revive, says) in [([0, 1], false, "--blocks"), ([1, 1], true, "--revive")] {
        let out = tempfile::tempdir().unwrap();
        let cfg = housenum::train::reader::TrainConfig {
            out: out.path().to_path_buf(),
            init: Some(init.clone()),
            model: model(blocks),
            revive,
            ..base.clone()
        };
        let e = housenum::train::reader::train(&cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{blocks:?} revive {revive}: {e}");
        if !revive {
            assert!(e.contains("last.safetensors"), "{e}");
        }
    }
}

#[test]
fn normalised_training_keeps_running_statistics_and_exports_them_folded() {
    // `--norm`: the checkpoint carries each normalisation's scale, shift and running statistics,
    // moved by training; the exported graph has no trace of them (the config it carries says
    // so) and reads; a run that resumes keeps them; `--norm` on a model trained without it and
    // `--revive` of a normalised model are refused naming the file.
    let Some(svhn) = common::svhn() else { return };
    let model = |norm: bool| housenum::engine::crnn::ModelConfig {
        channels: [8, 8, 16, 16],
        hidden: 16,
        pad: 4,
        norm,
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let base = housenum::train::reader::TrainConfig {
        data: svhn.join("train"),
        out: out.path().to_path_buf(),
        epochs: 1,
        limit: Some(48),
        model: model(true),
        quiet: true,
        ..Default::default()
    };
    housenum::train::reader::train(&base).unwrap();
    let ck = Checkpoint::load(&out.path().join("last.safetensors")).unwrap();
    assert!(ck.model.config.norm);
    for (name, start) in [("bn1.running_mean", 0.0), ("bn4.running_var", 1.0)] {
        let v = ck.model.param_by_name(name).expect(name);
        assert!(v.iter().any(|&x| x != start), "{name} never moved: {v:?}");
    }
    let bytes = housenum::export::to_onnx_bytes(&ck.model, &[]);
    let back = housenum::export::crnn_from_onnx(
        &housenum::export::with_metadata(
            &bytes,
            housenum::export::CONFIG_KEY,
            &serde_json::to_string(&ck.model.config).unwrap(),
        )
        .unwrap(),
        std::path::Path::new("n.onnx"),
    )
    .unwrap();
    assert!(
        !back.config.norm,
        "the graph holds the normalisations folded"
    );
    assert_eq!(back.params, ck.model.folded().params);
    let reader = housenum::Reader::from_bytes(&bytes, std::path::Path::new("n.onnx")).unwrap();
    let (path, _) = &common::samples()[0];
    reader.read_file(path).unwrap();
    let resumed = housenum::train::reader::TrainConfig {
        epochs: 2,
        ..base.clone()
    };
    housenum::train::reader::train(&resumed).unwrap();
    let again = Checkpoint::load(&out.path().join("last.safetensors")).unwrap();
    assert_eq!(again.state.epoch, 2);
    assert_ne!(
        again.model.param_by_name("bn2.running_mean"),
        ck.model.param_by_name("bn2.running_mean")
    );
    let plain = tempfile::tempdir().unwrap();
    housenum::train::reader::train(&housenum::train::reader::TrainConfig {
        out: plain.path().to_path_buf(),
        model: model(false),
        ..base.clone()
    })
    .unwrap();
    for (init, norm, revive, says) in [
        (plain.path(), true, false, "--norm"),
        (out.path(), true, true, "--revive"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = housenum::train::reader::TrainConfig {
            out: dir.path().to_path_buf(),
            init: Some(init.join("last.safetensors")),
            model: model(norm),
            revive,
            ..base.clone()
        };
        let e = housenum::train::reader::train(&cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
        if says == "--norm" {
            assert!(e.contains("last.safetensors"), "{e}");
        }
    }
}

#[test]
fn bench_times_a_checkpoint_flushing_and_keeping_subnormals() {
    // `housenum bench --checkpoint` starts from a checkpoint's weights and Adam moments (here
    // a small model whose first moments are subnormal, as a dead channel's become) and reports
    // both timings and their ratio; an unreadable checkpoint is an error naming the file.
    let dir = tempfile::tempdir().unwrap();
    let config = housenum::engine::crnn::ModelConfig {
        channels: [4, 4, 8, 8],
        hidden: 8,
        ..Default::default()
    };
    let model = housenum::engine::crnn::Crnn::new(config, 3);
    let n = model.num_params();
    let ck = Checkpoint {
        model,
        adam_m: vec![1e-40; n],
        adam_v: vec![1e-8; n],
        state: Default::default(),
    };
    let path = dir.path().join("last.safetensors");
    ck.save(&path).unwrap();
    let bench = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_housenum"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    };
    let ckpt = path.to_str().unwrap();
    let out = bench(&[
        "--checkpoint",
        ckpt,
        "--steps",
        "1",
        "--runs",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["parameters"], n);
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert_eq!(v["runs_subnormals_kept"].as_array().unwrap().len(), 2);
    let ratio = v["ratio"].as_f64().unwrap();
    assert!(ratio.is_finite() && ratio > 0.0, "{v}");
    let missing = dir.path().join("missing.safetensors");
    let out = bench(&["--checkpoint", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.safetensors"));
}
