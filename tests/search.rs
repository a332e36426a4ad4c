//! The search protocol: several regions read, the most confident reading wins.

mod common;

use housenum::read::calibration::Calibration;
use housenum::read::search;
use housenum::read::{self, protocol_strips, Protocol};
use housenum::Reader;

#[test]
fn read_best_applies_the_search_rule_to_batched_readings() {
    let reader = Reader::embedded().unwrap();
    let stretch = reader.geometry().stretch;
    let per_image: Vec<Vec<(read::Region, read::Strip)>> = common::samples()
        .iter()
        .map(|(p, _)| {
            let img = read::load_image(p).unwrap();
            protocol_strips(&img, Protocol::Search, &[], stretch)
        })
        .collect();
    let images: Vec<Vec<(read::Region, &read::Strip)>> = per_image
        .iter()
        .map(|c| c.iter().map(|(r, s)| (*r, s)).collect())
        .collect();
    let together = reader.read_best(&images, Protocol::Search).unwrap();
    // The choice is made on raw confidences; the answer's confidence is then calibrated.
    let mut raw = Reader::embedded().unwrap();
    raw.set_calibration(Calibration::IDENTITY);
    let cal = reader.calibration();
    for (cands, (idx, d)) in images.iter().zip(&together) {
        let regions: Vec<read::Region> = cands.iter().map(|(r, _)| *r).collect();
        let plain: Vec<&read::Strip> = cands.iter().map(|(_, s)| *s).collect();
        let each = raw.read_strips(&plain).unwrap();
        let want = search::choose(&regions, &each, reader.geometry());
        let want_conf = cal.apply(each[want].log_prob);
        // Alone: the same batches as `read_strips`, so exactly the same numbers.
        let (alone_idx, alone) = reader
            .read_best(std::slice::from_ref(cands), Protocol::Search)
            .unwrap()
            .remove(0);
        assert_eq!(alone_idx, want);
        assert_eq!(alone.digits, each[want].digits);
        assert!((alone.confidence - want_conf).abs() < 1e-5);
        // Batched with other images' candidates: the same up to float rounding.
        assert_eq!(*idx, want);
        assert!((d.confidence - want_conf).abs() < 1e-5);
        assert_eq!(d.digits, each[want].digits);
    }
}

#[test]
fn search_reading_is_the_chosen_region() {
    let reader = Reader::embedded().unwrap();
    let mut raw = Reader::embedded().unwrap();
    raw.set_calibration(Calibration::IDENTITY);
    for (path, _) in common::samples() {
        let img = read::load_image(&path).unwrap();
        let each: Vec<_> = protocol_strips(&img, Protocol::Search, &[], reader.geometry().stretch)
            .iter()
            .map(|(_, s)| raw.read_strip(s).unwrap())
            .collect();
        let (region, d) = reader.read_image(&img, Protocol::Search, &[]).unwrap();
        let regions = read::protocol_regions(Protocol::Search, img.dimensions(), &[]);
        let i = regions.iter().position(|r| *r == region).unwrap();
        assert_eq!(i, search::choose(&regions, &each, reader.geometry()));
        assert_eq!(each[i].digits, d.digits);
        let full = reader.read_file_with(&path, Protocol::Full, &[]).unwrap();
        assert_eq!(
            full.digits, each[0].digits,
            "the first region is the whole image"
        );
        let located = reader.read_image(&img, Protocol::Locate, &[]).unwrap().1;
        assert_eq!(
            reader.read_file(&path).unwrap(),
            located,
            "read_file locates"
        );
    }
}

#[test]
fn cli_read_protocols() {
    let (path, _) = &common::samples()[0];
    let p = path.display().to_string();
    let reader = Reader::embedded().unwrap();
    for (arg, protocol) in [
        ("locate", Protocol::Locate),
        ("search", Protocol::Search),
        ("full", Protocol::Full),
    ] {
        let (code, out, err) = common::run(&["read", "--protocol", arg, &p], None);
        assert_eq!(code, 0, "{err}");
        let d = reader.read_file_with(path, protocol, &[]).unwrap();
        assert_eq!(out, format!("{p}\t{}\t{:.3}\n", d.text(), d.confidence));
    }
    let (code, out, _) = common::run(&["read", &p], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("{p}\t")),
        "default is locate: {out}"
    );
    let (.., located, _) = common::run(&["read", "--protocol", "locate", &p], None);
    assert_eq!(out, located);
}

#[test]
fn read_region_column_names_the_region_read() {
    let (path, _) = &common::samples()[1];
    let p = path.display().to_string();
    let img = read::load_image(path).unwrap();
    let reader = Reader::embedded().unwrap();
    for protocol in ["search", "full"] {
        let (code, out, err) = common::run(&["read", "--region", "--protocol", protocol, &p], None);
        assert_eq!(code, 0, "{err}");
        let f: Vec<&str> = out.trim_end().split('\t').collect();
        assert_eq!(f.len(), 4, "{out}");
        let r: Vec<u32> = f[3].split(',').map(|x| x.parse().unwrap()).collect();
        let p = if protocol == "full" {
            Protocol::Full
        } else {
            Protocol::Search
        };
        let (region, d) = reader.read_image(&img, p, &[]).unwrap();
        assert_eq!(r, vec![region.x0, region.y0, region.x1, region.y1]);
        assert_eq!(f[1], d.text());
    }
    let (_, json, _) = common::run(&["read", "--json", &p], None);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["region"].as_array().unwrap().len(), 4);
}
