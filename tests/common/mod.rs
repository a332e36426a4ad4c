//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/svhn` (or `$HOUSENUM_SVHN`) when present. When absent the data tests return
/// early, unless `HOUSENUM_REQUIRE_DATA=1` (set by CI), which turns absence into a failure.
pub fn svhn() -> Option<PathBuf> {
    let dir = std::env::var_os("HOUSENUM_SVHN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/svhn"));
    if dir.join("train/digitStruct.mat").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("HOUSENUM_REQUIRE_DATA").as_deref() != Ok("1"),
        "SVHN data required but not found at {}",
        dir.display()
    );
    eprintln!(
        "note: {} not found; skipping the parts of this test that need SVHN",
        dir.display()
    );
    None
}

/// The `housenum` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_housenum"))
}

/// Run the binary; returns (exit code, stdout, stderr).
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn housenum");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().expect("wait for housenum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The sample images and their expected numbers (`data/samples/expected.tsv`).
pub fn samples() -> Vec<(PathBuf, String)> {
    samples_with_boxes()
        .into_iter()
        .map(|(p, d, _)| (p, d))
        .collect()
}

/// The samples with their digit boxes (left, top, width, height), as drawn.
pub fn samples_with_boxes() -> Vec<(PathBuf, String, Vec<[f32; 4]>)> {
    let dir = root().join("data/samples");
    std::fs::read_to_string(dir.join("expected.tsv"))
        .expect("data/samples/expected.tsv")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let boxes = f[2]
                .split(';')
                .map(|b| {
                    let v: Vec<f32> = b.split(':').map(|x| x.parse().unwrap()).collect();
                    [v[0], v[1], v[2], v[3]]
                })
                .collect();
            (dir.join(f[0]), f[1].to_string(), boxes)
        })
        .collect()
}

/// Copy a file into `dir` under `name`.
pub fn copy_to(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(src, &dst).expect("copy");
    dst
}

/// Whether python3 can run `import {modules}`. When it cannot, the tests that need it return
/// early, unless the environment variable `require` is `1` (set by CI), which makes that a
/// failure.
pub fn python_has(modules: &str, require: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "python3 with {modules} required ({require}=1)"
        );
        eprintln!("note: python3 with {modules} not found; skipping");
    }
    ok
}

/// A phone-size photo (2,000 × 1,500, a lit wall with sensor noise) with a plate pasted in:
/// `sample` scaled `k` times at `(x, y)`; `None` leaves the wall bare.
pub fn phone_photo(sample: Option<(&str, u32)>, (x, y): (u32, u32)) -> image::Rgb32FImage {
    let (w, h) = (2000u32, 1500u32);
    let mut rng = housenum::rng::Rng::new(11);
    let mut img = image::Rgb32FImage::from_fn(w, h, |px, py| {
        let (fx, fy) = (px as f32 / w as f32, py as f32 / h as f32);
        let mut shade =
            |tint: f32| (0.35 + 0.3 * fx * tint + 0.1 * fy + 0.03 * rng.normal()).clamp(0.0, 1.0);
        image::Rgb([shade(1.0), shade(0.9), shade(0.8)])
    });
    if let Some((file, k)) = sample {
        let plate = housenum::read::load_image(&root().join("data/samples").join(file)).unwrap();
        let (pw, ph) = (plate.width() * k, plate.height() * k);
        let plate = image::imageops::resize(&plate, pw, ph, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut img, &plate, x as i64, y as i64);
    }
    img
}
