//! Photos framed looser than SVHN's, for the framing benchmark (`housenum eval --zoom-out K`,
//! `--phone`): what a user meets when the number is small in the frame.
//!
//! - [`zoom_out`] places a labelled photo at a random position in a canvas `k` times its width
//!   and height, filled with digit-free patches of *other* photos
//!   ([`background_patches`](crate::data::synth::background_patches)), so
//!   the number spans `1/k` of the frame it spanned;
//! - [`phone_size`] scales a photo up to a phone camera's width (4,000 px), the number with it;
//!   [`phone_factors`] gives the zoom-out that frames a photo like a landscape phone photo (4:3).
//!
//! - [`cropped_close`] cuts a photo to its number, as people crop a photo to what they want
//!   read (`eval --tight M`).
//!
//! All move the digit boxes along, so `crop` reads the same number wherever it went and is
//! the reference `read`'s default is compared with. Every picture is a function of its seed.
//!
//! The canvases are meant to hold no digits, but SVHN labels only the house's own number: a
//! neighbour's number, or a digit cut by a tight label box, can lie in a part cut as digit-free.
//! [`DIGIT_PARTS`] lists those found in SVHN's training photos, for the benchmark to leave out
//! ([`shows_digits`]).

use image::imageops::{self, FilterType};
use image::Rgb32FImage;

use crate::data::synth::Side;
use crate::read::{boxes_union, expand_region, DigitBox};
use crate::rng::Rng;

/// `data/digit_parts.tsv`: parts of SVHN's training photos that
/// [`background_parts`](crate::data::synth::background_parts) cuts as digit-free but that show
/// digits (one row each: name, width, height, side, what `housenum read` read there; `#` starts
/// a comment).
pub static DIGIT_PARTS: &str = include_str!("../../data/digit_parts.tsv");

/// One row of [`DIGIT_PARTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigitPart {
    /// The photo's file name, e.g. `1289.png`.
    pub name: &'static str,
    /// The photo's width and height, so that another folder's `N.png` is not taken for it.
    pub size: (u32, u32),
    /// Where the part lies around the number.
    pub side: Side,
}

/// The rows of [`DIGIT_PARTS`].
///
/// # Panics
/// On a malformed row (the file is compiled in, and a test parses it).
pub fn digit_parts() -> impl Iterator<Item = DigitPart> {
    DIGIT_PARTS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&'static str> = l.split('\t').collect();
            let side = Side::ALL.into_iter().find(|s| f.get(3) == Some(&s.name()));
            let number = |k: usize| f.get(k).and_then(|v| v.parse::<u32>().ok());
            match (f.len(), number(1), number(2), side) {
                (5, Some(w), Some(h), Some(side)) => DigitPart {
                    name: f[0],
                    size: (w, h),
                    side,
                },
                _ => panic!("data/digit_parts.tsv: malformed row {l:?}"),
            }
        })
}

/// Whether the part on `side` of the photo `name` of `size` (width, height) is listed in
/// [`DIGIT_PARTS`] as showing digits.
pub fn shows_digits(name: &str, size: (u32, u32), side: Side) -> bool {
    digit_parts().any(|p| p.name == name && p.size == size && p.side == side)
}

/// The width [`phone_size`] scales photos to, pixels: a 12-megapixel phone photo's.
pub const PHONE_WIDTH: u32 = 4_000;

/// The least number height [`phone_size`] keeps, pixels.
pub const MIN_NUMBER_HEIGHT: f32 = 20.0;

/// `img` (with its digit `boxes`) placed at a random position in a canvas `kx` times its width
/// and `ky` times its height (both ≥ 1), the rest filled row by row with `patches` scaled to
/// rows a quarter to a half of the canvas high. Returns the canvas and the boxes moved with the
/// photo. With no patches the canvas is mid-grey.
///
/// # Panics
/// When `kx` or `ky` is below 1.
pub fn zoom_out(
    img: &Rgb32FImage,
    boxes: &[DigitBox],
    (kx, ky): (f32, f32),
    patches: &[&Rgb32FImage],
    rng: &mut Rng,
) -> (Rgb32FImage, Vec<DigitBox>) {
    assert!(
        kx >= 1.0 && ky >= 1.0,
        "zoom-out factors {kx}, {ky} below 1"
    );
    let (w, h) = img.dimensions();
    let (cw, ch) = (
        ((w as f32 * kx).round() as u32).max(w),
        ((h as f32 * ky).round() as u32).max(h),
    );
    let mut canvas = background(cw, ch, patches, rng);
    let (x0, y0) = (
        rng.below((cw - w) as usize + 1),
        rng.below((ch - h) as usize + 1),
    );
    imageops::replace(&mut canvas, img, x0 as i64, y0 as i64);
    let moved = boxes
        .iter()
        .map(|b| b.scaled((1.0, 1.0), (x0 as f32, y0 as f32)))
        .collect();
    (canvas, moved)
}

/// A `width × height` canvas filled row by row with `patches` scaled to rows a quarter to a
/// half of it high ([`zoom_out`]'s background; with digit-free patches, a photo with no number
/// for `eval --no-number`). Mid-grey with no patches.
pub fn background(width: u32, height: u32, patches: &[&Rgb32FImage], rng: &mut Rng) -> Rgb32FImage {
    let (cw, ch) = (width, height);
    let mut canvas = Rgb32FImage::from_pixel(cw, ch, image::Rgb([0.5; 3]));
    if !patches.is_empty() {
        let mut y = 0;
        while y < ch {
            let rh = ((ch as f32 * rng.uniform(0.25, 0.5)).round() as u32).clamp(1, ch - y);
            let mut x = 0;
            while x < cw {
                let p = patches[rng.below(patches.len())];
                let pw = ((p.width() as f32 * rh as f32 / p.height() as f32).round() as u32)
                    .clamp(1, cw - x);
                let scaled = imageops::resize(p, pw, rh, FilterType::Triangle);
                imageops::replace(&mut canvas, &scaled, x as i64, y as i64);
                x += pw;
            }
            y += rh;
        }
    }
    canvas
}

/// The zoom-out factors `(kx, ky)` that place a `width × height` photo in a landscape 4:3 canvas
/// `k` times its width (taller than `k` times its height when the photo is wider than 4:3).
pub fn phone_factors(width: u32, height: u32, k: f32) -> (f32, f32) {
    let ky = (0.75 * k * width as f32 / height as f32).max(k);
    (k, ky)
}

/// `img` scaled (triangle filter) to [`PHONE_WIDTH`] pixels wide, or further when that would
/// leave the number under [`MIN_NUMBER_HEIGHT`] pixels high, with its boxes scaled along.
pub fn phone_size(img: &Rgb32FImage, boxes: &[DigitBox]) -> (Rgb32FImage, Vec<DigitBox>) {
    let (w, h) = img.dimensions();
    let number_height = if boxes.is_empty() {
        f32::INFINITY
    } else {
        let (_, t, _, b) = boxes_union(boxes);
        (b - t).max(1.0)
    };
    let s = (PHONE_WIDTH as f32 / w as f32).max(MIN_NUMBER_HEIGHT / number_height);
    let (sw, sh) = (
        (w as f32 * s).round().max(1.0) as u32,
        (h as f32 * s).round().max(1.0) as u32,
    );
    let scaled = imageops::resize(img, sw, sh, FilterType::Triangle);
    let (fx, fy) = (sw as f32 / w as f32, sh as f32 / h as f32);
    let moved = boxes
        .iter()
        .map(|b| b.scaled((fx, fy), (0.0, 0.0)))
        .collect();
    (scaled, moved)
}

/// `img` cut to its number: the union of the digit `boxes` grown by `margin` times its width
/// and height on each side (0: at the digits' edges), rounded outwards to whole pixels and
/// clamped to the photo ([`expand_region`], as the `crop` protocol grows its box). Returns the cut and the boxes moved into it. A photo without boxes is
/// returned whole.
///
/// # Panics
/// When `margin` is negative.
pub fn cropped_close(
    img: &Rgb32FImage,
    boxes: &[DigitBox],
    margin: f32,
) -> (Rgb32FImage, Vec<DigitBox>) {
    assert!(margin >= 0.0, "margin {margin} below 0");
    if boxes.is_empty() {
        return (img.clone(), Vec::new());
    }
    let grow = 1.0 + 2.0 * margin;
    let r = expand_region(boxes_union(boxes), grow, grow, img.dimensions());
    let (x0, y0) = (r.x0, r.y0);
    let cut = imageops::crop_imm(img, x0, y0, r.width(), r.height()).to_image();
    let moved = boxes
        .iter()
        .map(|b| b.scaled((1.0, 1.0), (-(x0 as f32), -(y0 as f32))))
        .collect();
    (cut, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_parts_are_named_by_photo_size_and_side_table() {
        let parts: Vec<DigitPart> = digit_parts().collect();
        assert_eq!(parts.len(), 35);
        for (i, p) in parts.iter().enumerate() {
            assert!(
                p.name.ends_with(".png") && p.size.0 > 0 && p.size.1 > 0,
                "{p:?}"
            );
            assert!(!parts[..i].contains(p), "{p:?} listed twice");
        }
        // (name, size, side, listed): the neighbour's 260 left of 1289.png's 258.
        let table = [
            ("1289.png", (243, 109), Side::Left, true),
            ("1289.png", (243, 109), Side::Right, false),
            ("1289.png", (242, 109), Side::Left, false),
            ("1289.jpg", (243, 109), Side::Left, false),
            ("927.png", (213, 112), Side::Below, true),
            ("1.png", (741, 350), Side::Left, false),
        ];
        for (name, size, side, listed) in table {
            assert_eq!(
                shows_digits(name, size, side),
                listed,
                "{name} {size:?} {side:?}"
            );
        }
    }

    #[test]
    fn cropped_close_cuts_at_the_grown_number_table() {
        // A 100 x 50 photo whose pixel (x, y) has red x / 100 and green y / 50; two digits.
        let img = Rgb32FImage::from_fn(100, 50, |x, y| {
            image::Rgb([x as f32 / 100.0, y as f32 / 50.0, 0.5])
        });
        let boxes = [
            DigitBox {
                left: 30.0,
                top: 10.0,
                width: 10.0,
                height: 20.0,
            },
            DigitBox {
                left: 40.5,
                top: 12.0,
                width: 9.0,
                height: 20.0,
            },
        ];
        // margin → the cut's (x0, y0, width, height) in the photo.
        let cases = [
            (0.0f32, (30, 10, 20, 22)),
            (0.1, (28, 7, 24, 28)),
            (0.5, (20, 0, 40, 43)),
            (5.0, (0, 0, 100, 50)),
        ];
        for (margin, (x0, y0, w, h)) in cases {
            let (cut, moved) = cropped_close(&img, &boxes, margin);
            assert_eq!(cut.dimensions(), (w, h), "margin {margin}");
            assert_eq!(
                cut.get_pixel(0, 0),
                img.get_pixel(x0, y0),
                "margin {margin}"
            );
            for (b, m) in boxes.iter().zip(&moved) {
                assert_eq!(
                    (m.left, m.top, m.width, m.height),
                    (b.left - x0 as f32, b.top - y0 as f32, b.width, b.height),
                    "margin {margin}"
                );
            }
        }
        assert_eq!(cropped_close(&img, &[], 0.2).0.dimensions(), (100, 50));
    }

    fn photo(w: u32, h: u32, shade: f32) -> Rgb32FImage {
        Rgb32FImage::from_pixel(w, h, image::Rgb([shade; 3]))
    }

    #[test]
    fn zoom_out_keeps_the_photo_and_moves_its_boxes_table() {
        let img = photo(40, 20, 0.9);
        let boxes = [DigitBox {
            left: 10.0,
            top: 4.0,
            width: 8.0,
            height: 12.0,
        }];
        let bg = photo(30, 30, 0.1);
        // (k, patches?) → canvas size; the photo's pixels are found at the moved box.
        let cases = [(1.0f32, true), (2.0, true), (4.0, false), (2.5, true)];
        for (k, with_patches) in cases {
            let patches: Vec<&Rgb32FImage> = if with_patches { vec![&bg] } else { vec![] };
            let (canvas, moved) = zoom_out(&img, &boxes, (k, k), &patches, &mut Rng::new(7));
            let want = ((40.0 * k).round() as u32, (20.0 * k).round() as u32);
            assert_eq!(canvas.dimensions(), want, "k = {k}");
            let m = moved[0];
            assert_eq!((m.width, m.height), (8.0, 12.0));
            let (x0, y0) = ((m.left - 10.0) as u32, (m.top - 4.0) as u32);
            assert!(
                x0 + 40 <= want.0 && y0 + 20 <= want.1,
                "k = {k}: placed at {x0},{y0}"
            );
            assert_eq!(canvas.get_pixel(m.left as u32, m.top as u32).0, [0.9; 3]);
            if k > 1.0 {
                let outside = if x0 > 0 {
                    (0, 0)
                } else {
                    (want.0 - 1, want.1 - 1)
                };
                let bg_shade = if with_patches { 0.1 } else { 0.5 };
                let got = canvas.get_pixel(outside.0, outside.1).0[0];
                assert!((got - bg_shade).abs() < 1e-4, "k = {k}: background {got}");
            }
        }
    }

    #[test]
    fn background_fills_every_pixel_with_the_patches_or_grey_table() {
        let (dark, light) = (photo(9, 5, 0.1), photo(4, 11, 0.8));
        // (size, patches) → every pixel one of these shades.
        type Case<'a> = ((u32, u32), Vec<&'a Rgb32FImage>, Vec<f32>);
        let cases: [Case; 4] = [
            ((40, 30), vec![&dark], vec![0.1]),
            ((123, 7), vec![&dark, &light], vec![0.1, 0.8]),
            ((1, 1), vec![&light], vec![0.8]),
            ((16, 16), vec![], vec![0.5]),
        ];
        for (size, patches, shades) in cases {
            let canvas = background(size.0, size.1, &patches, &mut Rng::new(5));
            assert_eq!(canvas.dimensions(), size);
            for p in canvas.pixels() {
                assert!(
                    shades.iter().any(|s| (p.0[0] - s).abs() < 1e-4),
                    "{size:?}: {:?}",
                    p.0
                );
            }
        }
        // zoom_out's canvas is this background with the photo pasted in.
        let img = photo(10, 6, 0.95);
        let (framed, moved) = zoom_out(&img, &[], (3.0, 2.0), &[&dark, &light], &mut Rng::new(9));
        assert!(moved.is_empty());
        let bare = background(30, 12, &[&dark, &light], &mut Rng::new(9));
        let differ = framed
            .pixels()
            .zip(bare.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert!(differ > 0 && differ <= 60, "{differ} pixels differ");
    }

    #[test]
    fn zoom_out_is_a_function_of_its_seed() {
        let img = photo(30, 15, 0.7);
        let bg = photo(17, 23, 0.2);
        let run = |seed| zoom_out(&img, &[], (3.0, 2.0), &[&bg], &mut Rng::new(seed));
        assert_eq!(run(3), run(3));
        assert_ne!(run(3).0, run(4).0);
    }

    #[test]
    fn phone_size_scales_to_phone_width_and_keeps_numbers_readable() {
        // (photo width, height, number height): scaled to ≥ 4,000 px wide, the number ≥ 20 px.
        for (w, h, nh) in [(100u32, 20u32, 4.0f32), (2_000, 40, 4.0), (8_000, 60, 30.0)] {
            let boxes = [DigitBox {
                left: 5.0,
                top: 2.0,
                width: 3.0,
                height: nh,
            }];
            let (img, moved) = phone_size(&photo(w, h, 0.5), &boxes);
            let number = moved[0].height;
            assert!(
                number >= MIN_NUMBER_HEIGHT - 0.5,
                "{w}x{h}: number {number}"
            );
            let want = (PHONE_WIDTH as f32).max(w as f32 * MIN_NUMBER_HEIGHT / nh);
            assert!(
                (img.width() as f32 - want).abs() <= 1.0,
                "{w}x{h}: {}",
                img.width()
            );
            let s = img.width() as f32 / w as f32;
            assert!((moved[0].left - 5.0 * s).abs() < 1e-3 * s.max(1.0));
        }
    }
}
