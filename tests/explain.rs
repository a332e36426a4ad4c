//! `read --explain`: the windows drawn for each digit line up with where that digit is.

mod common;

use housenum::read::explain::digit_spans;
use housenum::read::{load_image, strip_from_region, Region};
use housenum::Reader;

#[test]
fn explained_windows_line_up_with_the_drawn_digits() {
    let reader = Reader::embedded().unwrap();
    let mut checked = 0;
    for (path, want, boxes) in common::samples_with_boxes() {
        let img = load_image(&path).unwrap();
        let region = Region::full(img.width(), img.height());
        let d = reader
            .read_strip(&strip_from_region(&img, region, reader.geometry().stretch))
            .unwrap();
        assert_eq!(d.text(), want, "{}", path.display());
        let spans = digit_spans(&d, region, reader.geometry());
        assert_eq!(spans.len(), boxes.len());
        for (i, (s, b)) in spans.iter().zip(&boxes).enumerate() {
            let centre = (s.x0 + s.x1) / 2.0;
            let (left, right) = (b[0], b[0] + b[2]);
            // The emitting windows are centred on their digit: within the digit's own box,
            // and nearer to it than to any other digit's centre.
            assert!(
                centre >= left - 2.0 && centre <= right + 2.0,
                "{} digit {i}: window centre {centre} outside [{left}, {right}]",
                path.display()
            );
            let own = (centre - (left + right) / 2.0).abs();
            for (j, o) in boxes.iter().enumerate().filter(|(j, _)| *j != i) {
                assert!(
                    own < (centre - (o[0] + o[2] / 2.0)).abs(),
                    "{} digit {i} is nearer digit {j}",
                    path.display()
                );
            }
            assert!((0.0..=1.0).contains(&s.confidence));
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

#[test]
fn explain_writes_one_picture_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.png");
    let s = common::samples();
    let (code, _, err) = common::run(
        &[
            "read",
            "--explain",
            &one.display().to_string(),
            &s[0].0.display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let pic = image::open(&one).unwrap();
    let src = image::open(&s[0].0).unwrap();
    assert_eq!(pic.width(), src.width());
    assert!(
        pic.height() > src.height(),
        "a label band is added above the image"
    );
    let folder = dir.path().join("many");
    let (code, _, err) = common::run(
        &[
            "read",
            "--explain",
            &folder.display().to_string(),
            "data/samples",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    for (p, _) in &s {
        let stem = p.file_stem().unwrap().to_string_lossy();
        assert!(folder.join(format!("{stem}.explain.png")).is_file());
    }
}

#[test]
fn min_confidence_abstains_with_exit_code_three() {
    let s = common::samples();
    let p = s[0].0.display().to_string();
    let (code, out, _) = common::run(&["read", "--min-confidence", "1.01", &p], None);
    assert_eq!(code, 3);
    assert_eq!(out.split('\t').nth(1), Some("?"));
    let (code, out, _) = common::run(&["read", "--min-confidence", "0", &p], None);
    assert_eq!(code, 0);
    assert_eq!(out.split('\t').nth(1), Some(s[0].1.as_str()));
}
