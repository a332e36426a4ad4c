//! The SVHN reader against the official fixtures and the full `train/` folder.

mod common;

use std::collections::HashMap;

use housenum::data::svhn::{read_digit_struct, write_digit_struct, SvhnSet};
use housenum::read::DigitBox;
use housenum::Error;

fn csv_labels(path: &std::path::Path) -> HashMap<String, (Vec<u8>, Vec<DigitBox>)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let mut it = l.split(',');
            let name = it.next().unwrap().to_string();
            let digits = housenum::alphabet::digits_from_str(it.next().unwrap()).unwrap();
            let boxes = it
                .next()
                .unwrap()
                .split(';')
                .map(|b| {
                    let v: Vec<f32> = b.split(':').map(|x| x.parse().unwrap()).collect();
                    DigitBox {
                        left: v[0],
                        top: v[1],
                        width: v[2],
                        height: v[3],
                    }
                })
                .collect();
            (name, (digits, boxes))
        })
        .collect()
}

#[test]
fn official_fixtures_read_with_missing_images_counted() {
    let Some(svhn) = common::svhn() else { return };
    let labels = csv_labels(&svhn.join("labels/train_all.csv"));
    // (folder, entries in digitStruct.mat, images present)
    let cases = [
        ("fixtures/official-first40/train", 39, 3),
        ("fixtures/official-first40/extra", 40, 3),
    ];
    for (dir, entries, present) in cases {
        let set = SvhnSet::open(&svhn.join(dir)).unwrap();
        assert_eq!(set.records.len(), present, "{dir}");
        assert_eq!(set.missing.len(), entries - present, "{dir}");
        assert!(set
            .missing_summary()
            .unwrap()
            .contains(&format!("{}", entries - present)));
        for r in &set.records {
            assert_eq!(r.digits.len(), r.boxes.len());
            let (w, h) = r.image_size.unwrap();
            for b in &r.boxes {
                assert!(
                    b.left >= 0.0
                        && b.top >= 0.0
                        && b.right() <= w as f32
                        && b.bottom() <= h as f32,
                    "{dir}/{}: {b:?}",
                    r.name
                );
            }
        }
        if dir.ends_with("train") {
            for r in &set.records {
                let (digits, _) = &labels[&r.name];
                assert_eq!(&r.digits, digits, "{}", r.name);
            }
        }
    }
}

#[test]
fn full_train_folder_agrees_with_the_label_table() {
    let Some(svhn) = common::svhn() else { return };
    let labels = csv_labels(&svhn.join("labels/train_all.csv"));
    let set = SvhnSet::open(&svhn.join("train")).unwrap();
    assert_eq!(set.records.len(), 2026);
    assert!(set.missing.is_empty());
    let mut zeros = 0;
    let mut bad = Vec::new();
    for r in &set.records {
        let (digits, boxes) = &labels[&r.name];
        zeros += r.digits.iter().filter(|&&d| d == 0).count();
        let (w, h) = r.image_size.unwrap();
        let want: Vec<DigitBox> = boxes.iter().map(|b| b.clamped(w, h)).collect();
        if &r.digits != digits || r.boxes != want {
            bad.push(r.name.clone());
        }
    }
    assert!(
        bad.is_empty(),
        "records that disagree with train_all.csv: {bad:?}"
    );
    assert!(zeros > 0, "label 10 must become the digit 0");
}

#[test]
fn listed_digit_parts_are_parts_the_benchmark_cuts() {
    // Every row of data/digit_parts.tsv names a training photo of that size, and
    // background_parts cuts a part on that side of its number: the list and the geometry agree.
    use housenum::data::{framing::digit_parts, synth::background_parts};
    let Some(svhn) = common::svhn() else { return };
    let set = SvhnSet::open(&svhn.join("train")).unwrap();
    for part in digit_parts() {
        let r = set
            .records
            .iter()
            .find(|r| r.name == part.name)
            .unwrap_or_else(|| panic!("{} is not a training photo", part.name));
        let img = housenum::read::load_image(&r.path).unwrap();
        assert_eq!(img.dimensions(), part.size, "{}", part.name);
        let sides: Vec<_> = background_parts(&img, &r.boxes)
            .into_iter()
            .map(|(side, _)| side)
            .collect();
        assert!(sides.contains(&part.side), "{part:?}: cut only {sides:?}");
    }
}

#[test]
fn broken_digit_struct_files_get_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.mat");
    std::fs::write(&garbage, b"MATLAB 7.3 MAT-file, but not really").unwrap();
    let empty = dir.path().join("empty.mat");
    std::fs::write(&empty, b"").unwrap();
    let mut cases = vec![
        garbage,
        empty,
        dir.path().join("missing.mat"),
        dir.path().to_path_buf(),
    ];
    if let Some(svhn) = common::svhn() {
        let bytes =
            std::fs::read(svhn.join("fixtures/official-first40/train/digitStruct.mat")).unwrap();
        let trunc = dir.path().join("truncated.mat");
        std::fs::write(&trunc, &bytes[..bytes.len() / 3]).unwrap();
        cases.push(trunc);
    }
    for path in cases {
        let err = read_digit_struct(&path).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            matches!(err, Error::DigitStruct { .. } | Error::Io { .. }),
            "{msg}"
        );
    }
}

#[test]
fn written_digit_struct_reads_back_exactly() {
    let b = |left: f32, top: f32| DigitBox {
        left,
        top,
        width: 7.5,
        height: 15.0,
    };
    let entries = vec![
        ("1.png".to_string(), vec![0], vec![b(-2.0, 3.0)]),
        (
            "2.png".to_string(),
            vec![4, 0, 9],
            vec![b(1.0, 2.0), b(9.0, 2.5), b(17.0, 1.0)],
        ),
        (
            "10.png".to_string(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
            (0..10).map(|i| b(8.0 * i as f32, 0.0)).collect(),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mat = dir.path().join("digitStruct.mat");
    write_digit_struct(&mat, &entries).unwrap();
    let bytes = std::fs::read(&mat).unwrap();
    assert!(bytes.starts_with(b"MATLAB 7.3 MAT-file"));
    assert_eq!(&bytes[126..128], b"IM");
    assert_eq!(&bytes[512..516], b"\x89HDF");
    assert_eq!(read_digit_struct(&mat).unwrap(), entries);
    // An entry whose boxes do not match its digits is refused, naming the file.
    let bad = vec![("x.png".to_string(), vec![1, 2], vec![b(0.0, 0.0)])];
    let err = write_digit_struct(&dir.path().join("bad.mat"), &bad).unwrap_err();
    assert!(err.to_string().contains("bad.mat"), "{err}");
}

#[test]
fn official_train_entries_survive_a_write_read_round_trip() {
    let Some(svhn) = common::svhn() else { return };
    let official = read_digit_struct(&svhn.join("train/digitStruct.mat")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mat = dir.path().join("digitStruct.mat");
    write_digit_struct(&mat, &official).unwrap();
    assert_eq!(read_digit_struct(&mat).unwrap(), official);
}

#[test]
fn split_even_table() {
    // (box, n, expected lefts, expected width)
    type Case = ((f32, f32, f32, f32), usize, &'static [f32], f32);
    let cases: [Case; 3] = [
        ((10.0, 5.0, 40.0, 25.0), 3, &[10.0, 20.0, 30.0], 10.0),
        ((0.0, 0.0, 8.0, 4.0), 1, &[0.0], 8.0),
        ((2.0, 1.0, 12.0, 9.0), 4, &[2.0, 4.5, 7.0, 9.5], 2.5),
    ];
    for (rect, n, lefts, width) in cases {
        let b = DigitBox::split_even(rect, n);
        assert_eq!(b.len(), n);
        for (d, &l) in b.iter().zip(lefts) {
            assert_eq!((d.left, d.width), (l, width), "{rect:?} into {n}");
            assert_eq!((d.top, d.bottom()), (rect.1, rect.3), "{rect:?}");
        }
    }
    assert!(DigitBox::split_even((0.0, 0.0, 8.0, 4.0), 0).is_empty());
}
