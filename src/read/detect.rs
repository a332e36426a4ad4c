//! Finding numbers anywhere in a photo: the exported detector
//! ([`crate::engine::detector`], `onnx/detector.onnx`) run under tract over a pyramid of the
//! photo, its cells grouped into candidate boxes.
//!
//! 1. [`levels`]: the photo's sizes, each a multiple of 8 px: the largest with its long side at
//!    most [`MAX_SIDE`] (a small photo enlarged up to [`MAX_ENLARGE`]), then halving while the
//!    short side keeps [`MIN_CELLS`] cells. The detector was trained on numbers 8–48 px high,
//!    so each level finds a band of sizes and the levels together all of them.
//! 2. [`Detector::cells`]: the level ([`level_image`]: the largest resized from the photo with
//!    the strip resampler, each smaller one from the largest), values `(v − 0.5) · 4`,
//!    [`PAD`] zeros around it, through the graph in tiles of [`TILE`] × [`TILE`] cells (each
//!    with its surroundings, so the cells are exactly the whole level's): each 8 × 8 cell's
//!    share of a number.
//! 3. [`components`]: cells over [`THRESHOLD`], 8-connected, each group's bounding box (cell
//!    edges, in photo pixels) scored by its most confident cell.
//! 4. [`Detector::candidates`]: all levels' boxes, best first, a box dropped when its centre
//!    lies inside a better one's; at most [`MAX_CANDIDATES`].
//!
//! `onnx/read.py` implements the same steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::Rgb32FImage;
use rayon::prelude::*;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::read::metadata::{self, DET_KEY};
use crate::read::{self, Region};

/// The detector compiled into the binary.
pub static EMBEDDED_DETECTOR: &[u8] = include_bytes!("../../onnx/detector.onnx");

/// Pixels per cell.
pub const CELL: usize = 8;

/// Zeros on each side of the detector's input (its receptive field's half).
pub const PAD: usize = 23;

/// Cells along each side of the tiles a level runs in: one plan of a fixed size, whose im2col
/// buffers stay small. Tiles overlap by the padding, so they give exactly the whole level's
/// cells.
pub const TILE: usize = 32;

/// The pyramid's largest level has its long side at most this many pixels.
pub const MAX_SIDE: u32 = 1024;

/// The largest level enlarges a small photo at most this much: a number 12 px high in it is
/// seen 24 px high (the detector was trained on 8–48 px).
pub const MAX_ENLARGE: f32 = 2.0;

/// A level's short side keeps at least this many cells.
pub const MIN_CELLS: usize = 4;

/// A cell over this share of a number starts or joins a candidate.
pub const THRESHOLD: f32 = 0.5;

/// Candidates [`Detector::candidates`] returns at most.
pub const MAX_CANDIDATES: usize = 5;

/// A candidate box: `(left, top, right, bottom)` pixels of the photo and its score (the most
/// confident cell's share).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// `(left, top, right, bottom)`, pixels.
    pub bounds: (f32, f32, f32, f32),
    /// The best cell's value, in `[0, 1]`.
    pub score: f32,
}

/// The pyramid of a `w × h` photo: `(cols, rows)` of cells per level, largest first (module
/// docs). Empty when even the largest level is under [`MIN_CELLS`] cells on its short side.
pub fn levels(w: u32, h: u32) -> Vec<(usize, usize)> {
    let long = w.max(h).max(1) as f32;
    let s = (MAX_SIDE as f32 / long).min(MAX_ENLARGE);
    let mut out = Vec::new();
    let (mut fw, mut fh) = (w as f32 * s / CELL as f32, h as f32 * s / CELL as f32);
    loop {
        let (cw, ch) = (fw.round() as usize, fh.round() as usize);
        if cw.min(ch) < MIN_CELLS {
            break;
        }
        out.push((cw, ch));
        fw /= 2.0;
        fh /= 2.0;
    }
    out
}

/// A group of cells: `(col0, row0, col1, row1, best)`, inclusive cell bounds and the best
/// cell's value.
pub type Component = (usize, usize, usize, usize, f32);

/// `img` resized (the strip resampler) to `cols × rows` cells: a level of the pyramid.
pub fn level_image(img: &Rgb32FImage, cols: usize, rows: usize) -> Rgb32FImage {
    let (w, h) = img.dimensions();
    let (lw, lh) = (cols * CELL, rows * CELL);
    let x = read::resize_rows(img, Region::full(w, h), lw, lh);
    Rgb32FImage::from_raw(lw as u32, lh as u32, x).expect("buffer sized to the level")
}

/// Groups of 8-connected cells over [`THRESHOLD`] in a `[rows, cols]` map, as
/// `(col0, row0, col1, row1, best)`: inclusive cell bounds and the best value. In order of
/// each group's first cell, row by row.
pub fn components(p: &[f32], cols: usize, rows: usize) -> Vec<Component> {
    let mut seen = vec![false; p.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..p.len() {
        if seen[start] || p[start] <= THRESHOLD {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut c0, mut r0, mut c1, mut r1, mut best) = (cols, rows, 0, 0, 0f32);
        while let Some(i) = stack.pop() {
            let (r, c) = (i / cols, i % cols);
            (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c), r1.max(r));
            best = best.max(p[i]);
            for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                    if rr < 0 || cc < 0 || rr >= rows as i64 || cc >= cols as i64 {
                        continue;
                    }
                    let j = rr as usize * cols + cc as usize;
                    if !seen[j] && p[j] > THRESHOLD {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        out.push((c0, r0, c1, r1, best));
    }
    out
}

/// Candidates of every level, best first, a box dropped when its centre lies in a better one;
/// at most `max`. `found`: per level, its `(cols, rows)` and its components.
pub fn merge(
    (w, h): (u32, u32),
    found: &[((usize, usize), Vec<Component>)],
    max: usize,
) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = found
        .iter()
        .flat_map(|&((cols, rows), ref comps)| {
            let (sx, sy) = (w as f32 / cols as f32, h as f32 / rows as f32);
            comps.iter().map(move |&(c0, r0, c1, r1, best)| Candidate {
                bounds: (
                    c0 as f32 * sx,
                    r0 as f32 * sy,
                    (c1 + 1) as f32 * sx,
                    (r1 + 1) as f32 * sy,
                ),
                score: best,
            })
        })
        .collect();
    // Stable: equal scores keep level order (larger levels first).
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in all {
        let (l, t, r, b) = c.bounds;
        let (cx, cy) = ((l + r) / 2.0, (t + b) / 2.0);
        let inside = kept.iter().any(|k| {
            let (kl, kt, kr, kb) = k.bounds;
            (kl..=kr).contains(&cx) && (kt..=kb).contains(&cy)
        });
        if !inside {
            kept.push(c);
            if kept.len() == max {
                break;
            }
        }
    }
    kept
}

/// The detector under tract: one plan for inputs of any size.
#[derive(Clone)]
pub struct Detector {
    source: PathBuf,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("source", &self.source)
            .finish()
    }
}

impl Detector {
    /// The detector compiled into the binary.
    pub fn embedded() -> Result<Detector> {
        Detector::from_bytes(EMBEDDED_DETECTOR, Path::new("<embedded detector>"))
    }

    /// A detector from an `.onnx` file written by `housenum train-detector --export`.
    pub fn from_path(path: &Path) -> Result<Detector> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Detector::from_bytes(&bytes, path)
    }

    /// A detector from ONNX bytes; `source` names it in errors. The plan is built and run once
    /// here, so a wrong model fails now, naming the file.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Detector> {
        let err = |reason: String| metadata::model_error(source, reason);
        let model = metadata::parse_model(bytes, source)?;
        if metadata::metadata(&model, DET_KEY, source)?.is_none() {
            return Err(err(format!(
                "no {DET_KEY} metadata: not a housenum detector"
            )));
        }
        let side = TILE * CELL + 2 * PAD;
        let plan = crate::read::plan::build(model, f32::fact([1, 3, side, side]).into())
            .map_err(|e| err(format!("cannot build an inference plan: {e}")))?;
        let det = Detector {
            source: source.to_path_buf(),
            plan,
        };
        let probe = vec![0f32; 3 * side * side];
        let out = det
            .run(&probe)
            .map_err(|e| err(format!("does not run on a {side}x{side} tile: {e}")))?;
        if out.len() != TILE * TILE {
            return Err(err(format!(
                "gave {} cells for a {TILE}x{TILE}-cell tile",
                out.len()
            )));
        }
        Ok(det)
    }

    /// Where the detector came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The graph on one tile.
    ///
    /// # Shapes
    /// `x`: `[3, S, S]` with `S = 8·TILE + 2·PAD` → `[TILE, TILE]`.
    pub fn run(&self, x: &[f32]) -> Result<Vec<f32>> {
        let side = TILE * CELL + 2 * PAD;
        let input = Tensor::from_shape(&[1, 3, side, side], x)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| Error::Inference(e.to_string()))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(e.to_string()))?;
        Ok(view.iter().cloned().collect())
    }

    /// Each cell's share of a number in `level`, a pyramid level of the photo ([`level_image`])
    /// whose sides are multiples of 8.
    ///
    /// # Shapes
    /// Returns `[rows, cols]` = `[height / 8, width / 8]`.
    pub fn cells(&self, level: &Rgb32FImage) -> Result<Vec<f32>> {
        let (lw, lh) = (level.width() as usize, level.height() as usize);
        let (cols, rows) = (lw / CELL, lh / CELL);
        let plane = lw * lh;
        let mut x = vec![0f32; 3 * plane];
        for (i, p) in level.pixels().enumerate() {
            for c in 0..3 {
                x[c * plane + i] = (p.0[c] - 0.5) * 4.0;
            }
        }
        let side = TILE * CELL + 2 * PAD;
        let tiles: Vec<(usize, usize)> = (0..rows.div_ceil(TILE))
            .flat_map(|ti| (0..cols.div_ceil(TILE)).map(move |tj| (ti, tj)))
            .collect();
        let outs: Vec<Vec<f32>> = tiles
            .par_iter()
            .map(|&(ti, tj)| {
                // Tile input pixel (y, x) is level pixel (y + 8·TILE·ti − PAD, …); zeros outside.
                let (y0, x0) = (
                    (TILE * CELL * ti) as i64 - PAD as i64,
                    (TILE * CELL * tj) as i64 - PAD as i64,
                );
                let mut t = vec![0f32; 3 * side * side];
                let xs = x0.max(0) as usize;
                let xe = ((x0 + side as i64).min(lw as i64)).max(0) as usize;
                if xe > xs {
                    for c in 0..3 {
                        for y in 0..side {
                            let ly = y0 + y as i64;
                            if ly < 0 || ly >= lh as i64 {
                                continue;
                            }
                            let src = &x[(c * lh + ly as usize) * lw..][xs..xe];
                            let dst = (c * side + y) * side + (xs as i64 - x0) as usize;
                            t[dst..dst + src.len()].copy_from_slice(src);
                        }
                    }
                }
                self.run(&t)
            })
            .collect::<Result<_>>()?;
        let mut p = vec![0f32; rows * cols];
        for (&(ti, tj), out) in tiles.iter().zip(&outs) {
            for i in 0..TILE.min(rows - TILE * ti) {
                let r = TILE * ti + i;
                let n = TILE.min(cols - TILE * tj);
                p[r * cols + TILE * tj..][..n].copy_from_slice(&out[i * TILE..][..n]);
            }
        }
        Ok(p)
    }

    /// Candidate number boxes in `img`, best first (module docs).
    pub fn candidates(&self, img: &Rgb32FImage) -> Result<Vec<Candidate>> {
        let (w, h) = img.dimensions();
        let sizes = levels(w, h);
        let Some(&(c0, r0)) = sizes.first() else {
            return Ok(Vec::new());
        };
        // The largest level from the photo, the smaller ones from it: a 12-megapixel photo is
        // resampled once.
        let first = level_image(img, c0, r0);
        let found = sizes
            .into_iter()
            .enumerate()
            .map(|(k, (cols, rows))| {
                let p = if k == 0 {
                    self.cells(&first)?
                } else {
                    self.cells(&level_image(&first, cols, rows))?
                };
                Ok(((cols, rows), components(&p, cols, rows)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(merge((w, h), &found, MAX_CANDIDATES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exported graph under tract, in tiles, gives the training engine's cells on the whole
    /// padded level: tiles are exact, and export matches the engine.
    #[test]
    fn tiled_tract_cells_equal_the_engine_on_the_whole_image() {
        use crate::engine::detector::{Detector as Net, DetectorConfig};
        use prost::Message;
        let net = Net::new(
            DetectorConfig {
                channels: [4, 6, 8, 8, 8],
            },
            5,
        );
        let bytes = crate::export::detector_to_onnx(&net, &[]).encode_to_vec();
        let det = Detector::from_bytes(&bytes, Path::new("test")).expect("loads");
        // 70 x 40 cells: tiles of 32 cut it 3 x 2 ways, the last ones partly outside.
        let (cols, rows) = (70usize, 40usize);
        let (w, h) = ((cols * CELL) as u32, (rows * CELL) as u32);
        let mut rng = crate::rng::Rng::new(11);
        let img = Rgb32FImage::from_fn(w, h, |_, _| image::Rgb([rng.f32(), rng.f32(), rng.f32()]));
        let got = det.cells(&img).expect("runs");
        // The engine on the whole level, padded by PAD zeros.
        let plane = (w * h) as usize;
        let mut x = vec![0f32; 3 * plane];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                x[c * plane + i] = (p.0[c] - 0.5) * 4.0;
            }
        }
        let (pw, ph) = (cols * CELL + 2 * PAD, rows * CELL + 2 * PAD);
        let mut padded = vec![0f32; 3 * pw * ph];
        for c in 0..3 {
            for y in 0..rows * CELL {
                padded[(c * ph + y + PAD) * pw + PAD..][..cols * CELL]
                    .copy_from_slice(&x[(c * rows * CELL + y) * cols * CELL..][..cols * CELL]);
            }
        }
        let fwd = net.forward(&padded, 1, ph, pw);
        assert_eq!(fwd.cells, (rows, cols));
        assert_eq!(got.len(), rows * cols);
        for (k, (g, z)) in got.iter().zip(&fwd.logits).enumerate() {
            let want = 1.0 / (1.0 + (-z).exp());
            assert!((g - want).abs() < 1e-4, "cell {k}: {g} vs {want}");
        }
    }

    #[test]
    fn levels_table() {
        type Case = ((u32, u32), Vec<(usize, usize)>);
        // Small photos are enlarged up to MAX_ENLARGE, large ones shrunk to MAX_SIDE.
        let cases: [Case; 6] = [
            ((100, 40), vec![(25, 10), (13, 5)]),
            ((320, 160), vec![(80, 40), (40, 20), (20, 10), (10, 5)]),
            ((700, 300), vec![(128, 55), (64, 27), (32, 14), (16, 7)]),
            (
                (4000, 3000),
                vec![(128, 96), (64, 48), (32, 24), (16, 12), (8, 6)],
            ),
            ((20, 20), vec![(5, 5)]),
            ((12, 12), vec![]),
        ];
        for ((w, h), want) in cases {
            assert_eq!(levels(w, h), want, "{w}x{h}");
        }
    }

    #[test]
    fn components_table() {
        // (map rows, cols, expected components)
        let cases: [(&[f32], usize, usize, Vec<Component>); 4] = [
            (&[0.0; 6], 3, 2, vec![]),
            (
                &[0.9, 0.0, 0.0, 0.0, 0.0, 0.6],
                3,
                2,
                vec![(0, 0, 0, 0, 0.9), (2, 1, 2, 1, 0.6)],
            ),
            // Diagonal neighbours join.
            (&[0.6, 0.0, 0.0, 0.8], 2, 2, vec![(0, 0, 1, 1, 0.8)]),
            // The threshold is strict.
            (&[0.5, 0.51], 2, 1, vec![(1, 0, 1, 0, 0.51)]),
        ];
        for (p, cols, rows, want) in cases {
            assert_eq!(components(p, cols, rows), want, "{p:?}");
        }
    }

    #[test]
    fn merge_drops_boxes_centred_in_better_ones_and_keeps_order() {
        // A 100 x 50 photo: level 0 of 10 x 5 cells (10 px each), level 1 of 5 x 2 cells.
        let found = vec![
            ((10, 5), vec![(1, 1, 3, 2, 0.7), (7, 0, 8, 1, 0.9)]),
            ((5, 2), vec![(0, 0, 1, 1, 0.8)]),
        ];
        let got = merge((100, 50), &found, 5);
        let bounds: Vec<_> = got.iter().map(|c| (c.bounds, c.score)).collect();
        assert_eq!(
            bounds,
            vec![
                ((70.0, 0.0, 90.0, 20.0), 0.9),
                ((0.0, 0.0, 40.0, 50.0), 0.8)
            ]
        );
        assert_eq!(merge((100, 50), &found, 1).len(), 1);
    }
}
