//! End-to-end tests of the `housenum` command with the shipped model.

mod common;

use common::{run, samples};

#[test]
fn read_gets_the_sample_numbers_right() {
    let s = samples();
    let paths: Vec<String> = s.iter().map(|(p, _)| p.display().to_string()).collect();
    let args: Vec<&str> = std::iter::once("read")
        .chain(paths.iter().map(String::as_str))
        .collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), s.len());
    let mut wrong = Vec::new();
    for ((path, want), line) in s.iter().zip(&lines) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[0], path.display().to_string());
        let conf: f32 = f[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&conf));
        if f[1] != want {
            wrong.push(format!("{}: read {} want {want}", path.display(), f[1]));
        }
    }
    if !wrong.is_empty() {
        let dir = common::root().join("tests/golden-actual");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("samples.tsv"), &out).unwrap();
        panic!("misread samples (actual output in tests/golden-actual/samples.tsv): {wrong:?}");
    }
}

#[test]
fn read_json_directory_and_stdin() {
    let (code, out, _) = run(&["read", "--json", "data/samples"], None);
    assert_eq!(code, 0);
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), samples().len());
    for o in &objs {
        assert!(
            o["path"].is_string() && o["digits"].is_string() && o["confidence"].is_number(),
            "{o}"
        );
    }
    // A quoted pattern expands like a shell glob.
    let (code, out, _) = run(&["read", "data/samples/sample-?.png"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), samples().len());
    let (path, want) = &samples()[0];
    let bytes = std::fs::read(path).unwrap();
    let (code, out, _) = run(&["read", "-"], Some(&bytes));
    assert_eq!(code, 0);
    assert_eq!(out.split('\t').nth(1).unwrap(), want);
}

#[test]
fn bad_inputs_are_reported_by_name_and_the_rest_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = samples()[0].0.clone();
    let png = std::fs::read(&good).unwrap();
    let mut jpeg = Vec::new();
    image::open(&good)
        .unwrap()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // (file name, contents, expected words in the error)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", vec![], "empty"),
        (
            "text.png",
            b"this is not an image\n".to_vec(),
            "not a readable image",
        ),
        (
            "truncated.png",
            png[..png.len() / 2].to_vec(),
            "not a readable image",
        ),
        (
            "truncated.jpg",
            jpeg[..jpeg.len() / 3].to_vec(),
            "not a readable image",
        ),
        ("notes.txt", b"1234".to_vec(), "not a readable image"),
    ];
    let mut args = vec!["read".to_string()];
    for (name, bytes, _) in &cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        args.push(p.display().to_string());
    }
    let missing = dir.path().join("missing.png");
    args.push(missing.display().to_string());
    args.push(good.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&argv, None);
    assert_eq!(code, 1, "some inputs are bad: exit 1\n{err}");
    assert_eq!(
        out.lines().count(),
        1,
        "the good image is still read: {out}"
    );
    assert!(out.contains(&good.display().to_string()));
    for (name, _, words) in &cases {
        let line = err
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no error for {name}:\n{err}"));
        assert!(line.contains(words), "{name}: {line}");
    }
    assert!(
        err.lines()
            .any(|l| l.contains("missing.png") && l.contains("cannot read")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `read` prepares and reads images in chunks: many files at once, across chunk boundaries and
/// with unreadable files among them, print in input order exactly what each file alone prints.
#[test]
fn many_files_read_as_each_alone_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let s = samples();
    let mut paths: Vec<String> = Vec::new();
    for i in 0..75 {
        paths.push(if i % 29 == 7 {
            bad.display().to_string()
        } else {
            s[i % s.len()].0.display().to_string()
        });
    }
    for protocol in ["locate", "search"] {
        let mut args = vec!["read", "--region", "--protocol", protocol];
        args.extend(paths.iter().map(String::as_str));
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 1, "{err}");
        let alone: Vec<String> = s
            .iter()
            .map(|(p, _)| {
                let p = p.display().to_string();
                let (code, out, err) = run(&["read", "--region", "--protocol", protocol, &p], None);
                assert_eq!(code, 0, "{err}");
                out
            })
            .collect();
        let want: String = (0..paths.len())
            .filter(|i| i % 29 != 7)
            .map(|i| alone[i % s.len()].as_str())
            .collect();
        assert_eq!(out, want, "{protocol}");
        assert_eq!(
            err.lines().filter(|l| l.contains("bad.png")).count(),
            (0..paths.len()).filter(|i| i % 29 == 7).count(),
            "{err}"
        );
    }
}

#[test]
fn an_unusable_model_is_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.onnx");
    std::fs::write(&bogus, b"not a model").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let real = std::fs::read(common::root().join("onnx/housenum.onnx")).unwrap();
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let sample = samples()[0].0.display().to_string();
    for m in [&bogus, &truncated] {
        let (code, _, err) = run(
            &["read", "--model", &m.display().to_string(), &sample],
            None,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&m.display().to_string()), "{err}");
    }
}

#[test]
fn an_unusable_localiser_is_rejected_naming_the_file() {
    // Garbage, and the reader model given as a localiser (no localiser metadata).
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.onnx");
    std::fs::write(&bogus, b"not a model").unwrap();
    let reader_model = common::root().join("onnx/housenum.onnx");
    let sample = samples()[0].0.display().to_string();
    for (m, why) in [
        (&bogus, "cannot parse"),
        (&reader_model, "not a housenum localiser"),
    ] {
        let m = m.display().to_string();
        let (code, _, err) = run(
            &["read", "--protocol", "locate", "--localiser", &m, &sample],
            None,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&m) && err.contains(why), "{err}");
    }
}

#[test]
fn locate_reads_the_samples() {
    // The locate protocol (the embedded localiser, then the reader on its box) reads every
    // sample, and `--region` reports the box it read, inside the image.
    let files: Vec<String> = samples()
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    let mut args = vec!["read", "--protocol", "locate", "--region"];
    args.extend(files.iter().map(|s| s.as_str()));
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let mut boxed = 0;
    for ((path, want), line) in samples().iter().zip(out.lines()) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[1], want, "{line}");
        let r: Vec<u32> = f[3].split(',').map(|v| v.parse().unwrap()).collect();
        let (w, h) = image::image_dimensions(path).unwrap();
        assert!(
            r[0] < r[2] && r[2] <= w && r[1] < r[3] && r[3] <= h,
            "{line}"
        );
        boxed += usize::from((r[2] - r[0]) * (r[3] - r[1]) < w * h);
    }
    // A box, not the whole photo, for most samples (a tightly framed one grows to the photo).
    assert!(boxed >= 4, "{out}");
}

#[test]
fn eval_counts_unreadable_images_and_goes_on() {
    let Some(svhn) = common::svhn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = svhn.join("fixtures/official-first40/train");
    for f in ["digitStruct.mat", "1.png", "3.png"] {
        common::copy_to(&src.join(f), dir.path(), f);
    }
    std::fs::write(dir.path().join("2.png"), b"\x89PNG broken").unwrap();
    let tsv = dir.path().join("outcomes.tsv");
    let (code, out, err) = run(
        &[
            "eval",
            "--json",
            "-q",
            "--outcomes",
            &tsv.display().to_string(),
            &dir.path().display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["images"], 3);
    assert_eq!(v["unreadable"], 1);
    // Every image's outcome, in input order, agreeing with the summary.
    let text = std::fs::read_to_string(&tsv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows[0],
        ["name", "truth", "read", "confidence", "right", "error"]
    );
    assert_eq!(rows.len(), 4, "{text}");
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["1.png", "2.png", "3.png"]);
    assert_eq!((rows[1][1], rows[2][1], rows[3][1]), ("19", "23", "25"));
    assert_eq!((rows[2][2], rows[2][4]), ("", "0"));
    assert!(rows[2][5].contains("2.png"), "{text}");
    let right = rows[1..].iter().filter(|r| r[4] == "1").count();
    assert_eq!(right as f64 / 3.0, v["sequence_accuracy"].as_f64().unwrap());
    for r in &rows[1..] {
        assert_eq!(r[4] == "1", r[1] == r[2], "{r:?}");
    }
    for key in [
        "sequence_accuracy",
        "digit_accuracy",
        "mean_edit_distance",
        "images_per_second",
        "coverage_at_98",
    ] {
        assert!(v[key].is_number(), "{key}");
    }
    assert_eq!(v["protocol"], "crop");
    assert!(err.contains("2.png"), "{err}");
    assert!(
        err.contains("36 image(s)") && err.contains("missing"),
        "{err}"
    );
}

/// A PNG whose header declares `w × h` pixels but that carries almost no data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    let mut idat = b"IDAT".to_vec();
    idat.extend([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    out.extend(((idat.len() - 4) as u32).to_be_bytes());
    out.extend(&idat);
    out.extend(crc32(&idat).to_be_bytes());
    out.extend(0u32.to_be_bytes());
    out.extend(b"IEND");
    out.extend(crc32(b"IEND").to_be_bytes());
    out
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut v = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut v), format)
        .unwrap();
    v
}

/// The bad-input corpus: every kind gets either a reading or an error naming the file, in
/// bounded time, never a panic.
#[test]
fn bad_input_corpus_table() {
    let dir = tempfile::tempdir().unwrap();
    let sample = image::open(&samples()[0].0).unwrap();
    // (file, contents, Some(expected error words) or None when it must be read)
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "bomb.png",
            png_header_only(60_000, 60_000),
            Some("exceeds decoder limits"),
        ),
        (
            "wide-strip.png",
            encode(
                image::DynamicImage::new_rgb8(100_000, 3),
                image::ImageFormat::Png,
            ),
            Some("exceeds decoder limits"),
        ),
        (
            "one-pixel.png",
            encode(image::DynamicImage::new_rgb8(1, 1), image::ImageFormat::Png),
            None,
        ),
        (
            "sixteen-bit.png",
            encode(
                image::DynamicImage::ImageRgb16(sample.to_rgb16()),
                image::ImageFormat::Png,
            ),
            None,
        ),
        (
            "grey.png",
            encode(
                image::DynamicImage::ImageLuma8(sample.to_luma8()),
                image::ImageFormat::Png,
            ),
            None,
        ),
        (
            "alpha.png",
            encode(
                image::DynamicImage::ImageRgba8(sample.to_rgba8()),
                image::ImageFormat::Png,
            ),
            None,
        ),
        (
            "cmyk.jpg",
            std::fs::read(common::root().join("tests/fixtures/cmyk.jpg")).unwrap(),
            None,
        ),
        (
            "png-named.jpg",
            std::fs::read(&samples()[0].0).unwrap(),
            None,
        ),
        ("zeros.png", vec![0u8; 4096], Some("not a readable image")),
    ];
    let folder = dir.path().join("a-folder.png");
    std::fs::create_dir(&folder).unwrap();
    let mut failures = Vec::new();
    for (name, bytes, want) in &cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let started = std::time::Instant::now();
        let (code, out, err) = run(&["read", &p.display().to_string()], None);
        let secs = started.elapsed().as_secs_f64();
        let ok = match want {
            // Read: a number, or (exit 4) the plain statement that it holds none.
            None => (code == 0 || code == 4) && out.starts_with(&p.display().to_string()),
            Some(words) => {
                code == 1 && err.contains(&p.display().to_string()) && err.contains(words)
            }
        };
        if !ok || err.contains("panicked") || secs > 20.0 {
            failures.push(format!(
                "{name}: exit {code} in {secs:.1}s, out {out:?}, err {err:?}"
            ));
        }
    }
    // A directory given as an image: a folder with no images in it.
    let (code, out, err) = run(&["read", &folder.display().to_string()], None);
    if code != 1 || !out.is_empty() || !err.contains("a-folder.png: no images there") {
        failures.push(format!("directory: exit {code}, {out:?} {err:?}"));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn label_writes_an_official_layout_with_reads_readings_and_the_localisers_box() {
    use housenum::read::{boxes_union, expand_region};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("labelled");
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let (out_s, bad_s) = (out.display().to_string(), bad.display().to_string());
    let (code, _, err) = run(
        &[
            "label",
            "data/samples",
            &bad_s,
            "--out",
            &out_s,
            "--min-confidence",
            "0",
            "-q",
        ],
        None,
    );
    assert_eq!(code, 1, "one photo is unreadable: exit 1\n{err}");
    assert!(
        err.lines().any(|l| l.contains("bad.png")),
        "the bad photo is named: {err}"
    );
    // Every sample is kept (threshold 0), with `read`'s digits, one box per digit side by side,
    // whose union grown 30 % is the region `read --views 1` reads.
    let (code, read_out, err) = run(&["read", "--views", "1", "--region", "data/samples"], None);
    assert_eq!(code, 0, "{err}");
    let (_, read7, _) = run(&["read", "data/samples"], None);
    let entries = housenum::data::svhn::read_digit_struct(&out.join("digitStruct.mat")).unwrap();
    assert_eq!(entries.len(), samples().len());
    for (((name, digits, boxes), line), line7) in
        entries.iter().zip(read_out.lines()).zip(read7.lines())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let f7: Vec<&str> = line7.split('\t').collect();
        assert!(f[0].ends_with(name.as_str()), "{name} vs {line}");
        assert_eq!(
            housenum::alphabet::digits_to_string(digits),
            f7[1],
            "{name}"
        );
        assert_eq!(boxes.len(), digits.len(), "{name}");
        for pair in boxes.windows(2) {
            assert!(
                (pair[0].right() - pair[1].left).abs() < 1e-3,
                "{name}: {boxes:?}"
            );
            assert_eq!(pair[0].width, pair[1].width, "{name}");
        }
        let (w, h) = image::image_dimensions(out.join(name)).unwrap();
        let got = expand_region(boxes_union(boxes), 1.3, 1.3, (w, h));
        let want: Vec<i64> = f[3].split(',').map(|v| v.parse().unwrap()).collect();
        let got = [got.x0, got.y0, got.x1, got.y1].map(i64::from);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1),
            "{name}: boxes grown 30 % give {got:?}, read's region {want:?}"
        );
    }
    let labels = std::fs::read_to_string(out.join("labels.tsv")).unwrap();
    assert_eq!(labels.lines().count(), 1 + samples().len(), "{labels}");
    // A threshold no reading reaches keeps nothing: an error that says so.
    let (code, _, err) = run(
        &[
            "label",
            "data/samples",
            "--out",
            &out_s,
            "--min-confidence",
            "1.5",
            "-q",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("--min-confidence"), "{err}");
    // Two photos with one file name cannot both be linked: refused, naming both.
    let twin = dir.path().join("sample-1.png");
    std::fs::copy(&samples()[0].0, &twin).unwrap();
    let twin_s = twin.display().to_string();
    let (code, _, err) = run(
        &["label", "data/samples", &twin_s, "--out", &out_s, "-q"],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("same file name") && err.contains(&twin_s),
        "{err}"
    );
}

#[test]
fn version_names_the_compiled_in_models_by_sha256() {
    use sha2::{Digest, Sha256};
    let (code, out, err) = run(&["--version"], None);
    assert_eq!(code, 0, "{err}");
    for (role, file) in [
        ("reader", "onnx/housenum.onnx"),
        ("localiser", "onnx/localiser.onnx"),
        ("detector", "onnx/detector.onnx"),
    ] {
        let bytes = std::fs::read(common::root().join(file)).unwrap();
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let line = out
            .lines()
            .find(|l| l.starts_with(role))
            .unwrap_or_else(|| panic!("no {role} line in {out:?}"));
        assert!(line.contains(file) && line.ends_with(&hex), "{line}");
    }
    assert_eq!(
        housenum::read::reader::EMBEDDED_MODEL_SHA256.len(),
        64,
        "a sha256 in hex"
    );
}

#[test]
fn a_photo_without_a_number_says_so_in_text_json_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let wall = dir.path().join("wall.png");
    image::RgbImage::from_pixel(400, 300, image::Rgb([230, 225, 215]))
        .save(&wall)
        .unwrap();
    let wall = wall.display().to_string();
    let (code, out, err) = run(&["read", &wall], None);
    assert_eq!(code, 4, "{out}{err}");
    let f: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(&f[..2], &[wall.as_str(), "no number"], "{out}");
    let (code, out, _) = run(&["read", "--json", &wall], None);
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["number"].as_bool(), v["digits"].as_str()),
        (Some(false), Some(""))
    );
    // A photo with a number beside it: still 4, and the number is read.
    let (path, want) = &samples()[0];
    let (code, out, _) = run(&["read", &path.display().to_string(), &wall], None);
    assert_eq!(code, 4);
    assert_eq!(
        out.lines().next().unwrap().split('\t').nth(1),
        Some(want.as_str())
    );
}

#[test]
fn an_unsure_reading_is_withheld_as_no_number_under_locate_only() {
    let (path, want) = &samples()[0];
    let p = path.display().to_string();
    // Every reading is less than 1 sure: withheld, with its own confidence.
    let (code, out, err) = run(&["read", &p, "--no-number-below", "1"], None);
    assert_eq!(code, 4, "{out}{err}");
    let f: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(&f[..2], &[p.as_str(), "no number"], "{out}");
    let (_, given, _) = run(&["read", &p, "--no-number-below", "off"], None);
    let g: Vec<&str> = given.trim_end().split('\t').collect();
    assert_eq!((g[1], g[2]), (want.as_str(), f[2]), "{given}");
    let (code, out, _) = run(&["read", "--json", &p, "--no-number-below", "1"], None);
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            v["number"].as_bool(),
            v["digits"].as_str(),
            v["withheld"].as_str()
        ),
        (Some(false), Some(""), Some(want.as_str()))
    );
    assert_eq!(v["spans"].as_array().map(Vec::len), Some(0));
    // The default threshold keeps a sure reading; `full` never withholds.
    for args in [
        vec!["read", &p],
        vec!["read", &p, "--protocol", "full", "--no-number-below", "1"],
    ] {
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert_eq!(out.split('\t').nth(1), Some(want.as_str()), "{args:?}");
    }
    let (code, _, err) = run(&["read", &p, "--no-number-below", "1.5"], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_killed_read_output_resumes_losing_and_doubling_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 160, 3);
    let p = photos.display().to_string();
    // The uninterrupted run, given its files on standard input.
    let list: String = (1..=160).map(|i| format!("{p}/{i}.png\n")).collect();
    let whole = dir.path().join("whole.jsonl");
    let w = whole.display().to_string();
    let (code, out, err) = run(
        &["read", "--files-from", "-", "--output", &w],
        Some(list.as_bytes()),
    );
    assert!(code == 0 || code == 4, "{err}");
    assert!(out.is_empty(), "--output prints nothing: {out}");
    let want = std::fs::read_to_string(&whole).unwrap();
    assert_eq!(want.lines().count(), 160);
    // The same run killed (SIGKILL) once the first chunk is written, then a kill mid-line
    // simulated, then started again with the same output: the same file, line for line.
    let part = dir.path().join("part.jsonl");
    let mut child = std::process::Command::new(common::bin())
        .args(["read", &p, "--output", &part.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&part).map_or(0, |s| s.lines().count()) < 32 {
        assert!(
            started.elapsed().as_secs() < 120,
            "no output after two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let written = std::fs::read_to_string(&part).unwrap();
    let kept = written.lines().count();
    assert!(
        kept < 160,
        "the kill came too late to test anything ({kept} lines)"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&part)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"path\": \"cut"))
        .unwrap();
    let (code, _, err) = run(&["read", &p, "--output", &part.display().to_string()], None);
    assert!(code == 0 || code == 4, "{err}");
    assert!(
        err.contains(&format!("{kept} image(s) already read")),
        "{err}"
    );
    let got = std::fs::read_to_string(&part).unwrap();
    // Directory order is by name (1, 10, 100, …), the list's by number: compare as sets of
    // lines, each path once.
    let (mut a, mut b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    // A file that is not a `read --output` listing is refused, naming it.
    let (code, _, err) = run(&["read", &p, "--output", "Cargo.toml"], None);
    assert_eq!(code, 2);
    assert!(err.contains("Cargo.toml:1"), "{err}");
}

/// `examples/dask_read.py` on a local Dask cluster (two worker processes, shards of 16): every
/// line equals `housenum read --json`'s for the same photo; run again after a shard lost its
/// last lines, it reads only those and doubles nothing. Skipped when python3 cannot import
/// `distributed`, unless `HOUSENUM_REQUIRE_DASK=1` (CI), which makes that a failure.
#[test]
fn the_dask_example_reads_like_housenum_read_and_resumes() {
    use std::process::Command;
    if !common::python_has("dask.distributed", "HOUSENUM_REQUIRE_DASK") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 40, 4);
    let p = photos.display().to_string();
    let (code, direct, err) = run(&["read", "--json", &p], None);
    assert!(code == 0 || code == 4, "{err}");
    let out = dir.path().join("out");
    let dask = |what: &str| {
        let s = Command::new("python3")
            .arg(common::root().join("examples/dask_read.py"))
            .args([
                &p,
                "--out",
                &out.display().to_string(),
                "--shard-size",
                "16",
            ])
            .args([
                "--workers",
                "2",
                "--housenum",
                &common::bin().display().to_string(),
            ])
            .output()
            .unwrap();
        let code = s.status.code().unwrap();
        assert!(
            code == 0 || code == 4,
            "{what}: {}",
            String::from_utf8_lossy(&s.stderr)
        );
        std::fs::read_to_string(out.join("readings.jsonl")).unwrap()
    };
    let parse = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let want = parse(&direct);
    assert_eq!(want.len(), 40);
    assert_eq!(parse(&dask("first run")), want);
    // A shard that lost its last 5 lines (a worker killed mid-shard), then the same command.
    let shard = out.join("shard-00001.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&shard)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 16);
    std::fs::write(&shard, lines[..11].join("\n") + "\n").unwrap();
    assert_eq!(parse(&dask("resumed run")), want);
    let total: usize = (0..3)
        .map(|k| {
            std::fs::read_to_string(out.join(format!("shard-{k:05}.jsonl")))
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    assert_eq!(total, 40, "each photo read once over the shards");
}

/// `eval --zoom-out 2 --save-framed DIR` writes the photos it read, twice as large, and
/// `labels.tsv` with each one's digits and their box inside it.
#[test]
fn eval_saves_the_framed_photos_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 12, 6);
    let p = photos.display().to_string();
    let framed = dir.path().join("framed");
    let f = framed.display().to_string();
    let args = ["eval", &p, "--zoom-out", "2", "--save-framed", &f, "-q"];
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let truth: std::collections::HashMap<String, String> =
        std::fs::read_to_string(photos.join("labels.tsv"))
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_string(), f[1].to_string())
            })
            .collect();
    let labels = std::fs::read_to_string(framed.join("labels.tsv")).unwrap();
    assert_eq!(labels.lines().count(), 12);
    for line in labels.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(Some(&f[1].to_string()), truth.get(f[0]), "{line}");
        let original = image::image_dimensions(photos.join(f[0])).unwrap();
        let (w, h) = image::image_dimensions(framed.join(f[0])).unwrap();
        assert!(
            w >= 2 * original.0 - 1 && h >= 2 * original.1 - 1,
            "{line}: {w}x{h}"
        );
        let b: Vec<f32> = f[2].split(',').map(|v| v.parse().unwrap()).collect();
        assert!(
            b[0] >= 0.0 && b[1] >= 0.0 && b[0] < b[2] && b[1] < b[3],
            "{line}"
        );
        assert!(b[2] <= w as f32 && b[3] <= h as f32, "{line}");
    }
    assert_official_layout(&framed);
}

/// `dir`, written by `eval --save-framed`, is an official-layout folder: its `digitStruct.mat`
/// lists every image of `labels.tsv` with the same digits, its boxes' union is the box there,
/// and `eval` reads it.
fn assert_official_layout(dir: &std::path::Path) {
    let labels = std::fs::read_to_string(dir.join("labels.tsv")).unwrap();
    let set = housenum::data::svhn::SvhnSet::open(dir).unwrap();
    assert_eq!(set.records.len(), labels.lines().count());
    for (line, r) in labels.lines().zip(&set.records) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], r.name, "{line}");
        assert_eq!(
            f[1],
            housenum::alphabet::digits_to_string(&r.digits),
            "{line}"
        );
        let b: Vec<f32> = f[2].split(',').map(|v| v.parse().unwrap()).collect();
        let (l, t, rr, bb) = housenum::read::boxes_union(&r.boxes);
        for (x, y) in b.iter().zip([l, t, rr, bb]) {
            assert!((x - y).abs() < 1e-3, "{line}: {:?}", (l, t, rr, bb));
        }
    }
    let d = dir.display().to_string();
    let (code, _, err) = run(&["eval", &d, "--split", "all", "-q"], None);
    assert_eq!(code, 0, "{err}");
}

/// `eval --recombine … --save-framed DIR` writes the numbers it made (stacked or side by side,
/// framed looser or not) as an official-layout folder; `--save-framed` with nothing to frame is
/// refused rather than ignored.
#[test]
fn eval_saves_the_numbers_it_recombined() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 12, 9);
    let p = photos.display().to_string();
    for (name, extra, tall) in [
        ("rows", &[][..], false),
        ("stacked", &["--stacked"][..], true),
        ("stacked-2x", &["--stacked", "--zoom-out", "2"][..], true),
    ] {
        let framed = dir.path().join(name);
        let f = framed.display().to_string();
        let mut args = vec![
            "eval",
            &p,
            "--split",
            "all",
            "--recombine",
            "2-3",
            "--count",
            "5",
            "--save-framed",
            &f,
            "-q",
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 0, "{name}: {err}");
        assert_official_layout(&framed);
        let set = housenum::data::svhn::SvhnSet::open(&framed).unwrap();
        assert_eq!(set.records.len(), 5, "{name}");
        for r in &set.records {
            assert!((2..=3).contains(&r.digits.len()), "{name}: {r:?}");
            let (l, t, rr, b) = housenum::read::boxes_union(&r.boxes);
            assert_eq!(
                b - t > rr - l,
                tall,
                "{name}: {r:?} is a column only when stacked"
            );
        }
    }
    let f = dir.path().join("nothing").display().to_string();
    let (code, _, err) = run(&["eval", &p, "--save-framed", &f, "-q"], None);
    assert_ne!(code, 0);
    assert!(err.contains("--save-framed needs"), "{err}");
    let (code, _, err) = run(&["eval", &p, "--keep-digit-parts", "-q"], None);
    assert_ne!(code, 0);
    assert!(err.contains("--keep-digit-parts needs a canvas"), "{err}");
}

/// `eval --tight M` cuts every photo at its digits' box grown by M (saved in the official
/// layout, each label's box inside its photo, within M of the photo's edges), and takes no
/// other framing.
#[test]
fn eval_cuts_photos_at_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 6, 4);
    let p = photos.display().to_string();
    let originals = housenum::data::svhn::SvhnSet::open(&photos).unwrap();
    for margin in ["0", "0.25"] {
        let cut = dir.path().join(format!("cut-{margin}"));
        let c = cut.display().to_string();
        let args = [
            "eval",
            &p,
            "--split",
            "all",
            "--tight",
            margin,
            "--save-framed",
            &c,
            "-q",
        ];
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 0, "--tight {margin}: {err}");
        assert_official_layout(&cut);
        let set = housenum::data::svhn::SvhnSet::open(&cut).unwrap();
        assert_eq!(set.records.len(), originals.records.len());
        let m: f32 = margin.parse().unwrap();
        for (r, o) in set.records.iter().zip(&originals.records) {
            assert_eq!((&r.name, &r.digits), (&o.name, &o.digits));
            let (w, h) = image::image_dimensions(&r.path).unwrap();
            let (l, t, rr, b) = housenum::read::boxes_union(&r.boxes);
            let (bw, bh) = (rr - l, b - t);
            let case = format!(
                "--tight {margin}, {}: {w}x{h}, box {:?}",
                r.name,
                (l, t, rr, b)
            );
            assert!(
                l >= 0.0 && t >= 0.0 && rr <= w as f32 && b <= h as f32,
                "{case}"
            );
            assert!(l <= m * bw + 1.0 && w as f32 - rr <= m * bw + 1.0, "{case}");
            assert!(t <= m * bh + 1.0 && h as f32 - b <= m * bh + 1.0, "{case}");
        }
    }
    let (code, _, err) = run(&["eval", &p, "--tight", "0", "--zoom-out", "2", "-q"], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("--tight") && err.contains("--zoom-out"),
        "{err}"
    );
}

/// `strips` writes exactly the strips the reader makes (the full protocol: one per photo; the
/// locate protocol: seven framings each), and `bench-strips` times them through the plan that
/// `read` uses, whose per-operator profile shows the max-pool rewrite in place; piped into a
/// reader that stops early, `bench-strips` stops quietly.
#[test]
fn strips_are_what_read_feeds_the_model_and_bench_strips_times_them() {
    use housenum::{Protocol, Reader};
    let reader = Reader::embedded().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let photos: Vec<String> = samples()
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    for (protocol, name, per_photo) in
        [(Protocol::Full, "full", 1), (Protocol::Locate, "locate", 7)]
    {
        let out = dir.path().join(name);
        let o = out.display().to_string();
        let mut args = vec!["strips", "--protocol", name, "--out", &o];
        args.extend(photos.iter().map(String::as_str));
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 0, "{err}");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("strips.json")).unwrap()).unwrap();
        let entries = index["strips"].as_array().unwrap();
        assert_eq!(entries.len(), per_photo * photos.len(), "{name}");
        let mut k = 0;
        for path in &photos {
            let img = housenum::read::load_image(path.as_ref()).unwrap();
            for (region, strip) in reader.strips(&img, protocol, &[]).unwrap() {
                let e = &entries[k];
                k += 1;
                assert_eq!(e["path"], path.as_str());
                let r = [region.x0, region.y0, region.x1, region.y1];
                assert_eq!(e["region"], serde_json::json!(r));
                let w = e["width"].as_u64().unwrap() as usize;
                assert_eq!(w, strip.width);
                let bytes = std::fs::read(out.join(format!("w{w}.f32"))).unwrap();
                let per = 3 * 32 * w;
                let row = e["row"].as_u64().unwrap() as usize;
                let got: Vec<f32> = bytes[4 * per * row..4 * per * (row + 1)]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                assert_eq!(got, strip.data, "{name} {path}");
            }
        }
    }
    let full = dir.path().join("full").display().to_string();
    let (code, out, err) = run(&["bench-strips", &full, "--runs", "2", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["strips"], 6);
    let rates = v["strips_per_second"].as_array().unwrap();
    assert_eq!(rates.len(), 2);
    assert!(rates.iter().all(|r| r.as_f64().unwrap() > 0.0), "{out}");
    // Piped into a reader that stops after a line (`… | head -1`), it stops quietly too.
    let mut child = std::process::Command::new(common::bin())
        .args(["bench-strips", &full, "--runs", "100000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn housenum");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).unwrap();
    assert!(
        first.trim().parse::<f64>().is_ok_and(|r| r > 0.0),
        "{first}"
    );
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 60 {
            child.kill().unwrap();
            panic!("bench-strips went on writing to a closed pipe");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
    let (code, out, err) = run(&["bench-strips", &full, "--per-op"], None);
    assert_eq!(code, 0, "{err}");
    // The plan's rewrites: convolutions (with their pools), the LSTM and the log-softmax run
    // as our own ops.
    assert!(
        out.contains("DirectConv")
            && out.contains("FusedLstm")
            && out.contains("LogSoftmaxRows")
            && !out.contains("Im2col")
            && !out.contains("MaxPool")
            && !out.contains("Scan")
            && !out
                .lines()
                .any(|l| l.starts_with("Softmax ") || l.starts_with("Ln ")),
        "{out}"
    );
}

/// `housenum synth` writes `count` photos (seed `seed`) to `dir/photos`; returns that folder.
/// `read --candidates` gives the first answer and lists the detector's candidates as the second
/// look read them, best detector score first, with the verifier's scores, and answers exactly as
/// `read --json`; on a phone-size photo whose first look sees no number, the candidate on the
/// plate gave the answer, the verifier's best.
#[test]
fn read_candidates_lists_what_the_detectors_look_read() {
    let dir = tempfile::tempdir().unwrap();
    let phone = dir.path().join("phone.png");
    image::DynamicImage::ImageRgb32F(common::phone_photo(Some(("sample-3.png", 1)), (660, 900)))
        .to_rgb8()
        .save(&phone)
        .unwrap();
    let mut paths: Vec<String> = samples()
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    paths.push(phone.display().to_string());
    let parse = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut args = vec!["read", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let (_, plain, err) = run(&args, None);
    let plain = parse(&plain);
    args[1] = "--candidates";
    let (code, listed, _) = run(&args, None);
    assert!(code == 0 || code == 4, "{err}");
    let listed = parse(&listed);
    assert_eq!(listed.len(), paths.len());
    for (p, l) in plain.iter().zip(&listed) {
        for key in ["path", "digits", "confidence", "region", "spans"] {
            assert_eq!(p[key], l[key], "{key}: the answer is unchanged");
        }
        let spans = p["spans"].as_array().unwrap();
        let digits = p["digits"].as_str().unwrap();
        assert_eq!(spans.len(), digits.len(), "{p}: one span a digit");
        let region: Vec<f64> = serde_json::from_value(p["region"].clone()).unwrap();
        let mut left = f64::NEG_INFINITY;
        for (s, ch) in spans.iter().zip(digits.chars()) {
            assert_eq!(s["digit"].as_u64(), ch.to_digit(10).map(u64::from), "{p}");
            let c = s["confidence"].as_f64().unwrap();
            assert!(c > 0.0 && c <= 1.0, "{s}");
            let x: Vec<f64> = ["x0", "x1", "y0", "y1"]
                .iter()
                .map(|k| s[*k].as_f64().unwrap())
                .collect();
            assert!(x[0] < x[1] && x[0] >= left, "{p}: spans left to right");
            assert_eq!([x[2], x[3]], [region[1], region[3]], "{p}: the rows read");
            left = x[0];
        }
        let cands = l["candidates"].as_array().unwrap();
        assert!(cands.len() <= 5, "{l}");
        let size: Vec<u64> = serde_json::from_value(l["size"].clone()).unwrap();
        assert_eq!(size.len(), 2, "{l}");
        let first = &l["first"];
        let first_score = first["verifier"].as_f64().unwrap();
        let scores: Vec<f64> = cands.iter().map(|c| c["score"].as_f64().unwrap()).collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "{l}: best detector score first"
        );
        for c in cands {
            let s = c["score"].as_f64().unwrap();
            assert!(
                s > 0.5 && s <= 1.0,
                "{c}: a candidate's cell is over the threshold"
            );
            let b: Vec<f64> = serde_json::from_value(c["box"].clone()).unwrap();
            assert!(b[0] < b[2] && b[1] < b[3], "{c}");
            assert_eq!(
                c["verifier"].is_null(),
                c["digits"] == "",
                "{c}: only numbers are scored"
            );
        }
        let answered: Vec<&serde_json::Value> =
            cands.iter().filter(|c| c["answered"] == true).collect();
        let best = cands
            .iter()
            .filter_map(|c| c["verifier"].as_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        match answered[..] {
            [] => {
                assert!(l["looked"] == false || best <= first_score, "{l}");
                for key in ["digits", "confidence", "region"] {
                    assert_eq!(l[key], first[key], "{key}: the first answer stands");
                }
            }
            [c] => {
                assert_eq!(l["looked"], true, "{l}");
                assert!(c["verifier"].as_f64().unwrap() == best && best > first_score);
                assert_eq!(l["digits"], c["digits"], "{l}");
            }
            _ => panic!("{l}: one candidate answers at most"),
        }
    }
    let last = listed.last().unwrap();
    assert_eq!(last["digits"], "308", "{last}");
    let answered: Vec<&serde_json::Value> = last["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["answered"] == true)
        .collect();
    assert_eq!(answered.len(), 1, "{last}");
    let b: Vec<f64> = serde_json::from_value(answered[0]["box"].clone()).unwrap();
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    assert!(
        (660.0..802.0).contains(&cx) && (900.0..973.0).contains(&cy),
        "{last}"
    );
}

/// `eval --recombine` makes numbers from the folder's digits, stacked with `--stacked` and
/// framed looser with `--zoom-out`; `--phone` does not apply to them.
#[test]
fn eval_recombines_stacked_numbers_and_frames_them() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 12, 9);
    let p = photos.display().to_string();
    for extra in [
        &[][..],
        &["--stacked"][..],
        &["--stacked", "--zoom-out", "3"][..],
    ] {
        let mut args = vec![
            "eval",
            &p,
            "--recombine",
            "2-3",
            "--count",
            "7",
            "--json",
            "-q",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 0, "{extra:?}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["images"], 7, "{extra:?}");
        assert_eq!(report["unreadable"], 0, "{extra:?}");
    }
    let args = ["eval", &p, "--recombine", "2-3", "--phone", "-q"];
    assert_eq!(run(&args, None).0, 2, "--phone with --recombine is refused");
}

/// `eval --split fold --fold I/K`: the K folds and the validation split share out every photo
/// once; a fold without `--split fold`, or `--split fold` without one, is refused.
#[test]
fn eval_folds_share_out_the_photos_outside_validation() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 30, 5);
    let p = photos.display().to_string();
    let images = |extra: &[&str]| {
        let mut args = vec!["eval", &p, "--views", "1", "--json", "-q"];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 0, "{extra:?}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        report["images"].as_u64().unwrap()
    };
    let folds: Vec<u64> = ["1/3", "2/3", "3/3"]
        .iter()
        .map(|f| images(&["--split", "fold", "--fold", f]))
        .collect();
    let val = images(&["--split", "val"]);
    assert_eq!(folds.iter().sum::<u64>() + val, 30, "{folds:?} + {val}");
    assert!(folds.iter().all(|&n| n > 0), "{folds:?}");
    for bad in [
        &["--fold", "1/3"][..],
        &["--split", "fold"][..],
        &["--split", "fold", "--fold", "4/3"][..],
    ] {
        let mut args = vec!["eval", &p, "-q"];
        args.extend_from_slice(bad);
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
}

/// For the `data/kfold.sh` tests (None where python3 lacks what it joins with): a folder of 24
/// synthetic photos in the official layout, and where the folds go.
#[cfg(feature = "train")]
fn kfold_setup() -> Option<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> {
    if !common::python_has("csv, json, statistics", "HOUSENUM_REQUIRE_ORT") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 24, 7);
    let out = dir.path().join("kfold");
    Some((dir, photos, out))
}

/// `bash data/kfold.sh KIND OUT 2 --epochs 1 ARGS` over the photos with this build: its
/// standard output, and that with its standard error (the training log); fails the test if it
/// fails.
#[cfg(feature = "train")]
fn kfold_sh(
    photos: &std::path::Path,
    kind: &str,
    out: &std::path::Path,
    args: &[&str],
) -> (String, String) {
    let o = std::process::Command::new("bash")
        .arg(common::root().join("data/kfold.sh"))
        .args([kind, out.to_str().unwrap(), "2", "--epochs", "1"])
        .args(args)
        .env("SVHN", photos)
        .env("HOUSENUM", common::bin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let log = format!("{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{args:?}: {log}");
    (text, log)
}

/// `data/kfold.sh`: K readers, each measured on the fold it never saw, their outcomes joined
/// into one row per photo outside validation.
#[cfg(feature = "train")]
#[test]
fn kfold_trains_each_fold_and_joins_the_outcomes() {
    let Some((_dir, photos, out)) = kfold_setup() else {
        return;
    };
    let args = [
        "--channels",
        "4,4,8,8",
        "--hidden",
        "{i}",
        "--",
        "--views",
        "1",
    ];
    let (text, first_log) = kfold_sh(&photos, "reader", &out, &args);
    assert!(
        text.contains("fold 1/2") && text.contains("over 2 folds"),
        "{text}"
    );
    let rows = std::fs::read_to_string(out.join("outcomes.tsv")).unwrap();
    let names: Vec<&str> = rows
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a photo in two folds");
    // `{i}` in a training argument is the fold's index: fold I trained with I hidden units.
    for i in 1..=2 {
        let ck = housenum::train::checkpoint::Checkpoint::load(
            &out.join(format!("fold-{i}/last.safetensors")),
        )
        .unwrap();
        assert_eq!(ck.model.config.hidden, i, "fold {i}");
    }
    let (code, json, _) = common::run(
        &[
            "eval",
            photos.to_str().unwrap(),
            "--split",
            "val",
            "--json",
            "-q",
            "--views",
            "1",
        ],
        None,
    );
    assert_eq!(code, 0);
    let held_out: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        names.len() as u64 + held_out["images"].as_u64().unwrap(),
        24
    );
    // Run again: every fold's model exists, nothing is trained, the same outcomes are joined.
    assert!(first_log.contains("epoch"), "{first_log}");
    let (_, again_log) = kfold_sh(&photos, "reader", &out, &args);
    assert!(!again_log.contains("epoch"), "{again_log}");
    assert_eq!(
        std::fs::read_to_string(out.join("outcomes.tsv")).unwrap(),
        rows
    );
}

/// `data/kfold.sh detector`: each fold's detector trained with its fold held out at the folds'
/// validation share, measured under `locate` with it as the second look's detector; `{i}` in
/// an eval argument becomes the fold's index.
#[cfg(feature = "train")]
#[test]
fn kfold_trains_a_detector_for_each_fold() {
    let Some((_dir, photos, out)) = kfold_setup() else {
        return;
    };
    // `{i}` in an eval argument is the fold's index too: fold I measures I photos.
    let args = [
        "--channels",
        "2,2,2,2,2",
        "--cells",
        "4",
        "--",
        "--views",
        "1",
        "--limit",
        "{i}",
    ];
    let (text, _) = kfold_sh(&photos, "detector", &out, &args);
    assert!(text.contains("over 2 folds"), "{text}");
    let rows = std::fs::read_to_string(out.join("outcomes.tsv")).unwrap();
    assert_eq!(rows.lines().count() - 1, 1 + 2, "{rows}");
    for i in 1..=2 {
        let d = out.join(format!("fold-{i}"));
        assert!(d.join("detector.onnx").is_file(), "fold {i}");
        let ck = housenum::train::detector::DetCheckpoint::load(&d.join("detector.safetensors"))
            .unwrap();
        assert_eq!(ck.options["fold"], format!("{i}/2"), "fold {i}");
        assert_eq!(ck.options["val_fraction"], 0.1, "fold {i}");
    }
}

/// A model option given a directory fails naming it, each cause said once.
#[test]
fn model_options_given_a_directory_name_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let sample = samples()[0].0.display().to_string();
    for flag in ["--detector", "--localiser", "--model"] {
        let (code, _, err) = run(&["read", flag, &d, &sample], None);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains(&d), "{flag}: {err}");
        assert!(
            err.to_lowercase().contains("is a directory"),
            "{flag}: {err}"
        );
        assert!(
            err.matches("(os error").count() <= 1,
            "{flag}: the cause repeated: {err}"
        );
    }
}

/// `eval --no-number` reads photos with no number (each photo's framed canvas made of the
/// others' digit-free parts): every truth is empty, and the accuracy is the share read as no
/// number.
#[test]
fn eval_no_number_scores_the_share_read_as_no_number() {
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 12, 8);
    let p = photos.display().to_string();
    let framed = dir.path().join("framed");
    let f = framed.display().to_string();
    let outcomes = dir.path().join("outcomes.tsv");
    let o = outcomes.display().to_string();
    let args = [
        "eval",
        &p,
        "--no-number",
        "--zoom-out",
        "2",
        "--save-framed",
        &f,
        "--outcomes",
        &o,
        "--json",
        "-q",
    ];
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let labels = std::fs::read_to_string(framed.join("labels.tsv")).unwrap();
    assert_eq!(labels.lines().count(), 12);
    for line in labels.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(&f[1..], ["", ""], "{line}: no digits, no box");
        let original = image::image_dimensions(photos.join(f[0])).unwrap();
        let (w, h) = image::image_dimensions(framed.join(f[0])).unwrap();
        assert_eq!((w, h), (2 * original.0, 2 * original.1), "{line}");
    }
    let text = std::fs::read_to_string(&outcomes).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 12);
    let mut right = 0;
    for r in &rows {
        assert_eq!(r[1], "", "{r:?}: the truth is no number");
        assert_eq!(
            r[4] == "1",
            r[2].is_empty(),
            "{r:?}: right exactly when read as none"
        );
        right += (r[4] == "1") as usize;
    }
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acc = report["sequence_accuracy"].as_f64().unwrap();
    assert!(
        (acc - right as f64 / 12.0).abs() < 1e-9,
        "{acc} vs {right}/12"
    );
}

fn synth_photos(dir: &std::path::Path, count: usize, seed: u64) -> std::path::PathBuf {
    let photos = dir.join("photos");
    let p = photos.display().to_string();
    let (count, seed) = (count.to_string(), seed.to_string());
    let (code, _, err) = run(
        &[
            "synth", "--out", &p, "--count", &count, "--seed", &seed, "-q",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    photos
}

/// `synth --backgrounds` takes its backgrounds from the training split only, and with
/// `--fold I/K` only from the photos that fold's run trains on.
#[test]
fn synth_backgrounds_leave_out_validation_and_the_held_out_fold() {
    use housenum::data::svhn::{is_validation_name, Fold};
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 40, 12);
    let names: Vec<String> = (1..=40).map(|i| format!("{i}.png")).collect();
    // Photos outside validation and outside the held-out fold, if any.
    let trained_on = |fold: Option<&str>| {
        let fold = fold.map(|f| f.parse::<Fold>().unwrap());
        names
            .iter()
            .filter(|n| !is_validation_name(n, 0.1))
            .filter(|n| !fold.is_some_and(|f| f.contains(n, 0.1)))
            .count()
    };
    let cases: [(&[&str], usize); 3] = [
        (&[], trained_on(None)),
        (&["--fold", "1/3"], trained_on(Some("1/3"))),
        (&["--fold", "3/3"], trained_on(Some("3/3"))),
    ];
    for (extra, want) in cases {
        let out = dir.path().join("s").display().to_string();
        let bg = photos.display().to_string();
        let mut args = vec![
            "synth",
            "--out",
            &out,
            "--count",
            "2",
            "--backgrounds",
            &bg,
            "--json",
            "-q",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, err) = run(&args, None);
        assert_eq!(code, 0, "{extra:?}: {err}");
        let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(j["background_photos"], want, "{extra:?}");
        assert!(want > 0 && want < 40, "{extra:?}: {want}");
    }
    let (code, _, err) = run(&["synth", "--count", "1", "--fold", "1/3"], None);
    assert_eq!(code, 2, "--fold without --backgrounds: {err}");
}

/// `train-detector --fold I/K --extra DIR`: the photos of the other folds and every extra image
/// are trained on, the fold is held out, and the canvases come only from the photos.
#[cfg(feature = "train")]
#[test]
fn detector_training_holds_out_its_fold_and_adds_the_extra_images() {
    use housenum::data::svhn::{is_validation_name, Fold};
    let dir = tempfile::tempdir().unwrap();
    let photos = synth_photos(dir.path(), 30, 21);
    let extra = dir.path().join("extra");
    let (code, _, err) = run(
        &[
            "synth",
            "--out",
            extra.to_str().unwrap(),
            "--count",
            "7",
            "--seed",
            "3",
            "-q",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = (1..=30).map(|i| format!("{i}.png")).collect();
    // (training photos, held out) of a split at validation share 0.2, by fold or not.
    let split = |fold: Option<&str>| {
        let fold = fold.map(|f| f.parse::<Fold>().unwrap());
        let outside: Vec<&String> = names
            .iter()
            .filter(|n| !is_validation_name(n, 0.2))
            .collect();
        match fold {
            Some(f) => {
                let held = outside.iter().filter(|n| f.contains(n, 0.2)).count();
                (outside.len() - held, held)
            }
            None => (outside.len(), names.len() - outside.len()),
        }
    };
    let e = extra.display().to_string();
    let cases: [(&[&str], (usize, usize), usize); 3] = [
        (&[], split(None), 0),
        (&["--fold", "2/3"], split(Some("2/3")), 0),
        (&["--fold", "1/3", "--extra", &e], split(Some("1/3")), 7),
    ];
    for (i, (args, (train, held), extras)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("det{i}")).display().to_string();
        let p = photos.display().to_string();
        let mut all = vec![
            "train-detector",
            "--data",
            &p,
            "--out",
            &out,
            "--epochs",
            "1",
            "--channels",
            "2,2,2,2,2",
            "--cells",
            "4",
            "--quiet",
        ];
        all.extend_from_slice(args);
        let (code, _, err) = run(&all, None);
        assert_eq!(code, 0, "{args:?}: {err}");
        let want = format!("{train} training photos (");
        assert!(err.contains(&want), "{args:?}: want {want}: {err}");
        let want = format!("{extras} extra images, {held} held out");
        assert!(err.contains(&want), "{args:?}: want {want}: {err}");
        assert!(train > 0 && held > 0, "{args:?}");
    }
}

/// `synth --fonts` draws from every font, the training fonts, or only the held-out families.
#[test]
fn synth_fonts_choose_the_font_set() {
    let cases = [("all", 61), ("training", 46), ("held-out", 15)];
    for (flag, fonts) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s").display().to_string();
        let args = [
            "synth", "--out", &out, "--count", "4", "--fonts", flag, "--json", "-q",
        ];
        let (code, stdout, err) = run(&args, None);
        assert_eq!(code, 0, "{flag}: {err}");
        let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(j["fonts"], fonts, "{flag}");
    }
    let (code, _, err) = run(&["synth", "--fonts", "comic", "--count", "1"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("held-out"), "{err}");
}
