//! `read --explain`: which windows emitted each digit (from the CTC best path), drawn on the
//! image with the digit and its confidence above.

use image::{Rgb, Rgb32FImage, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

use crate::read::ctc::Decoded;
use crate::read::window::window_span_of;
use crate::read::{Geometry, Region, StripColumns};

/// Where one digit was read: image columns `[x0, x1)` covered by the windows that emitted it,
/// and rows `[y0, y1)` of the region that was read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DigitSpan {
    /// The digit.
    pub digit: u8,
    /// Its confidence (highest probability of its class over its span).
    pub confidence: f32,
    /// Left column in the image, pixels.
    pub x0: f32,
    /// Right column (exclusive).
    pub x1: f32,
    /// Top row.
    pub y0: f32,
    /// Bottom row (exclusive).
    pub y1: f32,
}

/// Map each decoded digit's time steps back to image columns, for a strip made from `region`
/// by a model of geometry `g` (undoing the resize, its stretch and the padding of
/// [`crate::read`], and the model's own pad columns; [`crate::read::reader::Reader::geometry`]).
pub fn digit_spans(decoded: &Decoded, region: Region, g: Geometry) -> Vec<DigitSpan> {
    let columns = StripColumns::new(region, g);
    let to_image = |col: usize| columns.to_image_clamped(col as f64) as f32;
    decoded
        .spans
        .iter()
        .zip(&decoded.digits)
        .zip(&decoded.digit_confidences)
        .map(|(((t0, t1), &digit), &confidence)| DigitSpan {
            digit,
            confidence,
            x0: to_image(window_span_of(*t0, g.window).0),
            x1: to_image(window_span_of(*t1, g.window).1),
            y0: region.y0 as f32,
            y1: region.y1 as f32,
        })
        .collect()
}

const GLYPHS: [(char, [u8; 5]); 12] = [
    ('0', [0b111, 0b101, 0b101, 0b101, 0b111]),
    ('1', [0b010, 0b110, 0b010, 0b010, 0b111]),
    ('2', [0b111, 0b001, 0b111, 0b100, 0b111]),
    ('3', [0b111, 0b001, 0b111, 0b001, 0b111]),
    ('4', [0b101, 0b101, 0b111, 0b001, 0b001]),
    ('5', [0b111, 0b100, 0b111, 0b001, 0b111]),
    ('6', [0b111, 0b100, 0b111, 0b101, 0b111]),
    ('7', [0b111, 0b001, 0b001, 0b001, 0b001]),
    ('8', [0b111, 0b101, 0b111, 0b101, 0b111]),
    ('9', [0b111, 0b101, 0b111, 0b001, 0b111]),
    ('.', [0, 0, 0, 0, 0b010]),
    ('?', [0b111, 0b001, 0b011, 0b000, 0b010]),
];

/// Draw `text` (digits, '.', '?') with a 3×5 pixel font scaled by `s` at (x, y).
fn draw_text(img: &mut RgbImage, text: &str, x: i32, y: i32, s: u32, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let Some((_, rows)) = GLYPHS.iter().find(|(c, _)| *c == ch) else {
            continue;
        };
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..3 {
                if bits & (0b100 >> c) != 0 {
                    let px = x + (i as i32 * 4 + c) * s as i32;
                    let py = y + r as i32 * s as i32;
                    draw_filled_rect_mut(img, Rect::at(px, py).of_size(s, s), colour);
                }
            }
        }
    }
}

const PALETTE: [Rgb<u8>; 6] = [
    Rgb([230, 25, 75]),
    Rgb([60, 180, 75]),
    Rgb([0, 130, 200]),
    Rgb([245, 130, 48]),
    Rgb([145, 30, 180]),
    Rgb([240, 50, 230]),
];

/// The image with one coloured rectangle per digit (the windows that emitted it) and, in a band
/// above the image, the digit and its confidence in the same colour.
pub fn draw(img: &Rgb32FImage, spans: &[DigitSpan]) -> RgbImage {
    let rgb = image::DynamicImage::ImageRgb32F(img.clone()).to_rgb8();
    let scale = (rgb.height() / 60).clamp(1, 4);
    let band = 14 * scale;
    let mut out = RgbImage::from_pixel(
        rgb.width().max(1),
        rgb.height() + 2 * band,
        Rgb([255, 255, 255]),
    );
    image::imageops::replace(&mut out, &rgb, 0, band as i64 * 2);
    for (i, s) in spans.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let x0 = s.x0.round() as i32;
        let w = ((s.x1 - s.x0).round() as u32).max(1);
        let y0 = s.y0.round() as i32 + 2 * band as i32;
        let h = ((s.y1 - s.y0).round() as u32).max(1);
        draw_hollow_rect_mut(&mut out, Rect::at(x0, y0).of_size(w, h), colour);
        if w > 2 && h > 2 {
            draw_hollow_rect_mut(
                &mut out,
                Rect::at(x0 + 1, y0 + 1).of_size(w - 2, h - 2),
                colour,
            );
        }
        let conf = format!("{:.2}", s.confidence);
        let label_y = if i % 2 == 0 { 2 } else { band as i32 + 2 };
        draw_text(
            &mut out,
            &s.digit.to_string(),
            x0,
            label_y,
            scale * 2,
            colour,
        );
        draw_text(
            &mut out,
            conf.trim_start_matches('0'),
            x0 + 10 * scale as i32,
            label_y + 4 * scale as i32,
            scale,
            colour,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_map_steps_to_image_columns() {
        let d = Decoded {
            digits: vec![4, 2],
            confidence: 0.5,
            log_prob: 0.5f64.ln(),
            path_prob: 0.4,
            spans: vec![(0, 0), (3, 4)],
            digit_confidences: vec![0.9, 0.8],
            withheld: Vec::new(),
        };
        let region = |x0, y0, x1, y1| Region { x0, y0, x1, y1 };
        // (region, model pad, first digit's columns, second digit's columns)
        let cases = [
            // A 64×32 region keeps its scale: step t covers [4t, 4t + 26).
            (region(10, 5, 74, 37), 0, (10.0, 36.0), (22.0, 52.0)),
            // A 128×64 region is halved: image columns are twice the strip's.
            (region(0, 0, 128, 64), 0, (0.0, 52.0), (24.0, 84.0)),
            // A model padding 12 columns: every step starts 12 strip columns earlier (clamped
            // to the region).
            (region(10, 5, 74, 37), 12, (10.0, 24.0), (10.0, 40.0)),
        ];
        for (r, pad, first, second) in cases {
            let s = digit_spans(
                &d,
                r,
                Geometry {
                    stretch: 1.0,
                    pad,
                    ..Geometry::default()
                },
            );
            assert_eq!((s[0].x0, s[0].x1), first, "{r:?} pad {pad}");
            assert_eq!((s[1].x0, s[1].x1), second, "{r:?} pad {pad}");
            assert_eq!((s[1].y0, s[1].y1), (r.y0 as f32, r.y1 as f32));
        }
        // Stretched 2×: the strip has two columns per image column.
        let s = digit_spans(
            &d,
            region(10, 5, 74, 37),
            Geometry {
                stretch: 2.0,
                pad: 0,
                ..Geometry::default()
            },
        );
        assert_eq!(
            (s[0].x0, s[0].x1, s[1].x0, s[1].x1),
            (10.0, 23.0, 16.0, 31.0)
        );
    }

    #[test]
    fn drawing_adds_a_label_band_and_coloured_boxes() {
        let img = Rgb32FImage::from_pixel(60, 30, Rgb([0.5, 0.5, 0.5]));
        let spans = vec![DigitSpan {
            digit: 7,
            confidence: 0.93,
            x0: 5.0,
            x1: 30.0,
            y0: 0.0,
            y1: 30.0,
        }];
        let out = draw(&img, &spans);
        assert_eq!(out.dimensions(), (60, 30 + 28));
        assert_eq!(*out.get_pixel(5, 28 + 10), PALETTE[0]);
        assert!(
            out.pixels().take(60 * 14).any(|p| *p == PALETTE[0]),
            "label drawn in the band"
        );
    }
}
