//! The search protocol: several regions read, the most confident reading wins.

mod common;

use housenum::preprocess::{self, protocol_strips, Protocol};
use housenum::Reader;

#[test]
fn read_best_takes_the_most_confident_candidate_first_on_ties() {
    let reader = Reader::embedded().unwrap();
    let strips: Vec<preprocess::Strip> = common::samples()
        .iter()
        .map(|(p, _)| preprocess::preprocess_file(p, Protocol::Full, &[]).unwrap())
        .collect();
    // Candidate lists of several shapes, one with a duplicate (a tie).
    let lists: Vec<Vec<usize>> = vec![
        vec![0],
        vec![0, 1, 2],
        vec![3, 2, 1, 0],
        vec![4, 4],
        vec![5, 0, 5],
    ];
    let images: Vec<Vec<&preprocess::Strip>> = lists
        .iter()
        .map(|l| l.iter().map(|&i| &strips[i]).collect())
        .collect();
    let together = reader.read_best(&images).unwrap();
    for (cands, (idx, d)) in images.iter().zip(&together) {
        // The same strips read as one batch: exactly the same numbers.
        let each: Vec<f32> = reader
            .read_strips(cands)
            .unwrap()
            .iter()
            .map(|d| d.confidence)
            .collect();
        let best = each.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let first = each.iter().position(|&c| c == best).unwrap();
        let (alone_idx, alone) = reader
            .read_best(std::slice::from_ref(cands))
            .unwrap()
            .remove(0);
        assert_eq!((alone_idx, alone.confidence), (first, best), "{each:?}");
        // Batched with other images' candidates: the same up to float rounding.
        assert_eq!(*idx, first, "{each:?}");
        assert!((d.confidence - best).abs() < 1e-5);
        assert_eq!(d.digits, alone.digits);
    }
}

#[test]
fn search_reading_is_the_best_of_its_regions_and_never_less_confident_than_full() {
    let reader = Reader::embedded().unwrap();
    for (path, _) in common::samples() {
        let img = preprocess::load_image(&path).unwrap();
        let each: Vec<_> = protocol_strips(&img, Protocol::Search, &[])
            .iter()
            .map(|(_, s)| reader.read_strip(s).unwrap())
            .collect();
        let (region, d) = reader.read_image(&img, Protocol::Search, &[]).unwrap();
        let max = each.iter().map(|d| d.confidence).fold(0.0, f32::max);
        assert_eq!(d.confidence, max, "{}", path.display());
        let regions = preprocess::protocol_regions(Protocol::Search, img.dimensions(), &[]);
        let i = regions.iter().position(|r| *r == region).unwrap();
        assert_eq!(each[i].digits, d.digits);
        let full = reader.read_file_with(&path, Protocol::Full, &[]).unwrap();
        assert_eq!(
            full.digits, each[0].digits,
            "the first region is the whole image"
        );
        assert!(d.confidence >= full.confidence);
        assert_eq!(reader.read_file(&path).unwrap(), d, "read_file searches");
    }
}

#[test]
fn cli_read_protocols() {
    let (path, _) = &common::samples()[0];
    let p = path.display().to_string();
    let reader = Reader::embedded().unwrap();
    for (arg, protocol) in [("search", Protocol::Search), ("full", Protocol::Full)] {
        let (code, out, err) = common::run(&["read", "--protocol", arg, &p], None);
        assert_eq!(code, 0, "{err}");
        let d = reader.read_file_with(path, protocol, &[]).unwrap();
        assert_eq!(out, format!("{p}\t{}\t{:.3}\n", d.text(), d.confidence));
    }
    let (code, out, _) = common::run(&["read", &p], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("{p}\t")),
        "default is search: {out}"
    );
    let (.., search, _) = common::run(&["read", "--protocol", "search", &p], None);
    assert_eq!(out, search);
}
