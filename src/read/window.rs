//! Sliding-window geometry. The conv feature extractor is built from valid convolutions and
//! 2×2 poolings only, so applied to a whole strip it computes exactly what it computes on each
//! window of width [`WINDOW`] cut every [`STRIDE`] pixels: step `t` sees columns
//! `[t·STRIDE, t·STRIDE + WINDOW)`. The model test checks that equality numerically.

/// Window width in pixels: the receptive field of the conv stack.
pub const WINDOW: usize = 26;
/// The widest window a reader may have (its metadata is refused beyond): [`WINDOW`] grown by
/// residual blocks, with room to spare.
pub const MAX_WINDOW: usize = 256;
/// Window stride in pixels: the product of the poolings' strides.
pub const STRIDE: usize = 4;

/// Number of windows (time steps) in a strip `width` pixels wide; 0 when narrower than a window.
pub fn num_steps(width: usize) -> usize {
    steps_of(width, WINDOW)
}

/// Number of windows `window` pixels wide, cut every [`STRIDE`] pixels, in a strip `width`
/// pixels wide (a reader with residual blocks has a wider window than [`WINDOW`]:
/// [`crate::engine::crnn::ModelConfig::window`]).
pub fn steps_of(width: usize, window: usize) -> usize {
    if width < window {
        0
    } else {
        (width - window) / STRIDE + 1
    }
}

/// Pixel columns `[start, end)` seen by step `t`.
pub fn window_span(t: usize) -> (usize, usize) {
    window_span_of(t, WINDOW)
}

/// Pixel columns `[start, end)` seen by step `t` of windows `window` pixels wide.
pub fn window_span_of(t: usize, window: usize) -> (usize, usize) {
    (t * STRIDE, t * STRIDE + window)
}

/// Cut window `t` out of a `[c, h, width]` strip.
///
/// # Shapes
/// Returns `[c, h, WINDOW]`.
pub fn cut_window(strip: &[f32], c: usize, h: usize, width: usize, t: usize) -> Vec<f32> {
    cut_window_of(strip, c, h, width, t, WINDOW)
}

/// Cut window `t` of windows `window` pixels wide out of a `[c, h, width]` strip.
///
/// # Shapes
/// Returns `[c, h, window]`.
pub fn cut_window_of(
    strip: &[f32],
    c: usize,
    h: usize,
    width: usize,
    t: usize,
    window: usize,
) -> Vec<f32> {
    let (x0, x1) = window_span_of(t, window);
    assert!(x1 <= width, "window {t} is outside a strip {width} wide");
    let mut out = Vec::with_capacity(c * h * window);
    for row in 0..c * h {
        out.extend_from_slice(&strip[row * width + x0..][..window]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_table() {
        let cases = [
            (0, 0),
            (25, 0),
            (26, 1),
            (29, 1),
            (30, 2),
            (32, 2),
            (100, 19),
            (128, 26),
        ];
        let bad: Vec<_> = cases
            .iter()
            .filter(|(w, t)| num_steps(*w) != *t)
            .map(|(w, t)| format!("width {w}: got {} want {t}", num_steps(*w)))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(window_span(3), (12, 38));
    }

    #[test]
    fn cut_window_takes_the_right_columns() {
        let (c, h, w) = (2, 3, 40);
        let strip: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        let win = cut_window(&strip, c, h, w, 2);
        assert_eq!(win.len(), c * h * WINDOW);
        assert_eq!(win[0], 8.0);
        assert_eq!(win[WINDOW], (w + 8) as f32);
    }
}
