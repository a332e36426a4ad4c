//! Property tests (bounded fuzzing) of the input path: decoding arbitrary or mutated bytes,
//! preprocessing images of any size, and CTC decoding of arbitrary scores. Nothing may panic;
//! what succeeds must produce well-formed strips and readings.

mod common;

use housenum::alphabet::NUM_CLASSES;
use housenum::read::ctc::greedy_decode;
use housenum::read::{decode_image, strip_from_region, Region, HEIGHT, MAX_WIDTH, MIN_WIDTH};
use proptest::prelude::*;
use std::path::Path;

fn check_strip(img: &image::Rgb32FImage) {
    let s = strip_from_region(img, Region::full(img.width(), img.height()), 1.0);
    assert!(s.width >= MIN_WIDTH && s.width <= MAX_WIDTH);
    assert_eq!(s.data.len(), 3 * HEIGHT * s.width);
    assert!(s.data.iter().all(|v| v.is_finite()));
}

fn sample_png() -> Vec<u8> {
    std::fs::read(&common::samples()[0].0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(img) = decode_image(&bytes, Path::new("fuzz.bin")) {
            check_strip(&img);
        }
    }

    #[test]
    fn mutated_png_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                cut in any::<prop::sample::Index>()) {
        let mut bytes = sample_png();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let keep = 8 + cut.index(bytes.len() - 8);
        bytes.truncate(keep);
        match decode_image(&bytes, Path::new("mutated.png")) {
            Ok(img) => check_strip(&img),
            Err(e) => prop_assert!(e.to_string().contains("mutated.png")),
        }
    }

    #[test]
    fn images_of_any_size_preprocess(w in 1u32..400, h in 1u32..400, v in 0f32..1.0) {
        let img = image::Rgb32FImage::from_fn(w, h, |x, y| image::Rgb([v, (x % 7) as f32 / 7.0, (y % 5) as f32 / 5.0]));
        check_strip(&img);
    }

    #[test]
    fn decoding_arbitrary_scores(t in 0usize..40, seed in any::<u64>()) {
        let mut r = housenum::rng::Rng::new(seed);
        let mut lp: Vec<f32> = (0..t * NUM_CLASSES).map(|_| r.normal() * 3.0).collect();
        housenum::engine::layers::log_softmax_rows(&mut lp, NUM_CLASSES);
        let d = greedy_decode(&lp, t, 1, 0);
        prop_assert!(d.digits.len() <= t);
        prop_assert!((0.0..=1.0).contains(&d.confidence));
        prop_assert_eq!(d.spans.len(), d.digits.len());
        prop_assert!(d.spans.windows(2).all(|w| w[0].1 < w[1].0));
    }
}
