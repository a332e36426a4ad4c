//! Real-digit recombination: the digits of labelled photos are cut out along their boxes and
//! put side by side to make new numbers — other orders, other counts, including lengths that
//! SVHN barely has — each digit keeping its own real background.

use image::{Rgb, Rgb32FImage};

use crate::read::DigitBox;
use crate::read::{self, Region};
use crate::rng::Rng;

/// Height every cut digit is scaled to, pixels.
pub const DIGIT_HEIGHT: u32 = 40;

/// One real digit, cut with a little of its surroundings and scaled to [`DIGIT_HEIGHT`].
#[derive(Debug, Clone)]
pub struct DigitCrop {
    /// The digit's picture.
    pub image: Rgb32FImage,
    /// Which digit.
    pub digit: u8,
    /// The digit box inside `image` (left, right) in pixels.
    pub span: (f32, f32),
}

/// Cut every digit of one photo: the box grown 20 % in height and 10 % in width, clamped.
/// Digits whose box is under 4 px in either direction are skipped.
pub fn cut_digits(img: &Rgb32FImage, boxes: &[DigitBox], digits: &[u8]) -> Vec<DigitCrop> {
    let mut out = Vec::new();
    for (b, &d) in boxes.iter().zip(digits) {
        if b.width < 4.0 || b.height < 4.0 {
            continue;
        }
        let r: Region = read::expand_region(
            (b.left, b.top, b.right(), b.bottom()),
            1.1,
            1.2,
            img.dimensions(),
        );
        let scale = DIGIT_HEIGHT as f32 / r.height() as f32;
        let w = ((r.width() as f32 * scale).round() as usize).max(2);
        let data = read::resize_region(img, r, w, DIGIT_HEIGHT as usize);
        let h = DIGIT_HEIGHT as usize;
        let image = Rgb32FImage::from_fn(w as u32, DIGIT_HEIGHT, |x, y| {
            let (x, y) = (x as usize, y as usize);
            Rgb([
                data[y * w + x],
                data[(h + y) * w + x],
                data[(2 * h + y) * w + x],
            ])
        });
        let span = (
            (b.left - r.x0 as f32) * scale,
            (b.right() - r.x0 as f32) * scale,
        );
        out.push(DigitCrop {
            image,
            digit: d,
            span,
        });
    }
    out
}

/// Pixels of background around a composed number.
const MARGIN: u32 = 6;

/// What a composed number is drawn from: `len` crops of the pool, the gap before each (none
/// before the first, else 0–4 px) and each one's jitter across the line (0–4 px), drawn in that
/// order.
struct Draw<'a> {
    picks: Vec<&'a DigitCrop>,
    gaps: Vec<u32>,
    offsets: Vec<u32>,
}

impl<'a> Draw<'a> {
    fn new(pool: &'a [DigitCrop], len: usize, rng: &mut Rng) -> Draw<'a> {
        assert!(!pool.is_empty() && len > 0);
        let picks = (0..len).map(|_| &pool[rng.below(pool.len())]).collect();
        let gaps = (0..len)
            .map(|i| if i == 0 { 0 } else { rng.below(5) as u32 })
            .collect();
        let offsets = (0..len).map(|_| rng.below(5) as u32).collect();
        Draw {
            picks,
            gaps,
            offsets,
        }
    }
}

/// `crop` put into `img` with its top-left corner at `(x, y)`: the digit's box there.
fn place(img: &mut Rgb32FImage, crop: &DigitCrop, x: u32, y: u32) -> DigitBox {
    for (px, py, v) in crop.image.enumerate_pixels() {
        img.put_pixel(x + px, y + py, *v);
    }
    DigitBox {
        left: x as f32 + crop.span.0,
        top: y as f32 + DIGIT_HEIGHT as f32 / 12.0,
        width: crop.span.1 - crop.span.0,
        height: DIGIT_HEIGHT as f32 / 1.2,
    }
}

/// `img`'s mean colour: a composed number's background (its first crop's).
fn mean_colour(img: &Rgb32FImage) -> Rgb<f32> {
    let n = (img.width() * img.height()) as f32;
    let mut mean = [0f32; 3];
    for p in img.pixels() {
        for c in 0..3 {
            mean[c] += p[c] / n;
        }
    }
    Rgb(mean)
}

/// A new number of `len` digits drawn from `pool`: the crops side by side with small random gaps
/// (filled with the neighbouring crops' edge colours) and vertical jitter. Returns the image, one
/// box per digit, and the digits.
pub fn compose(
    pool: &[DigitCrop],
    len: usize,
    rng: &mut Rng,
) -> (Rgb32FImage, Vec<DigitBox>, Vec<u8>) {
    let Draw {
        picks,
        gaps,
        offsets,
    } = Draw::new(pool, len, rng);
    let margin = MARGIN;
    let width: u32 =
        picks.iter().map(|p| p.image.width()).sum::<u32>() + gaps.iter().sum::<u32>() + 2 * margin;
    let height = DIGIT_HEIGHT + 2 * margin;
    let mut img = Rgb32FImage::from_pixel(width, height, mean_colour(&picks[0].image));
    let mut x = margin;
    let mut boxes = Vec::with_capacity(len);
    for (i, p) in picks.iter().enumerate() {
        x += gaps[i];
        boxes.push(place(&mut img, p, x, margin - 2 + offsets[i]));
        x += p.image.width();
    }
    let digits = picks.iter().map(|p| p.digit).collect();
    (img, boxes, digits)
}

/// A new number of `len` digits drawn from `pool` stacked vertically, the first on top, as on
/// many doorposts and signs: each crop centred horizontally, with small random gaps and
/// horizontal jitter. Returns the image, one box per digit, and the digits.
pub fn compose_stacked(
    pool: &[DigitCrop],
    len: usize,
    rng: &mut Rng,
) -> (Rgb32FImage, Vec<DigitBox>, Vec<u8>) {
    let Draw {
        picks,
        gaps,
        offsets,
    } = Draw::new(pool, len, rng);
    let margin = MARGIN;
    let column = picks.iter().map(|p| p.image.width()).max().unwrap_or(0);
    let width = column + 4 + 2 * margin;
    let height = len as u32 * DIGIT_HEIGHT + gaps.iter().sum::<u32>() + 2 * margin;
    let mut img = Rgb32FImage::from_pixel(width, height, mean_colour(&picks[0].image));
    let mut y = margin;
    let mut boxes = Vec::with_capacity(len);
    for (i, p) in picks.iter().enumerate() {
        y += gaps[i];
        let x0 = margin + offsets[i] + (column - p.image.width()) / 2;
        boxes.push(place(&mut img, p, x0, y));
        y += p.image.height();
    }
    let digits = picks.iter().map(|p| p.digit).collect();
    (img, boxes, digits)
}

/// A recombined number set into a real photo over the photo's own number, so that a long
/// number is seen with a real scene around it (a [`compose`] strip alone is all number).
///
/// `strip` and `strip_boxes` come from [`compose`]; `number` is the photo's number box
/// `(x0, y0, x1, y1)` in pixels. The strip is scaled so its digits are 0.9–1.2× as tall as the
/// photo's (at most the photo's height), widened when it would not cover the photo's number,
/// and pasted centred on it; when it is wider than the photo, the photo is first stretched
/// horizontally to 1.15× the strip's width. The old number is always covered, so the returned
/// boxes (one per pasted digit, inside the returned image) are the only number in it.
pub fn paste_into(
    photo: &Rgb32FImage,
    number: (f32, f32, f32, f32),
    strip: &Rgb32FImage,
    strip_boxes: &[DigitBox],
    rng: &mut Rng,
) -> (Rgb32FImage, Vec<DigitBox>) {
    let (pw, ph) = photo.dimensions();
    let (l, t, r, b) = number;
    let (l, r) = (l.clamp(0.0, pw as f32), r.clamp(0.0, pw as f32));
    let (t, b) = (t.clamp(0.0, ph as f32), b.clamp(0.0, ph as f32));
    let digit_h = DIGIT_HEIGHT as f32 / 1.2;
    let (sw0, sh0) = (strip.width() as f32, strip.height() as f32);
    let ky = ((b - t).max(4.0) / digit_h * rng.uniform(0.9, 1.2)).min(ph as f32 / sh0);
    let cw = pw.max((sw0 * ky * 1.15).ceil() as u32);
    let fx = cw as f32 / pw as f32;
    let mut canvas = if cw > pw {
        image::imageops::resize(photo, cw, ph, image::imageops::FilterType::Triangle)
    } else {
        photo.clone()
    };
    // Cover the old number (stretched with the photo) with a pixel to spare on each side.
    let need = (r - l) * fx + 2.0;
    let kx = (ky).max(need / sw0).min(cw as f32 / sw0);
    let (sw, sh) = (
        ((sw0 * kx).round() as u32).clamp(1, cw),
        ((sh0 * ky).round() as u32).clamp(1, ph),
    );
    let scaled = image::imageops::resize(strip, sw, sh, image::imageops::FilterType::Triangle);
    let cx = (l + r) / 2.0 * fx;
    let cy = (t + b) / 2.0;
    let x0 = (cx - sw as f32 / 2.0).round().clamp(0.0, (cw - sw) as f32) as u32;
    let y0 = (cy - sh as f32 / 2.0).round().clamp(0.0, (ph - sh) as f32) as u32;
    image::imageops::replace(&mut canvas, &scaled, x0 as i64, y0 as i64);
    let (kx, ky) = (sw as f32 / sw0, sh as f32 / sh0);
    let boxes = strip_boxes
        .iter()
        .map(|bx| bx.scaled((kx, ky), (x0 as f32, y0 as f32)))
        .collect();
    (canvas, boxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> (Rgb32FImage, Vec<DigitBox>, Vec<u8>) {
        let img = Rgb32FImage::from_fn(60, 30, |x, _| Rgb([x as f32 / 60.0, 0.5, 0.2]));
        let boxes = vec![
            DigitBox {
                left: 5.0,
                top: 5.0,
                width: 10.0,
                height: 20.0,
            },
            DigitBox {
                left: 20.0,
                top: 4.0,
                width: 12.0,
                height: 21.0,
            },
            DigitBox {
                left: 40.0,
                top: 5.0,
                width: 2.0,
                height: 20.0,
            },
        ];
        (img, boxes, vec![3, 0, 7])
    }

    #[test]
    fn cutting_keeps_labels_and_skips_slivers() {
        let (img, boxes, digits) = photo();
        let crops = cut_digits(&img, &boxes, &digits);
        assert_eq!(
            crops.iter().map(|c| c.digit).collect::<Vec<_>>(),
            vec![3, 0]
        );
        for c in &crops {
            assert_eq!(c.image.height(), DIGIT_HEIGHT);
            assert!(c.span.0 >= 0.0 && c.span.1 <= c.image.width() as f32);
        }
    }

    #[test]
    fn pasted_numbers_cover_the_old_one_and_stay_inside() {
        let (img, boxes, digits) = photo();
        let crops = cut_digits(&img, &boxes, &digits);
        let old = crate::read::boxes_union(&boxes);
        // A photo of one colour with a number of another: after pasting, no pixel of the old
        // number's colour may remain.
        let mut marked = Rgb32FImage::from_pixel(80, 40, Rgb([0.2, 0.2, 0.2]));
        for x in 20..50 {
            for y in 10..30 {
                marked.put_pixel(x, y, Rgb([1.0, 0.0, 1.0]));
            }
        }
        for (len, seed) in [(1, 1), (3, 2), (10, 3), (10, 4)] {
            let (strip, sb, sd) = compose(&crops, len, &mut Rng::new(seed));
            let run = |p: &Rgb32FImage, n| paste_into(p, n, &strip, &sb, &mut Rng::new(seed));
            let (a, ba) = run(&img, old);
            let (a2, ba2) = run(&img, old);
            assert_eq!((a.as_raw(), &ba), (a2.as_raw(), &ba2), "deterministic");
            assert_eq!(ba.len(), sd.len());
            assert_eq!(a.height(), img.height());
            for bx in &ba {
                assert!(bx.left >= -1e-3 && bx.top >= -1e-3, "{bx:?}");
                assert!(
                    bx.right() <= a.width() as f32 + 1e-3,
                    "{bx:?} in {}",
                    a.width()
                );
                assert!(bx.bottom() <= a.height() as f32 + 1e-3, "{bx:?}");
            }
            for w in ba.windows(2) {
                assert!(w[0].right() <= w[1].left + 1e-3);
            }
            let (m, _) = run(&marked, (20.0, 10.0, 50.0, 30.0));
            assert!(
                m.pixels().all(|p| *p != Rgb([1.0, 0.0, 1.0])),
                "old number left visible (len {len})"
            );
            if len == 10 {
                assert!(m.width() > marked.width(), "a long number widens the photo");
            }
        }
    }

    #[test]
    fn composed_numbers_are_deterministic_with_boxes_inside_in_order() {
        let (img, boxes, digits) = photo();
        let crops = cut_digits(&img, &boxes, &digits);
        for len in [1, 4, 10] {
            let (a, ba, da) = compose(&crops, len, &mut Rng::new(len as u64));
            let (b, bb, db) = compose(&crops, len, &mut Rng::new(len as u64));
            assert_eq!(a.as_raw(), b.as_raw());
            assert_eq!((ba.clone(), da.clone()), (bb, db));
            assert_eq!(da.len(), len);
            assert_eq!(ba.len(), len);
            for w in ba.windows(2) {
                assert!(w[0].right() <= w[1].left + 1e-3, "boxes overlap: {w:?}");
            }
            for bx in &ba {
                assert!(bx.left >= 0.0 && bx.top >= 0.0);
                assert!(bx.right() <= a.width() as f32 && bx.bottom() <= a.height() as f32);
            }
        }
    }

    #[test]
    fn stacked_numbers_are_deterministic_with_boxes_one_above_the_next() {
        let (img, boxes, digits) = photo();
        let crops = cut_digits(&img, &boxes, &digits);
        for len in [1, 3, 6] {
            let (a, ba, da) = compose_stacked(&crops, len, &mut Rng::new(len as u64));
            let (b, bb, db) = compose_stacked(&crops, len, &mut Rng::new(len as u64));
            assert_eq!(a.as_raw(), b.as_raw());
            assert_eq!((ba.clone(), da.clone()), (bb, db));
            assert_eq!((da.len(), ba.len()), (len, len));
            assert!(a.height() >= len as u32 * DIGIT_HEIGHT && a.height() > a.width());
            for w in ba.windows(2) {
                assert!(w[0].bottom() <= w[1].top + 1e-3, "boxes overlap: {w:?}");
            }
            for bx in &ba {
                assert!(bx.left >= 0.0 && bx.top >= 0.0);
                assert!(bx.right() <= a.width() as f32 && bx.bottom() <= a.height() as f32);
            }
        }
    }
}
