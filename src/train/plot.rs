//! The training curve as a PNG: loss (red, scaled to its maximum) and validation sequence
//! accuracy, crop (blue) and full (green) protocols, on a 0–100 % grid with one tick per epoch.

use std::path::Path;

use image::{Rgb, RgbImage};
use imageproc::drawing::draw_line_segment_mut;

use crate::error::{Error, Result};
use crate::train::checkpoint::EpochLog;

/// Draw `history` to `path` (800×400 PNG).
pub fn training_curve(history: &[EpochLog], path: &Path) -> Result<()> {
    let (w, h) = (800u32, 400u32);
    let (l, r, t, b) = (40.0f32, 780.0f32, 20.0f32, 380.0f32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let grey = Rgb([220, 220, 220]);
    for i in 0..=10 {
        let y = b - (b - t) * i as f32 / 10.0;
        draw_line_segment_mut(&mut img, (l, y), (r, y), grey);
    }
    draw_line_segment_mut(&mut img, (l, t), (l, b), Rgb([0, 0, 0]));
    draw_line_segment_mut(&mut img, (l, b), (r, b), Rgb([0, 0, 0]));
    let n = history.len().max(2) as f32 - 1.0;
    let x_of = |i: usize| l + (r - l) * i as f32 / n;
    let max_loss = history.iter().map(|e| e.loss).fold(1e-6f32, f32::max);
    type Value = fn(&EpochLog) -> f32;
    let series: [(Value, Rgb<u8>); 3] = [
        (|e| e.loss, Rgb([220, 40, 40])),
        (|e| e.val_crop as f32, Rgb([40, 80, 220])),
        (|e| e.val_full as f32, Rgb([40, 160, 60])),
    ];
    for (i_series, (f, colour)) in series.iter().enumerate() {
        let scale = if i_series == 0 { max_loss } else { 1.0 };
        for i in 1..history.len() {
            let y0 = b - (b - t) * (f(&history[i - 1]) / scale).clamp(0.0, 1.0);
            let y1 = b - (b - t) * (f(&history[i]) / scale).clamp(0.0, 1.0);
            draw_line_segment_mut(&mut img, (x_of(i - 1), y0), (x_of(i), y1), *colour);
        }
    }
    for i in 0..history.len() {
        draw_line_segment_mut(&mut img, (x_of(i), b), (x_of(i), b + 4.0), Rgb([0, 0, 0]));
    }
    img.save(path)
        .map_err(|e| Error::io(path, std::io::Error::other(e)))
}
