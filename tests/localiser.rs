//! The localiser: the exported graph computes what the engine computes, bad localiser files
//! are refused naming the file, the shipped one finds the number on real photos, and training
//! resumes from its checkpoint.

mod common;

use std::path::Path;

use housenum::engine::localiser::{iou, Localiser, LocaliserConfig};
use housenum::read::locate::Locator;
use housenum::read::{self, Region};
use housenum::rng::Rng;
use prost::Message;

#[test]
fn exported_localiser_runs_the_same_in_tract() {
    // A box head and a profile head (column and row bands), each exported and run by tract.
    for bins in [None, Some([12, 6])] {
        let cfg = LocaliserConfig {
            channels: [6, 8, 10, 12],
            bins,
            ..LocaliserConfig::default()
        };
        let mut loc = Localiser::new(cfg, 5);
        if let Some([bx, _]) = bins {
            // Keep every band well away from the ½ threshold (the head's weights shrunk, its
            // biases ±3: a run over columns 3–7 and rows 1–3), so that rounding differences
            // between the engine and tract cannot change which bands form the run.
            let (k, f) = (cfg.outputs(), cfg.features());
            let n = loc.params.len();
            loc.params[n - k - k * f..n - k]
                .iter_mut()
                .for_each(|v| *v *= 0.01);
            for (j, v) in loc.params[n - k..].iter_mut().enumerate() {
                let on = if j < bx {
                    (3..8).contains(&j)
                } else {
                    (1..4).contains(&(j - bx))
                };
                *v = if on { 3.0 } else { -3.0 };
            }
        }
        let bytes = housenum::export::localiser_to_onnx(&loc, &[]).encode_to_vec();
        let locator = Locator::from_bytes(&bytes, Path::new("<test>")).unwrap();
        let mut rng = Rng::new(2);
        // Images of several sizes and aspect ratios, resized to the input by the locator.
        for (w, h) in [(96, 48), (200, 60), (31, 77)] {
            let img = image::Rgb32FImage::from_fn(w, h, |_, _| {
                image::Rgb([rng.f32(), rng.f32(), rng.f32()])
            });
            let mut x = read::resize_region(&img, Region::full(w, h), cfg.width, cfg.height);
            read::normalize(&mut x);
            let out = loc.forward(&x, 1).outputs;
            assert_eq!(out.len(), cfg.outputs());
            let want = cfg.decode(&out);
            let got = locator.locate(&img).unwrap();
            let (fw, fh) = (w as f32, h as f32);
            let want_px = [want[0] * fw, want[1] * fh, want[2] * fw, want[3] * fh];
            let got = [got.0, got.1, got.2, got.3];
            for (a, b) in want_px.iter().zip(&got) {
                assert!(
                    (a - b).abs() < 1e-3,
                    "{bins:?} {w}x{h}: engine {want_px:?} vs tract {got:?}"
                );
            }
        }
    }
}

#[test]
fn bad_localiser_files_are_refused_naming_the_file() {
    let reader_model = housenum::read::reader::EMBEDDED_MODEL;
    // A profile localiser (12 + 6 bands) whose bands metadata is changed afterwards.
    let profile = |bins: &str| {
        let cfg = LocaliserConfig {
            channels: [2, 2, 2, 2],
            bins: Some([12, 6]),
            ..LocaliserConfig::default()
        };
        let mut proto = housenum::export::localiser_to_onnx(&Localiser::new(cfg, 1), &[]);
        for p in &mut proto.metadata_props {
            if p.key == housenum::read::metadata::LOC_BINS_KEY {
                p.value = bins.to_string();
            }
        }
        proto.encode_to_vec()
    };
    let (wrong_bins, bad_bins) = (profile("12x7"), profile("twelve"));
    // The same localiser with one metadata key added.
    let with_meta = |key: &str, value: &str| {
        let cfg = LocaliserConfig {
            channels: [2, 2, 2, 2],
            bins: Some([12, 6]),
            ..LocaliserConfig::default()
        };
        let meta = [(key, value.to_string())];
        housenum::export::localiser_to_onnx(&Localiser::new(cfg, 1), &meta).encode_to_vec()
    };
    let (refine, threshold) = (
        housenum::read::metadata::LOC_REFINE_KEY,
        housenum::read::metadata::LOC_THRESHOLD_KEY,
    );
    let (bad_refine, small_refine) = (with_meta(refine, "wide"), with_meta(refine, "0.5x1.4"));
    let (bad_threshold, one_threshold) = (with_meta(threshold, "half"), with_meta(threshold, "1"));
    let cases: [(&str, &[u8], &str); 9] = [
        ("empty.onnx", b"", "empty file"),
        ("garbage.onnx", b"not a model at all", "cannot parse ONNX"),
        ("reader.onnx", reader_model, "not a housenum localiser"),
        ("wrong-bins.onnx", &wrong_bins, "gave 18 values, not 19"),
        ("bad-bins.onnx", &bad_bins, "is not BXxBY"),
        ("bad-refine.onnx", &bad_refine, "is not WIDTHxHEIGHT"),
        ("small-refine.onnx", &small_refine, "is not WIDTHxHEIGHT"),
        ("bad-threshold.onnx", &bad_threshold, "between 0 and 1"),
        ("one-threshold.onnx", &one_threshold, "between 0 and 1"),
    ];
    for (name, bytes, want) in cases {
        let err = Locator::from_bytes(bytes, Path::new(name))
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let missing = Locator::from_path(Path::new("no/such/localiser.onnx")).unwrap_err();
    assert!(missing.to_string().contains("no/such/localiser.onnx"));
}

/// Two boxes `(left, top, right, bottom)` agree to 1e-3 px on every side.
fn assert_same_box(a: (f32, f32, f32, f32), b: (f32, f32, f32, f32), what: &str) {
    let close = [(a.0, b.0), (a.1, b.1), (a.2, b.2), (a.3, b.3)]
        .iter()
        .all(|(x, y)| (x - y).abs() < 1e-3);
    assert!(close, "{what}: {a:?} vs {b:?}");
}

/// A random profile localiser exported with or without the coarse-to-fine key.
fn profile_locator(refine: Option<&str>) -> Locator {
    let meta: Vec<(&str, String)> = refine
        .map(|r| (housenum::read::metadata::LOC_REFINE_KEY, r.to_string()))
        .into_iter()
        .collect();
    profile_locator_with(&meta)
}

/// A random profile localiser exported with the metadata `meta`.
fn profile_locator_with(meta: &[(&str, String)]) -> Locator {
    let cfg = LocaliserConfig {
        channels: [3, 4, 4, 4],
        bins: Some([16, 8]),
        ..LocaliserConfig::default()
    };
    let bytes = housenum::export::localiser_to_onnx(&Localiser::new(cfg, 3), meta).encode_to_vec();
    Locator::from_bytes(&bytes, Path::new("random.onnx")).unwrap()
}

#[test]
fn profiles_are_decoded_at_the_threshold_the_metadata_names() {
    use housenum::read::locate::{decode, THRESHOLD};
    let plain = profile_locator(None);
    assert_eq!(plain.threshold(), THRESHOLD);
    let key = housenum::read::metadata::LOC_THRESHOLD_KEY;
    // The same weights, decoded at each threshold: `locate_once` is the raw profiles decoded
    // at the metadata's threshold, and the thresholds give different boxes.
    let img = image::Rgb32FImage::from_fn(96, 48, |x, y| {
        let v = ((x * 7 + y * 13) % 17) as f32 / 16.0;
        image::Rgb([v, 1.0 - v, v * v])
    });
    let mut boxes = Vec::new();
    for t in [0.1f32, 0.5, 0.9] {
        let loc = profile_locator_with(&[(key, t.to_string())]);
        assert_eq!(loc.threshold(), t);
        let (h, w) = loc.input_size();
        let mut x = read::resize_region(&img, Region::full(96, 48), w, h);
        read::normalize(&mut x);
        let b = decode(Some([16, 8]), t, &loc.run(&x).unwrap());
        let want = (b[0] * 96.0, b[1] * 48.0, b[2] * 96.0, b[3] * 48.0);
        let got = loc.locate_once(&img).unwrap();
        assert_same_box(got, want, &format!("threshold {t}"));
        boxes.push(got);
    }
    assert!(
        boxes.windows(2).any(|p| p[0] != p[1]),
        "the threshold changed no box: {boxes:?}"
    );
}

#[test]
fn coarse_to_fine_looks_again_around_the_first_box() {
    let mut rng = Rng::new(5);
    let img = image::Rgb32FImage::from_fn(300, 120, |_, _| {
        image::Rgb([rng.f32(), rng.f32(), rng.f32()])
    });
    let once = profile_locator(None);
    let fine = profile_locator(Some("3.5x1.4"));
    assert_eq!((once.refine(), fine.refine()), (None, Some((3.5, 1.4))));
    // Without the key, `locate` is one pass; `locate_in` on the whole photo is that pass.
    let first = once.locate(&img).unwrap();
    assert_eq!(first, once.locate_once(&img).unwrap());
    assert_eq!(first, once.locate_in(&img, Region::full(300, 120)).unwrap());
    // With it, the second pass looks within the first box grown 3.5 x 1.4, unless that
    // context already covers 90 % of both sides.
    let got = fine.locate(&img).unwrap();
    let context = read::expand_region(first, 3.5, 1.4, (300, 120));
    let covers = context.width() as f32 >= 0.9 * 300.0 && context.height() as f32 >= 0.9 * 120.0;
    let want = if covers {
        first
    } else {
        once.locate_in(&img, context).unwrap()
    };
    assert_eq!(got, want);
    let inside = |b: (f32, f32, f32, f32), r: Region| {
        b.0 >= r.x0 as f32 - 1e-3 && b.2 <= r.x1 as f32 + 1e-3 && b.1 >= r.y0 as f32 - 1e-3
    };
    assert!(inside(got, context), "{got:?} outside {context:?}");
    // A region is a crop: the box found in it is the box found in the cropped photo, moved.
    let r = Region {
        x0: 40,
        y0: 10,
        x1: 200,
        y1: 100,
    };
    let crop = image::imageops::crop_imm(&img, 40, 10, 160, 90).to_image();
    let (a, b) = (
        once.locate_in(&img, r).unwrap(),
        once.locate_once(&crop).unwrap(),
    );
    let moved = (b.0 + 40.0, b.1 + 10.0, b.2 + 40.0, b.3 + 10.0);
    assert_same_box(a, moved, "a region against its crop");
}

#[test]
fn a_box_filling_the_width_is_looked_for_again_in_a_margin_of_the_border_colour() {
    use housenum::read::locate::{fills_width, margin_pixels, MARGIN};
    let loc = profile_locator(None);
    // (photo size) → the box found in the photo framed in MARGIN is the box found in that
    // canvas, made, moved back and clamped to the photo; the first pass keeps its own box
    // unless that spans 35 % of the photo's width.
    for (w, h) in [(300u32, 120u32), (40, 90), (7, 5)] {
        let img = image::Rgb32FImage::from_fn(w, h, |x, y| {
            let v = ((x * 7 + y * 13) % 17) as f32 / 16.0;
            image::Rgb([v, 1.0 - v, v * v])
        });
        let (mx, my) = margin_pixels(w, h, MARGIN);
        assert_eq!(
            (mx, my),
            (
                (w as f32 / 8.0).round() as u32,
                (h as f32 / 20.0).round() as u32
            )
        );
        let fill = image::Rgb(read::border_mean(&img));
        let canvas = image::Rgb32FImage::from_fn(w + 2 * mx, h + 2 * my, |x, y| {
            if (mx..mx + w).contains(&x) && (my..my + h).contains(&y) {
                *img.get_pixel(x - mx, y - my)
            } else {
                fill
            }
        });
        let b = loc
            .locate_in(&canvas, Region::full(canvas.width(), canvas.height()))
            .unwrap();
        let (fw, fh) = (w as f32, h as f32);
        let x0 = (b.0 - mx as f32).clamp(0.0, fw);
        let y0 = (b.1 - my as f32).clamp(0.0, fh);
        let framed = (
            x0,
            y0,
            (b.2 - mx as f32).clamp(x0, fw),
            (b.3 - my as f32).clamp(y0, fh),
        );
        let in_margin = loc.locate_in_margin(&img, MARGIN).unwrap();
        assert_same_box(in_margin, framed, &format!("{w}x{h}"));
        assert!(in_margin.0 >= 0.0 && in_margin.2 <= fw && in_margin.1 >= 0.0 && in_margin.3 <= fh);
        let plain = loc.locate_in(&img, Region::full(w, h)).unwrap();
        let want = if fills_width(plain, w) {
            in_margin
        } else {
            plain
        };
        assert_eq!(
            loc.locate_with(&img, Some(MARGIN)).unwrap(),
            want,
            "{w}x{h}"
        );
        assert_eq!(loc.locate(&img).unwrap(), plain, "{w}x{h}");
    }
    // A box fills the width from 35 % of it on.
    let cases = [
        ((0.0, 0.0, 35.0, 9.0), true),
        ((10.0, 0.0, 44.9, 9.0), false),
        ((60.0, 0.0, 100.0, 9.0), true),
        ((10.0, 0.0, 20.0, 90.0), false),
    ];
    for (rect, want) in cases {
        assert_eq!(fills_width(rect, 100), want, "{rect:?}");
    }
}

#[test]
fn photos_cropped_close_keep_their_edge_digits() {
    // Validation photos cut at their digits' box, as people crop a photo to the number: a
    // localiser that learnt only numbers with background around them cuts edge digits (60 of
    // these 100 read), and the look in a margin gives them back; the shipped one learnt photos
    // cut close too (`train-localiser --zoom-in`: 73 read, 76 with the margin; docs/
    // experiments.md, "Photos cropped close to the number"). Bounds that a localiser without
    // `--zoom-in`, or a margin that cuts digits, fails.
    let Some(svhn) = common::svhn() else { return };
    let set = housenum::data::svhn::SvhnSet::open(&svhn.join("train")).unwrap();
    let (_, val) = housenum::data::svhn::split_by_name(&set.records, 0.1);
    let mut reader = housenum::Reader::embedded().unwrap();
    let photos: Vec<_> = val
        .iter()
        .take(100)
        .map(|r| {
            let img = read::load_image(&r.path).unwrap();
            let (cut, _) = housenum::data::framing::cropped_close(&img, &r.boxes, 0.0);
            (cut, r.digits.clone())
        })
        .collect();
    let right = |reader: &housenum::Reader| {
        photos
            .iter()
            .filter(|(img, digits)| {
                let (_, d) = reader
                    .read_image(img, housenum::Protocol::Locate, &[])
                    .unwrap();
                &d.digits == digits
            })
            .count()
    };
    let without = right(&reader);
    reader.set_margin(Some(housenum::read::locate::MARGIN));
    let with = right(&reader);
    assert!(
        without >= 68 && with >= without,
        "cropped close: {with} of 100 read with the margin, {without} without"
    );
}

#[test]
fn shipped_localiser_finds_the_number_on_validation_photos() {
    // The embedded localiser on the validation split (never trained on): most predicted boxes
    // overlap the labelled one well. Its measured mean IoU is in onnx/README.md; this bound only
    // catches a broken pipeline (a mirrored box, swapped axes, wrong normalisation).
    let Some(svhn) = common::svhn() else { return };
    let set = housenum::data::svhn::SvhnSet::open(&svhn.join("train")).unwrap();
    let (_, val) = housenum::data::svhn::split_by_name(&set.records, 0.1);
    let locator = Locator::embedded().unwrap();
    let ious: Vec<f32> = val
        .iter()
        .take(100)
        .map(|r| {
            let img = read::load_image(&r.path).unwrap();
            let (l, t, rr, b) = locator.locate(&img).unwrap();
            let (tl, tt, tr, tb) = read::boxes_union(&r.boxes);
            iou([l, t, rr, b], [tl, tt, tr, tb])
        })
        .collect();
    let good = ious.iter().filter(|&&v| v >= 0.5).count();
    assert!(good >= 70, "only {good} of 100 boxes with IoU >= 0.5");
}

#[cfg(feature = "train")]
#[test]
fn localiser_training_resumes_and_is_reproducible() {
    use housenum::train::localiser::{
        checkpoint_path, train_localiser, LocCheckpoint, LocTrainConfig,
    };
    let Some(svhn) = common::svhn() else { return };
    // A tiny run: 2 epochs over 48 images; `stop_after` cuts it as a kill would.
    let config = |dir: &Path, stop_after: usize, seed: u64, recombine_prob: f32| LocTrainConfig {
        data: svhn.join("train"),
        out: dir.to_path_buf(),
        epochs: 2,
        stop_after: Some(stop_after),
        extra: Vec::new(),
        recombine_prob,
        recombine_max_len: 10,
        paste_prob: 0.0,
        zoom_out_prob: 0.0,
        zoom_out_max: 6.0,
        zoom_out_independent: false,
        zoom_in_prob: 0.0,
        stacked_prob: 0.0,
        empty_prob: 0.0,
        teachers: Vec::new(),
        teacher_weight: 0.0,
        pool: Vec::new(),
        init: None,
        batch_size: 16,
        lr: 2e-3,
        clip_norm: 5.0,
        seed,
        val_fraction: 0.1,
        limit: Some(48),
        fold: None,
        model: LocaliserConfig {
            channels: [4, 4, 8, 8],
            ..LocaliserConfig::default()
        },
        quiet: true,
    };
    let run = |dir: &Path, stop_after: usize, seed: u64, recombine_prob: f32| {
        train_localiser(&config(dir, stop_after, seed, recombine_prob)).unwrap()
    };
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Two epochs at once, or one, a stop, and the second resumed: the same weights.
    let h = run(a.path(), 2, 1, 0.0);
    assert_eq!(h.len(), 2);
    run(b.path(), 1, 1, 0.0);
    let h2 = run(b.path(), 2, 1, 0.0);
    assert_eq!(h2.len(), 2);
    assert_eq!(h[0].loss, h2[0].loss);
    let wa = LocCheckpoint::load(&checkpoint_path(a.path())).unwrap();
    let wb = LocCheckpoint::load(&checkpoint_path(b.path())).unwrap();
    assert!(wa.model.params == wb.model.params, "resumed weights differ");
    // Another seed: other weights.
    run(c.path(), 1, 2, 0.0);
    let wc = LocCheckpoint::load(&checkpoint_path(c.path())).unwrap();
    assert!(
        wa.model.params != wc.model.params,
        "another seed gave the same weights"
    );
    // Resuming a run with other options is refused, naming the checkpoint.
    let other = LocTrainConfig {
        epochs: 3,
        stop_after: None,
        ..config(a.path(), 3, 1, 0.5)
    };
    let err = train_localiser(&other).unwrap_err().to_string();
    assert!(
        err.contains("localiser.safetensors") && err.contains("other options"),
        "{err}"
    );
    // Recombined long numbers mixed in: trains, and changes what is learnt.
    let d = tempfile::tempdir().unwrap();
    let hd = run(d.path(), 2, 1, 0.5);
    assert!(hd.iter().all(|e| e.loss.is_finite()));
    let wd = LocCheckpoint::load(&checkpoint_path(d.path())).unwrap();
    assert!(
        wa.model.params != wd.model.params,
        "recombination changed nothing"
    );
    // Zoomed-out photos mixed in: trains, changes what is learnt, and is recorded, so a run
    // without them cannot resume its folder.
    let z = tempfile::tempdir().unwrap();
    let zoomed = LocTrainConfig {
        zoom_out_prob: 0.5,
        zoom_out_max: 4.0,
        ..config(z.path(), 2, 1, 0.0)
    };
    let hz = train_localiser(&zoomed).unwrap();
    assert!(hz.iter().all(|e| e.loss.is_finite()));
    let wz = LocCheckpoint::load(&checkpoint_path(z.path())).unwrap();
    assert!(
        wa.model.params != wz.model.params,
        "zoom-out changed nothing"
    );
    assert_eq!(wz.options.as_ref().unwrap()["zoom_out_max"], 4.0);
    let plain = LocTrainConfig {
        epochs: 3,
        stop_after: None,
        ..config(z.path(), 3, 1, 0.0)
    };
    assert!(train_localiser(&plain).is_err());
    // Stacked columns of digits mixed in (no zoom-out of the photos): trains, changes what is
    // learnt, and is recorded.
    let st = tempfile::tempdir().unwrap();
    let stacked = LocTrainConfig {
        stacked_prob: 0.5,
        ..config(st.path(), 2, 1, 0.0)
    };
    let hs = train_localiser(&stacked).unwrap();
    assert!(hs.iter().all(|e| e.loss.is_finite()));
    let ws = LocCheckpoint::load(&checkpoint_path(st.path())).unwrap();
    assert!(
        wa.model.params != ws.model.params,
        "stacked numbers changed nothing"
    );
    assert_eq!(ws.options.as_ref().unwrap()["stacked_prob"], 0.5);
    // Canvases holding no number need a profile head: refused without one.
    let em = tempfile::tempdir().unwrap();
    let empty_box = LocTrainConfig {
        empty_prob: 0.5,
        ..config(em.path(), 2, 1, 0.0)
    };
    let err = train_localiser(&empty_box).unwrap_err().to_string();
    assert!(err.contains("bins"), "{err}");
    // A profile head: trains, keeps its bands in the checkpoint, and resuming the box run's
    // folder with it is refused.
    let e = tempfile::tempdir().unwrap();
    let profile = |dir: &Path| LocTrainConfig {
        model: LocaliserConfig {
            bins: Some([12, 6]),
            ..config(dir, 2, 1, 0.0).model
        },
        ..config(dir, 2, 1, 0.0)
    };
    let he = train_localiser(&profile(e.path())).unwrap();
    assert!(he
        .iter()
        .all(|x| x.loss.is_finite() && x.val_iou.is_finite()));
    // With canvases holding no number mixed in: trains, changes what is learnt, and is
    // recorded, so the run without them cannot resume its folder.
    let ee = tempfile::tempdir().unwrap();
    let empty = LocTrainConfig {
        empty_prob: 0.5,
        ..profile(ee.path())
    };
    let hee = train_localiser(&empty).unwrap();
    assert!(hee.iter().all(|x| x.loss.is_finite()));
    let (wp, wee) = (
        LocCheckpoint::load(&checkpoint_path(e.path())).unwrap(),
        LocCheckpoint::load(&checkpoint_path(ee.path())).unwrap(),
    );
    assert!(
        wp.model.params != wee.model.params,
        "canvases holding no number changed nothing"
    );
    assert_eq!(wee.options.as_ref().unwrap()["empty_prob"], 0.5);
    assert!(train_localiser(&LocTrainConfig {
        epochs: 3,
        stop_after: None,
        ..profile(ee.path())
    })
    .is_err());
    let we = LocCheckpoint::load(&checkpoint_path(e.path())).unwrap();
    assert_eq!(we.model.config.bins, Some([12, 6]));
    assert_eq!(
        we.model.params.len(),
        wa.model.params.len() + 14 * (8 * 2 * 8 + 1)
    );
    assert!(train_localiser(&profile(a.path())).is_err());
    // Exported with a band threshold: the metadata carries it for every runtime. A box head,
    // or a threshold outside (0, 1), is refused, saying why.
    let export = |ck: &Path, out: &Path, threshold: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_housenum"))
            .args(["export-localiser", "--checkpoint"])
            .arg(ck)
            .args(["--threshold", threshold, "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("threshold.onnx");
    let done = export(&checkpoint_path(e.path()), &out, "0.4");
    assert!(done.status.success(), "{done:?}");
    assert_eq!(Locator::from_path(&out).unwrap().threshold(), 0.4);
    let refused = [
        (checkpoint_path(a.path()), "0.4", "box head"),
        (checkpoint_path(e.path()), "1.5", "between 0 and 1"),
        (checkpoint_path(e.path()), "0", "between 0 and 1"),
    ];
    for (ck, threshold, why) in refused {
        let run = export(&ck, &t.path().join("refused.onnx"), threshold);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success() && err.contains(why),
            "{threshold}: {err}"
        );
    }

    // Distillation: a student of the profile run above, started from it, on labelled photos
    // and unlabelled ones (the teacher's profile as their target). It trains, records its
    // teacher, and moves away from the teacher's weights.
    let pool: Vec<_> = ["1.png", "2.png", "3.png"]
        .iter()
        .map(|n| svhn.join("train").join(n))
        .collect();
    let teacher = checkpoint_path(e.path());
    let f = tempfile::tempdir().unwrap();
    let student = |dir: &Path| LocTrainConfig {
        teachers: vec![teacher.clone()],
        teacher_weight: 0.5,
        pool: pool.clone(),
        init: Some(teacher.clone()),
        ..profile(dir)
    };
    let hf = train_localiser(&student(f.path())).unwrap();
    assert!(hf.iter().all(|x| x.loss.is_finite()));
    let wf = LocCheckpoint::load(&checkpoint_path(f.path())).unwrap();
    assert!(
        wf.model.params != we.model.params,
        "the student did not train"
    );
    let options = wf.options.unwrap().to_string();
    assert!(options.contains("teacher_weight") && options.contains("\"pool_images\":3"));
    // Refused, each with a reason: unlabelled photos without a teacher, a box head as the
    // student, a teacher of another input size (named), an initialisation of another shape.
    let g = tempfile::tempdir().unwrap();
    let no_teacher = LocTrainConfig {
        teachers: Vec::new(),
        ..student(g.path())
    };
    let err = train_localiser(&no_teacher).unwrap_err().to_string();
    assert!(err.contains("teacher"), "{err}");
    let box_head = LocTrainConfig {
        init: None,
        ..student(g.path())
    };
    let box_head = LocTrainConfig {
        model: config(g.path(), 2, 1, 0.0).model,
        ..box_head
    };
    let err = train_localiser(&box_head).unwrap_err().to_string();
    assert!(err.contains("--bins"), "{err}");
    let other_input = LocTrainConfig {
        teachers: vec![checkpoint_path(a.path())],
        init: None,
        ..student(g.path())
    };
    let err = train_localiser(&other_input).unwrap_err().to_string();
    assert!(err.contains("localiser.safetensors"), "{err}");
    let other_init = LocTrainConfig {
        init: Some(checkpoint_path(a.path())),
        ..student(g.path())
    };
    let err = train_localiser(&other_init).unwrap_err().to_string();
    assert!(err.contains("architecture"), "{err}");
}

#[test]
fn shipped_localiser_boxes_numbers_longer_than_any_real_one() {
    // Numbers of 6-10 real validation digits set side by side (longer than any SVHN number):
    // the located region must hold the whole number, or `read` (locate by default) would cut
    // digits off. The first shipped localiser, trained on real photos only, failed this (its
    // readings of such numbers: 2 % right, against 54 % from the labelled box).
    let Some(svhn) = common::svhn() else { return };
    let set = housenum::data::svhn::SvhnSet::open(&svhn.join("train")).unwrap();
    let (_, val) = housenum::data::svhn::split_by_name(&set.records, 0.1);
    let pool: Vec<_> = val
        .iter()
        .flat_map(|r| {
            let img = read::load_image(&r.path).unwrap();
            housenum::data::recombine::cut_digits(&img, &r.boxes, &r.digits)
        })
        .collect();
    let locator = Locator::embedded().unwrap();
    let mut rng = Rng::new(7);
    let n = 60;
    let whole = (0..n)
        .filter(|_| {
            let len = 6 + rng.below(5);
            let (img, boxes, _) = housenum::data::recombine::compose(&pool, len, &mut rng);
            let region = locator.region(&img).unwrap();
            let (l, _, r, _) = read::boxes_union(&boxes);
            region.x0 as f32 <= l + 2.0 && region.x1 as f32 >= r - 2.0
        })
        .count();
    assert!(
        whole >= n * 3 / 4,
        "whole number inside the region for {whole} of {n}"
    );
}

#[test]
fn localiser_ensemble_runs_the_same_in_tract_and_mirrors_exactly() {
    use housenum::engine::localiser::mean_outputs;
    use housenum::export::{localiser_ensemble_mismatch, localiser_ensemble_to_onnx};
    let cfg = LocaliserConfig {
        channels: [4, 6, 8, 8],
        bins: Some([12, 6]),
        ..LocaliserConfig::default()
    };
    let locs = [Localiser::new(cfg, 1), Localiser::new(cfg, 2)];
    let refs: Vec<&Localiser> = locs.iter().collect();
    // One member, not mirrored: exactly the single localiser's file.
    assert_eq!(
        localiser_ensemble_to_onnx(&refs[..1], false, &[]).encode_to_vec(),
        housenum::export::localiser_to_onnx(&locs[0], &[]).encode_to_vec()
    );
    let (h, w) = (cfg.height, cfg.width);
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..3 * h * w).map(|_| rng.normal()).collect();
    let mirrored: Vec<f32> = (0..3 * h)
        .flat_map(|row| x[row * w..][..w].iter().rev().copied())
        .collect();
    // (members, mirror): tract on the exported graph equals the engine's mean.
    for (n, mirror) in [(1, true), (2, false), (2, true)] {
        let bytes = localiser_ensemble_to_onnx(&refs[..n], mirror, &[]).encode_to_vec();
        let locator = Locator::from_bytes(&bytes, Path::new("<test>")).unwrap();
        let got = locator.run(&x).unwrap();
        let want = mean_outputs(&refs[..n], mirror, &x);
        assert_eq!(got.len(), cfg.outputs());
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-5, "{n} {mirror}: {got:?} vs {want:?}");
        }
        if mirror {
            // Reading the mirrored image gives the same profiles, columns reversed.
            let m = locator.run(&mirrored).unwrap();
            assert_eq!(m.len(), cfg.outputs());
            for (i, v) in m.iter().enumerate() {
                let j = if i < 12 { 11 - i } else { i };
                assert!((v - got[j]).abs() < 1e-5, "band {i}: {v} vs {}", got[j]);
            }
        }
    }
    // What cannot be one ensemble.
    let other = Localiser::new(LocaliserConfig { width: 64, ..cfg }, 1);
    let boxes = Localiser::new(LocaliserConfig { bins: None, ..cfg }, 1);
    let cases: [(&[&Localiser], bool, Option<&str>); 4] = [
        (&[&locs[0], &locs[1]], true, None),
        (&[&locs[0], &other], false, Some("member 1 takes")),
        (&[&locs[0], &boxes], false, Some("member 1 takes")),
        (&[&boxes, &boxes], true, Some("only profile localisers")),
    ];
    for (members, mirror, want) in cases {
        let got = localiser_ensemble_mismatch(members, mirror);
        match want {
            None => assert_eq!(got, None),
            Some(w) => assert!(got.as_deref().is_some_and(|g| g.contains(w)), "{got:?}"),
        }
    }
}

/// The second look (`read`'s default, `--second-look`): in a photo framed loosely (a sample
/// pasted into a plain canvas 4 × 3 times its width), the first look finds no number; the
/// tiles do, and their reading answers. A confident first answer is kept as it is.
#[test]
fn second_look_finds_a_number_the_first_look_missed() {
    use housenum::{Protocol, Reader};
    let cases = [("sample-2.png", "1975")];
    let mut reader = Reader::embedded().unwrap();
    // The tiles' second look (the detector's, the default, misses this photo on a flat grey
    // canvas: its training canvases were made of real photos' parts).
    reader.set_look_with(housenum::read::reader::LookWith::Tiles);
    assert_eq!(
        reader.second_look_below(),
        Some(housenum::read::reader::SECOND_LOOK_BELOW),
        "on by default"
    );
    for (file, want) in cases {
        let photo = image::open(common::root().join("data/samples").join(file))
            .unwrap()
            .to_rgb8();
        let w = photo.width();
        let mut canvas = image::RgbImage::from_pixel(4 * w, 3 * w, image::Rgb([128, 124, 118]));
        image::imageops::replace(&mut canvas, &photo, (4 * w / 5) as i64, (3 * w / 2) as i64);
        let img = image::DynamicImage::ImageRgb8(canvas).to_rgb32f();
        reader.set_second_look(None);
        let (_, first) = reader.read_image(&img, Protocol::Locate, &[]).unwrap();
        assert_eq!(first.text(), "", "{file}: the first look misses it");
        reader.set_second_look(Some(0.9));
        let (region, second) = reader.read_image(&img, Protocol::Locate, &[]).unwrap();
        assert_eq!(second.text(), want, "{file}");
        assert!(second.confidence > first.confidence, "{file}");
        assert!(
            region.x0 >= 4 * w / 5 - w / 2 && region.x1 <= 4 * w / 5 + 3 * w / 2,
            "{file}: {region:?} around the pasted photo"
        );
        // A photo read confidently the first time keeps that reading.
        let sample = read::load_image(&common::root().join("data/samples/sample-1.png")).unwrap();
        let plain = reader.read_image(&sample, Protocol::Locate, &[]).unwrap();
        reader.set_second_look(None);
        assert_eq!(
            plain,
            reader.read_image(&sample, Protocol::Locate, &[]).unwrap()
        );
    }
}

#[cfg(feature = "train")]
#[test]
fn detector_training_resumes_is_reproducible_and_exports_what_tract_reads() {
    use housenum::engine::detector::DetectorConfig;
    use housenum::read::detect::Detector as TractDetector;
    use housenum::train::detector::{
        checkpoint_path, train_detector, DetCheckpoint, DetTrainConfig,
    };
    let Some(svhn) = common::svhn() else { return };
    // A tiny run: 2 epochs over 32 photos; `stop_after` cuts it as a kill would.
    let config = |dir: &Path, stop_after: usize, seed: u64| DetTrainConfig {
        data: svhn.join("train"),
        out: dir.to_path_buf(),
        epochs: 2,
        batch_size: 8,
        lr: 2e-3,
        clip_norm: 5.0,
        seed,
        val_fraction: 0.2,
        limit: Some(32),
        model: DetectorConfig {
            channels: [4, 4, 8, 8, 8],
        },
        cells: 8,
        heights: [8.0, 48.0],
        anywhere: 0.25,
        quiet: true,
        stop_after: Some(stop_after),
        fold: None,
        extra: Vec::new(),
    };
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let h = train_detector(&config(a.path(), 2, 1)).unwrap();
    assert_eq!(h.len(), 2);
    assert!(h
        .iter()
        .all(|e| e.loss.is_finite() && e.val_loss.is_finite()));
    train_detector(&config(b.path(), 1, 1)).unwrap();
    let h2 = train_detector(&config(b.path(), 2, 1)).unwrap();
    assert_eq!(h[0].loss, h2[0].loss);
    let wa = DetCheckpoint::load(&checkpoint_path(a.path())).unwrap();
    let wb = DetCheckpoint::load(&checkpoint_path(b.path())).unwrap();
    assert!(wa.model.params == wb.model.params, "resumed weights differ");
    train_detector(&config(c.path(), 1, 2)).unwrap();
    let wc = DetCheckpoint::load(&checkpoint_path(c.path())).unwrap();
    assert!(
        wa.model.params != wc.model.params,
        "another seed, same weights"
    );
    // Other options cannot resume the folder; the error names the checkpoint.
    let other = DetTrainConfig {
        anywhere: 0.5,
        stop_after: None,
        epochs: 3,
        ..config(a.path(), 3, 1)
    };
    let err = train_detector(&other).unwrap_err().to_string();
    assert!(
        err.contains("detector.safetensors") && err.contains("other options"),
        "{err}"
    );
    // The export loads under tract and finds candidates in a photo.
    let bytes = housenum::export::detector_to_onnx(&wa.model, &[]).encode_to_vec();
    let det = TractDetector::from_bytes(&bytes, Path::new("tiny.onnx")).unwrap();
    let img = housenum::read::load_image(&svhn.join("train/1.png")).unwrap();
    assert!(det.candidates(&img).unwrap().len() <= housenum::read::detect::MAX_CANDIDATES);
}

/// On phone-size photos the detector always looks (`LOOK_ALWAYS_PIXELS`), and the verifier
/// (`read::verify`) chooses a number it finds and reads even where the first look misses it;
/// a bare wall still holds none.
#[test]
fn the_detectors_look_reads_phone_photos_whose_first_look_missed_the_number() {
    use housenum::{Protocol, Reader};
    // (plate, scale, where) → the number, or "" for the bare wall.
    let cases = [
        (Some(("sample-2.png", 1)), (570, 1000), "1975"),
        (Some(("sample-3.png", 1)), (660, 900), "308"),
        (None, (0, 0), ""),
    ];
    let mut reader = Reader::embedded().unwrap();
    for (sample, at, want) in cases {
        let img = common::phone_photo(sample, at);
        reader.set_second_look(None);
        let (_, first) = reader.read_image(&img, Protocol::Locate, &[]).unwrap();
        assert!(
            first.text() != want || want.is_empty(),
            "{sample:?}: the first look alone reads {}",
            first.text()
        );
        reader.set_second_look(Some(housenum::read::reader::SECOND_LOOK_BELOW));
        let (region, got) = reader.read_image(&img, Protocol::Locate, &[]).unwrap();
        assert_eq!(got.text(), want, "{sample:?}");
        if let Some((file, k)) = sample {
            let plate =
                image::image_dimensions(common::root().join("data/samples").join(file)).unwrap();
            let (cx, cy) = ((region.x0 + region.x1) / 2, (region.y0 + region.y1) / 2);
            assert!(
                cx >= at.0 && cx < at.0 + k * plate.0 && cy >= at.1 && cy < at.1 + k * plate.1,
                "{sample:?}: {region:?} on the plate"
            );
        }
    }
}
