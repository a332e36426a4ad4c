//! A direct convolution for the plans' small feature maps, in place of tract's im2col and
//! matrix product.
//!
//! tract 0.23 runs a convolution whose output rows are shorter than 128 values as im2col (20 %
//! of the reader's time) followed by a packed matrix product (57 %): 45 GFLOP/s on one core of
//! the project's machine, where onnxruntime's `Conv` reaches 87 (`housenum bench-strips
//! --per-op`, docs/experiments.md, "Speed"). [`DirectConv`] reads the input in place.
//!
//! The trick is to treat each input plane as one long row. With the input `[ci, hp, wp]`
//! (padding already applied) and position `p = y·wp + x`, output value `(o, y, x)` is
//! `Σ weight[o, c, ky, kx] · input[c·hp·wp + p + ky·wp + kx]`: for every kernel tap the inputs of
//! consecutive positions are consecutive floats. So the convolution is, per tap, a broadcast
//! weight times a contiguous run, whatever the width; positions with `x ≥ wo` are computed and
//! dropped (2–13 % more work for these models). A tile of 6 output channels × 16 positions keeps
//! 12 AVX accumulators in registers through all `ci·kh·kw` taps. Bias and ReLU are applied
//! before the tile is stored. Sums run in another order than tract's, so values differ from
//! tract's by rounding (tested to 1e-4 relative); the readings are the same (docs/experiments.md).
//!
//! Kernels 3 wide over enough channels run as Winograd's F(4, 3) along rows instead
//! (`DirectConv::run_winograd`, the reader's fourth convolution, 4 × 3): six products with a third
//! of the taps over a quarter of the positions, half the multiplications. 3 × 3 kernels (the
//! second and third) run as F(4 × 4, 3 × 3) (`DirectConv::run_winograd_2d`): 36 products with a
//! ninth of the taps over a sixteenth of the positions, a quarter of the multiplications. Both
//! run through the same tiles, with the images of a batch side by side.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Output channels per tile.
const CO_TILE: usize = 6;
/// Positions per tile (two 8-float vectors).
const P_TILE: usize = 16;

/// A stride-1, undilated, ungrouped 2-D convolution over NCHW f32 with constant weights and
/// bias, zero padding, and an optional ReLU fused after the bias.
///
/// With [`DirectConv::pooled`], a 2 × 2 stride-2 max-pool follows, computed while the tile
/// sums are copied out.
///
/// # Shapes
/// `[n, ci, h, w]` → `[n, co, ho, wo]` with `ho = h + pad_top + pad_bottom − kh + 1`,
/// `wo = w + pad_left + pad_right − kw + 1`; pooled, `[n, co, ho / 2, wo / 2]` (floor).
#[derive(Debug, Clone)]
pub struct DirectConv {
    ci: usize,
    co: usize,
    kh: usize,
    kw: usize,
    /// Zero rows and columns added: top, left, bottom, right.
    pad: [usize; 4],
    relu: bool,
    /// A 2 × 2, stride-2 max-pool after the ReLU.
    pool: bool,
    /// Weights regrouped as `[ceil(co / 6), ci·kh·kw, 6]` (missing channels zero): one tile's
    /// six weights of a tap are adjacent.
    packed: Vec<f32>,
    /// `[ceil(co / 6) · 6]`, zero past `co`.
    bias: Vec<f32>,
    /// [`DirectConv::wino`], made on first use.
    wino: std::sync::OnceLock<Vec<f32>>,
    /// [`DirectConv::wino2`], made on first use.
    wino2: std::sync::OnceLock<Vec<f32>>,
}

/// The sizes of one [`DirectConv`] run (see [`DirectConv::run_into`]).
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Convolution output width, before any pool.
    wo: usize,
    /// Output height and width (pooled if the op pools).
    oh: usize,
    ow: usize,
    /// The padded input's height and width.
    hp: usize,
    wp: usize,
    /// Convolution rows and columns kept (a pool drops an odd last one).
    hu: usize,
    wu: usize,
}

impl DirectConv {
    /// Everything that defines the op but its weights.
    fn shape_key(&self) -> ([usize; 4], [usize; 4], [bool; 2]) {
        let shape = [self.ci, self.co, self.kh, self.kw];
        (shape, self.pad, [self.relu, self.pool])
    }
}

impl PartialEq for DirectConv {
    fn eq(&self, other: &Self) -> bool {
        use super::plan::same_bits;
        self.shape_key() == other.shape_key()
            && same_bits(&self.packed, &other.packed)
            && same_bits(&self.bias, &other.bias)
    }
}

impl Eq for DirectConv {}

impl std::hash::Hash for DirectConv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shape_key().hash(state);
        super::plan::hash_bits(&self.packed, state);
        super::plan::hash_bits(&self.bias, state);
    }
}

impl DirectConv {
    /// From ONNX-layout weights.
    ///
    /// # Shapes
    /// `weight`: `[co, ci, kh, kw]`, `bias`: `[co]`.
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        [co, ci, kh, kw]: [usize; 4],
        pad: [usize; 4],
        relu: bool,
    ) -> DirectConv {
        assert_eq!(weight.len(), co * ci * kh * kw, "weight [co, ci, kh, kw]");
        assert_eq!(bias.len(), co, "bias [co]");
        let k = ci * kh * kw;
        let blocks = co.div_ceil(CO_TILE);
        let mut packed = vec![0f32; blocks * k * CO_TILE];
        for o in 0..co {
            let (b, j) = (o / CO_TILE, o % CO_TILE);
            for t in 0..k {
                packed[(b * k + t) * CO_TILE + j] = weight[o * k + t];
            }
        }
        let mut b = bias.to_vec();
        b.resize(blocks * CO_TILE, 0.0);
        DirectConv {
            ci,
            co,
            kh,
            kw,
            pad,
            relu,
            pool: false,
            packed,
            bias: b,
            wino: Default::default(),
            wino2: Default::default(),
        }
    }

    /// The same convolution followed by a 2 × 2, stride-2 max-pool (odd rows and columns
    /// dropped, as ONNX `MaxPool` in floor mode).
    pub fn pooled(self) -> DirectConv {
        DirectConv { pool: true, ..self }
    }

    /// The convolution's output height and width for an input `h × w`, before any pooling
    /// (`None` when the kernel does not fit).
    fn conv_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let hp = h + self.pad[0] + self.pad[2];
        let wp = w + self.pad[1] + self.pad[3];
        (hp >= self.kh && wp >= self.kw).then(|| (hp + 1 - self.kh, wp + 1 - self.kw))
    }

    /// Output height and width for an input `h × w` (`None` when the kernel does not fit).
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (ho, wo) = self.conv_size(h, w)?;
        Some(if self.pool {
            (ho / 2, wo / 2)
        } else {
            (ho, wo)
        })
    }

    /// The convolution of a batch.
    ///
    /// # Shapes
    /// `x`: `[n, ci, h, w]` → `[n, co, ho, wo]` ([`DirectConv::output_size`]).
    pub fn run(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        let Some((ho, wo)) = self.output_size(h, w) else {
            return Vec::new();
        };
        let mut out = vec![0f32; n * self.co * ho * wo];
        self.run_into(x, n, h, w, &mut out);
        out
    }

    /// The sizes of a run on an input `h × w` (`None` when the kernel does not fit).
    fn sizes(&self, h: usize, w: usize) -> Option<Sizes> {
        let (ho, wo) = self.conv_size(h, w)?;
        let (oh, ow) = self.output_size(h, w)?;
        let (hu, wu) = if self.pool {
            (2 * oh, 2 * ow)
        } else {
            (ho, wo)
        };
        Some(Sizes {
            wo,
            oh,
            ow,
            hp: h + self.pad[0] + self.pad[2],
            wp: w + self.pad[1] + self.pad[3],
            hu,
            wu,
        })
    }

    /// Copy one image into `input`'s padded rows of `pitch ≥ wp` floats: zero rows above and
    /// below, zero columns on the left and from the image's end to the end of the pitch.
    ///
    /// # Shapes
    /// `image`: `[ci, h, w]`; `input`: at least `[ci, hp, pitch]`.
    fn pad_rows_into(&self, image: &[f32], w: usize, pitch: usize, input: &mut [f32]) {
        let h = image.len() / self.ci / w;
        let (hp, left) = (h + self.pad[0] + self.pad[2], self.pad[1]);
        for (src, dst) in image
            .chunks_exact(h * w)
            .zip(input.chunks_exact_mut(hp * pitch))
        {
            for (y, row) in dst.chunks_exact_mut(pitch).enumerate() {
                match y.checked_sub(self.pad[0]).filter(|&y| y < h) {
                    Some(y) => {
                        row[..left].fill(0.0);
                        row[left..left + w].copy_from_slice(&src[y * w..][..w]);
                        row[left + w..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
    }

    /// [`DirectConv::run`] into `out`.
    ///
    /// # Shapes
    /// `x`: `[n, ci, h, w]`, `out`: `[n, co, ho, wo]`.
    pub fn run_into(&self, x: &[f32], n: usize, h: usize, w: usize, out: &mut [f32]) {
        let Some((oh, ow)) = self.output_size(h, w) else {
            return;
        };
        assert_eq!(x.len(), n * self.ci * h * w, "input [n, ci, h, w]");
        assert_eq!(out.len(), n * self.co * oh * ow, "output [n, co, oh, ow]");
        if out.is_empty() {
            return;
        }
        if self.winograd_2d_pays() {
            self.run_winograd_2d(x, n, h, w, out);
        } else if self.winograd_pays() {
            self.run_winograd(x, n, h, w, out);
        } else {
            self.run_direct(x, n, h, w, out);
        }
    }

    /// [`DirectConv::run_into`] tap by tap, whatever the kernel.
    ///
    /// # Shapes
    /// As [`DirectConv::run_into`].
    fn run_direct(&self, x: &[f32], n: usize, h: usize, w: usize, out: &mut [f32]) {
        let Some(z) = self.sizes(h, w).filter(|_| !out.is_empty()) else {
            return;
        };
        let Sizes {
            wo,
            oh,
            ow,
            hp,
            wp,
            hu,
            wu,
        } = z;
        let plane = hp * wp;
        // Positions computed per output channel: up to the last kept one, in whole tiles.
        let len = (hu - 1) * wp + wu;
        let stride = len.div_ceil(P_TILE) * P_TILE;
        let blocks = self.co.div_ceil(CO_TILE);
        let k = self.ci * self.kh * self.kw;
        let offsets: Vec<usize> = (0..self.ci)
            .flat_map(|c| {
                (0..self.kh)
                    .flat_map(move |dy| (0..self.kw).map(move |dx| c * plane + dy * wp + dx))
            })
            .collect();
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                input, full, panel, ..
            } = scratch;
            // The padded input, with room for the last tile's reads past the last position
            // (what those reads find only reaches positions that are dropped); every plane is
            // overwritten below, padding included.
            input.resize(self.ci * plane + P_TILE, 0.0);
            full.resize(blocks * CO_TILE * stride, 0.0);
            panel.resize(K_CHUNK * P_BLOCK, 0.0);
            for b in 0..n {
                self.pad_rows_into(&x[b * self.ci * h * w..][..self.ci * h * w], w, wp, input);
                for p0 in (0..stride).step_by(P_BLOCK) {
                    let pb = P_BLOCK.min(stride - p0);
                    for k0 in (0..k).step_by(K_CHUNK) {
                        let kc = K_CHUNK.min(k - k0);
                        // The chunk's taps over the block's positions, one contiguous row each.
                        pack_panel(panel, input, &offsets[k0..k0 + kc], p0, pb);
                        let step = Step {
                            first: k0 == 0,
                            last: k0 + kc == k,
                            relu: self.relu,
                        };
                        for blk in 0..blocks {
                            let weights = &self.packed[(blk * k + k0) * CO_TILE..][..kc * CO_TILE];
                            let bias: &[f32; CO_TILE] = self.bias[blk * CO_TILE..][..CO_TILE]
                                .try_into()
                                .expect("tile bias");
                            let rows = &mut full[blk * CO_TILE * stride..][..CO_TILE * stride];
                            let rows = &mut rows[p0..];
                            let panel = &panel[..kc * pb];
                            block_tiles(panel, pb, weights, bias, step, rows, stride, len - p0);
                        }
                    }
                }
                let dst = &mut out[b * self.co * oh * ow..][..self.co * oh * ow];
                for (o, dst) in dst.chunks_exact_mut(oh * ow).enumerate() {
                    let src = &full[o * stride..][..stride];
                    for (y, row) in dst.chunks_exact_mut(ow).enumerate() {
                        if self.pool {
                            let r0 = &src[2 * y * wp..][..2 * ow];
                            let r1 = &src[(2 * y + 1) * wp..][..2 * ow];
                            let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                            for (d, (a, b)) in row.iter_mut().zip(pairs) {
                                // The order of tract's max-pool (f32::MIN, row 0, row 1).
                                *d = f32::MIN.max(a[0]).max(a[1]).max(b[0]).max(b[1]);
                            }
                        } else {
                            row.copy_from_slice(&src[y * wp..][..wo]);
                        }
                    }
                }
            }
        });
    }

    /// Whether [`DirectConv::run_winograd`] computes this convolution: kernels 3 wide with at
    /// least [`WINO_MIN_TAPS`] taps per transformed product. It depends on the op alone, not on
    /// the batch or the width, so that a strip reads the same alone or batched.
    fn winograd_pays(&self) -> bool {
        self.kw == 3 && self.ci * self.kh >= WINO_MIN_TAPS
    }

    /// Whether [`DirectConv::run_winograd_2d`] computes this convolution: 3 × 3 kernels over at
    /// least [`WINO_MIN_TAPS`] input channels (it depends on the op alone, like
    /// [`DirectConv::winograd_pays`]).
    fn winograd_2d_pays(&self) -> bool {
        self.kh == 3 && self.kw == 3 && self.ci >= WINO_MIN_TAPS
    }

    /// For kernels 3 wide, the weights transformed for Winograd's F(4, 3) along rows
    /// ([`DirectConv::run_winograd`]), `[ceil(co / 6), 6, ci·kh, 6]` (block of six output
    /// channels, plane, tap, channel): per row `g` of a kernel, `Gg` ([`winograd_kernel_f64`]).
    /// Made on first use (plans build many convolutions that never run this way; not on rayon,
    /// whose waiting thread could start another run of this op and wait on itself).
    fn wino(&self) -> &[f32] {
        self.wino.get_or_init(|| {
            let k3 = self.ci * self.kh;
            let mut wino = vec![0f32; self.co.div_ceil(CO_TILE) * WINO_PLANES * k3 * CO_TILE];
            let kernels = self.packed.chunks_exact(3 * k3 * CO_TILE);
            for (planes, kernels) in wino
                .chunks_exact_mut(WINO_PLANES * k3 * CO_TILE)
                .zip(kernels)
            {
                // A row of a block's kernels: its three taps, the block's six channels each.
                for (t, g) in kernels.chunks_exact(3 * CO_TILE).enumerate() {
                    let v: [[f64; WINO_PLANES]; CO_TILE] = std::array::from_fn(|j| {
                        winograd_kernel_f64([0, 1, 2].map(|dx| f64::from(g[dx * CO_TILE + j])))
                    });
                    for m in 0..WINO_PLANES {
                        let dst = &mut planes[(m * k3 + t) * CO_TILE..][..CO_TILE];
                        for (d, v) in dst.iter_mut().zip(&v) {
                            *d = v[m] as f32;
                        }
                    }
                }
            }
            wino
        })
    }

    /// For 3 × 3 kernels, the weights transformed for Winograd's F(4 × 4, 3 × 3)
    /// ([`DirectConv::run_winograd_2d`]), `[ceil(co / 6), 36, ci, 6]`: plane `6·i + j` holds
    /// `(G g Gᵀ)[i][j]` of each kernel `g`, computed in f64. Made on first use, as
    /// [`DirectConv::wino`].
    fn wino2(&self) -> &[f32] {
        self.wino2.get_or_init(|| {
            const PLANES: usize = WINO_PLANES * WINO_PLANES;
            let ci = self.ci;
            let mut wino2 = vec![0f32; self.co.div_ceil(CO_TILE) * PLANES * ci * CO_TILE];
            let kernels = self.packed.chunks_exact(9 * ci * CO_TILE);
            for (planes, kernels) in wino2.chunks_exact_mut(PLANES * ci * CO_TILE).zip(kernels) {
                // One input channel's kernels: nine taps, the block's six channels each.
                for (c, g) in kernels.chunks_exact(9 * CO_TILE).enumerate() {
                    let tap = |t: usize, j: usize| f64::from(g[t * CO_TILE + j]);
                    // G applied to each kernel row ([row][channel][jx]), then down each column.
                    let rows: [[[f64; WINO_PLANES]; CO_TILE]; 3] = std::array::from_fn(|r| {
                        std::array::from_fn(|j| {
                            winograd_kernel_f64([
                                tap(3 * r, j),
                                tap(3 * r + 1, j),
                                tap(3 * r + 2, j),
                            ])
                        })
                    });
                    let [r0, r1, r2] = rows;
                    for jx in 0..WINO_PLANES {
                        let columns: [[f64; WINO_PLANES]; CO_TILE] = std::array::from_fn(|j| {
                            winograd_kernel_f64([r0[j][jx], r1[j][jx], r2[j][jx]])
                        });
                        for jy in 0..WINO_PLANES {
                            let plane = jy * WINO_PLANES + jx;
                            let dst = &mut planes[(plane * ci + c) * CO_TILE..][..CO_TILE];
                            for (d, v) in dst.iter_mut().zip(&columns) {
                                *d = v[jy] as f32;
                            }
                        }
                    }
                }
            }
            wino2
        })
    }

    /// The convolution by Winograd's F(4, 3) along rows. Four outputs `y[4u .. 4u + 4]` of a
    /// row come from six products `mj`, each a sum over input channels and kernel rows of a
    /// transformed weight ([`DirectConv::wino`]) times a transformed input `vj` (`Bᵀd` of the six
    /// inputs `d` under the four outputs, [`winograd_inputs`]), as `y = Aᵀm`
    /// ([`winograd_outputs`]). Six products with a third of the taps over a quarter of the
    /// positions: half the direct multiplications. In the planes of `vj` the kernel is one wide,
    /// so the images of a group are laid side by side and read as one long row in which every
    /// position is a valid one (short rows, such as the fourth convolution's single one, fill
    /// whole tiles). The products run through [`DirectConv::run_direct`]'s tiles; the four
    /// outputs of a unit go to four planes, from which the pool takes its maximum (in tract's
    /// order) or the rows are interleaved. Each sum runs in the same order whatever the group,
    /// and differs from the direct one by rounding.
    ///
    /// # Shapes
    /// As [`DirectConv::run_into`].
    fn run_winograd(&self, x: &[f32], n: usize, h: usize, w: usize, out: &mut [f32]) {
        let Some(z) = self.sizes(h, w).filter(|_| !out.is_empty()) else {
            return;
        };
        let (wo, oh, ow, hu) = (z.wo, z.oh, z.ow, z.hu);
        let hp = z.hp;
        // Units of four outputs per transformed row of an image, and units the output keeps.
        let up = wo.div_ceil(WINO_OUT);
        let units = if self.pool { ow.div_ceil(2) } else { up };
        let blocks = self.co.div_ceil(CO_TILE);
        let co6 = blocks * CO_TILE;
        // Images side by side: as many as keep the transformed inputs near WINO_GROUP_FLOATS.
        let group = (WINO_GROUP_FLOATS / (WINO_PLANES * self.ci * hp * up).max(1)).clamp(1, n);
        // Padded rows with zeros to the last float a vector of units reads (`winograd_inputs`).
        let pitch = WINO_OUT * up + ROW_SLACK;
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                input,
                full,
                panel,
                vin,
                sums,
                ..
            } = scratch;
            input.resize(self.ci * hp * pitch, 0.0);
            sums.resize(WINO_PLANES * co6 * P_BLOCK, 0.0);
            panel.resize(K_CHUNK * P_BLOCK, 0.0);
            for b0 in (0..n).step_by(group) {
                let g = group.min(n - b0);
                let Layout {
                    row_len,
                    vplane,
                    vlen,
                    len,
                    stride,
                } = Layout::new(g, up, self.ci, (hp, hu), units);
                vin.resize(WINO_PLANES * vlen, 0.0);
                full.resize(WINO_OUT * co6 * stride, 0.0);
                let offsets: Vec<usize> = (0..self.ci)
                    .flat_map(|c| (0..self.kh).map(move |dy| c * vplane + dy * row_len))
                    .collect();
                for bi in 0..g {
                    let b = b0 + bi;
                    let image = &x[b * self.ci * h * w..][..self.ci * h * w];
                    self.pad_rows_into(image, w, pitch, input);
                    let mut planes = vin.chunks_exact_mut(vlen);
                    let mut v: [&mut [f32]; WINO_PLANES] =
                        std::array::from_fn(|_| planes.next().expect("plane"));
                    for (row, at) in input[..self.ci * hp * pitch]
                        .chunks_exact(pitch)
                        .zip((bi * up..).step_by(row_len))
                    {
                        let v = v.each_mut().map(|p| &mut p[at..][..up]);
                        winograd_inputs(row, v);
                    }
                }
                for p0 in (0..stride).step_by(P_BLOCK) {
                    let pb = P_BLOCK.min(stride - p0);
                    let block = (p0, pb, len);
                    let vin = &vin[..WINO_PLANES * vlen];
                    winograd_products(self.wino(), vin, vlen, &offsets, block, panel, sums);
                    // y = Aᵀm, biased and rectified, to the four output planes.
                    for o in 0..self.co {
                        let m: [&[f32]; WINO_PLANES] =
                            std::array::from_fn(|j| &sums[(j * co6 + o) * P_BLOCK..][..pb]);
                        let ys = &mut full[o * WINO_OUT * stride..][..WINO_OUT * stride];
                        self.unit_outputs(o, m, ys, p0);
                    }
                }
                for bi in 0..g {
                    let dst = &mut out[(b0 + bi) * self.co * oh * ow..][..self.co * oh * ow];
                    for (o, dst) in dst.chunks_exact_mut(oh * ow).enumerate() {
                        let ys = &full[o * WINO_OUT * stride..][..WINO_OUT * stride];
                        // Output `j` of unit `u` in transformed row `r`.
                        let y = |j: usize, r: usize, u: usize| ys[j * stride + r + u];
                        let at = |y: usize| y * row_len + bi * up;
                        for (yy, dst) in dst.chunks_exact_mut(ow).enumerate() {
                            if self.pool {
                                let (r0, r1) = (at(2 * yy), at(2 * yy + 1));
                                let plane = |j: usize, r: usize| &ys[j * stride + r..][..units];
                                let top = std::array::from_fn(|j| plane(j, r0));
                                let bottom = std::array::from_fn(|j| plane(j, r1));
                                winograd_pool(top, bottom, dst);
                            } else {
                                let r = at(yy);
                                for (xx, d) in dst.iter_mut().enumerate() {
                                    *d = y(xx % WINO_OUT, r, xx / WINO_OUT);
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /// Output channel `o`'s four outputs of each unit in a block from its six products `m`
    /// ([`winograd_outputs`]: biased, and rectified when the op is), into the four planes of
    /// `ys` from position `p0`.
    ///
    /// # Shapes
    /// Every slice of `m`: `[pb]`; `ys`: `[4, stride]` with `p0 + pb ≤ stride`.
    fn unit_outputs(&self, o: usize, m: [&[f32]; WINO_PLANES], ys: &mut [f32], p0: usize) {
        let (pb, stride) = (m[0].len(), ys.len() / WINO_OUT);
        let mut ys = ys.chunks_exact_mut(stride);
        let y: [&mut [f32]; WINO_OUT] =
            std::array::from_fn(|_| &mut ys.next().expect("plane")[p0..][..pb]);
        if self.relu {
            winograd_outputs::<true>(m, y, self.bias[o]);
        } else {
            winograd_outputs::<false>(m, y, self.bias[o]);
        }
    }

    /// The convolution by Winograd's F(4 × 4, 3 × 3): the transform of
    /// [`DirectConv::run_winograd`] down columns (six padded rows at a time), then along each
    /// row, so that each block of four rows by
    /// four columns of outputs comes from 36 products, each a sum over input channels alone (the
    /// kernel is one by one in the transformed planes): a quarter of the direct multiplications.
    /// The planes hold, per input channel, the blocks of four rows one after another, each
    /// block's row with the group's images side by side. The products run through the same
    /// tiles; the output transform runs down columns, then along rows, to sixteen output planes
    /// (row and column in the block), from which the pool takes its maximum (in tract's order)
    /// or the rows are interleaved. Each sum runs in the same order whatever the group.
    ///
    /// # Shapes
    /// As [`DirectConv::run_into`].
    fn run_winograd_2d(&self, x: &[f32], n: usize, h: usize, w: usize, out: &mut [f32]) {
        const PLANES: usize = WINO_PLANES * WINO_PLANES;
        const OUTS: usize = WINO_OUT * WINO_OUT;
        let Some(z) = self.sizes(h, w).filter(|_| !out.is_empty()) else {
            return;
        };
        let (wo, oh, ow, hu, hp) = (z.wo, z.oh, z.ow, z.hu, z.hp);
        let ci = self.ci;
        // Units of four outputs per row of an image, and units the output keeps.
        let up = wo.div_ceil(WINO_OUT);
        let units = if self.pool { ow.div_ceil(2) } else { up };
        // Blocks of four output rows (each reads six padded rows, zero past the input).
        let hb = hu.div_ceil(WINO_OUT);
        let blocks = self.co.div_ceil(CO_TILE);
        let co6 = blocks * CO_TILE;
        // Images side by side: as many as keep the transformed inputs near WINO_GROUP_FLOATS.
        let group = (WINO_GROUP_FLOATS / (PLANES * ci * hb * up).max(1)).clamp(1, n);
        let pitch = WINO_OUT * up + ROW_SLACK;
        let zeros = vec![0f32; pitch];
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                input,
                full,
                panel,
                vin,
                sums,
                rows,
            } = scratch;
            input.resize(ci * hp * pitch, 0.0);
            rows.resize(WINO_PLANES * pitch, 0.0);
            sums.resize(PLANES * co6 * P_BLOCK, 0.0);
            panel.resize(K_CHUNK * P_BLOCK, 0.0);
            for b0 in (0..n).step_by(group) {
                let g = group.min(n - b0);
                let Layout {
                    row_len,
                    vplane,
                    vlen,
                    len,
                    stride,
                } = Layout::new(g, up, ci, (hb, hb), units);
                vin.resize(PLANES * vlen, 0.0);
                full.resize(OUTS * co6 * stride, 0.0);
                let offsets: Vec<usize> = (0..ci).map(|c| c * vplane).collect();
                for bi in 0..g {
                    let image = &x[(b0 + bi) * ci * h * w..][..ci * h * w];
                    self.pad_rows_into(image, w, pitch, input);
                    let mut planes: Vec<&mut [f32]> = vin.chunks_exact_mut(vlen).collect();
                    for c in 0..ci {
                        for rb in 0..hb {
                            // Down columns: six padded rows (zero past the input) to six rows.
                            let d: [&[f32]; WINO_PLANES] = std::array::from_fn(|a| {
                                let y = WINO_OUT * rb + a;
                                if y < hp {
                                    &input[(c * hp + y) * pitch..][..pitch]
                                } else {
                                    &zeros[..]
                                }
                            });
                            {
                                let mut r = rows.chunks_exact_mut(pitch);
                                let t: [&mut [f32]; WINO_PLANES] =
                                    std::array::from_fn(|_| r.next().expect("row"));
                                winograd_columns(d, t);
                            }
                            // Along each of them: row `jy` to planes `6·jy + jx`.
                            let at = c * vplane + rb * row_len + bi * up;
                            for (jy, row) in rows.chunks_exact(pitch).enumerate() {
                                let mut v = planes.iter_mut().skip(jy * WINO_PLANES);
                                let v: [&mut [f32]; WINO_PLANES] = std::array::from_fn(|_| {
                                    &mut v.next().expect("plane")[at..][..up]
                                });
                                winograd_inputs(row, v);
                            }
                        }
                    }
                }
                for p0 in (0..stride).step_by(P_BLOCK) {
                    let pb = P_BLOCK.min(stride - p0);
                    let block = (p0, pb, len);
                    let vin = &vin[..PLANES * vlen];
                    winograd_products(self.wino2(), vin, vlen, &offsets, block, panel, sums);
                    // Down columns (Aᵀ over the six rows of products), then along rows (Aᵀ,
                    // biased and rectified) to the sixteen output planes.
                    let mut t = [[0f32; P_BLOCK]; WINO_OUT * WINO_PLANES];
                    for o in 0..self.co {
                        for jx in 0..WINO_PLANES {
                            let m: [&[f32]; WINO_PLANES] = std::array::from_fn(|jy| {
                                &sums[((jy * WINO_PLANES + jx) * co6 + o) * P_BLOCK..][..pb]
                            });
                            let mut ts = t.iter_mut().skip(jx).step_by(WINO_PLANES);
                            let ts: [&mut [f32]; WINO_OUT] =
                                std::array::from_fn(|_| &mut ts.next().expect("row")[..pb]);
                            winograd_outputs::<false>(m, ts, 0.0);
                        }
                        let ys = &mut full[o * OUTS * stride..][..OUTS * stride];
                        for (oy, ys) in ys.chunks_exact_mut(WINO_OUT * stride).enumerate() {
                            let m: [&[f32]; WINO_PLANES] =
                                std::array::from_fn(|jx| &t[oy * WINO_PLANES + jx][..pb]);
                            self.unit_outputs(o, m, ys, p0);
                        }
                    }
                }
                for bi in 0..g {
                    let dst = &mut out[(b0 + bi) * self.co * oh * ow..][..self.co * oh * ow];
                    for (o, dst) in dst.chunks_exact_mut(oh * ow).enumerate() {
                        let ys = &full[o * OUTS * stride..][..OUTS * stride];
                        // Output row `oy`, column `ox` of the unit at `r`, and on.
                        let plane = |oy: usize, ox: usize, r: usize| {
                            &ys[(oy * WINO_OUT + ox) * stride + r..]
                        };
                        let at = |rb: usize| rb * row_len + bi * up;
                        for (yy, dst) in dst.chunks_exact_mut(ow).enumerate() {
                            if self.pool {
                                let (rb, oy) = ((2 * yy) / WINO_OUT, (2 * yy) % WINO_OUT);
                                let r = at(rb);
                                let top = std::array::from_fn(|ox| &plane(oy, ox, r)[..units]);
                                let bottom =
                                    std::array::from_fn(|ox| &plane(oy + 1, ox, r)[..units]);
                                winograd_pool(top, bottom, dst);
                            } else {
                                let (rb, oy) = (yy / WINO_OUT, yy % WINO_OUT);
                                let r = at(rb);
                                for (xx, d) in dst.iter_mut().enumerate() {
                                    *d = plane(oy, xx % WINO_OUT, r)[xx / WINO_OUT];
                                }
                            }
                        }
                    }
                }
            }
        });
    }
}

/// The products of Winograd's transformed planes over one block of positions `p0 .. p0 + pb`
/// (of `len` computed): for each plane `m` of `vin` (`vlen` floats apart), `sums[m]`
/// `[co6, P_BLOCK]` sums, over the taps at `offsets` in the plane, `wino`'s weights times the
/// inputs, through [`DirectConv::run_direct`]'s tiles (no bias, no ReLU).
///
/// # Shapes
/// `wino`: `[co6 / 6, planes, k, 6]` with `k = offsets.len()`; `vin`: `[planes, vlen]`;
/// `sums`: at least `[planes, co6, P_BLOCK]`.
fn winograd_products(
    wino: &[f32],
    vin: &[f32],
    vlen: usize,
    offsets: &[usize],
    (p0, pb, len): (usize, usize, usize),
    panel: &mut [f32],
    sums: &mut [f32],
) {
    let (k, planes) = (offsets.len(), vin.len() / vlen);
    let blocks = wino.len() / (planes * k * CO_TILE);
    let co6 = blocks * CO_TILE;
    let zero = [0f32; CO_TILE];
    for m in 0..planes {
        let v = &vin[m * vlen..][..vlen];
        let msums = &mut sums[m * co6 * P_BLOCK..][..co6 * P_BLOCK];
        for k0 in (0..k).step_by(K_CHUNK) {
            let kc = K_CHUNK.min(k - k0);
            pack_panel(panel, v, &offsets[k0..k0 + kc], p0, pb);
            let step = Step {
                first: k0 == 0,
                last: false,
                relu: false,
            };
            for blk in 0..blocks {
                let at = (blk * planes + m) * k + k0;
                let weights = &wino[at * CO_TILE..][..kc * CO_TILE];
                let rows = &mut msums[blk * CO_TILE * P_BLOCK..];
                let panel = &panel[..kc * pb];
                block_tiles(panel, pb, weights, &zero, step, rows, P_BLOCK, len - p0);
            }
        }
    }
}

/// Where a group of images lies in Winograd's transformed planes ([`DirectConv::run_winograd`],
/// [`DirectConv::run_winograd_2d`]).
struct Layout {
    /// A transformed row: the group's rows side by side, `up` units each.
    row_len: usize,
    /// One input channel's rows.
    vplane: usize,
    /// One plane: every channel, and room for a last tile's reads.
    vlen: usize,
    /// Positions computed: up to the last unit kept of the last image's last row.
    len: usize,
    /// `len` in whole tiles.
    stride: usize,
}

impl Layout {
    /// For a group of `g` images of `up` units a row, `ci` channels of `rows` transformed rows,
    /// of which the first `computed` hold outputs, `units` of them kept in a row.
    fn new(g: usize, up: usize, ci: usize, (rows, computed): (usize, usize), units: usize) -> Self {
        let row_len = g * up;
        let vplane = rows * row_len;
        let len = (computed - 1) * row_len + (g - 1) * up + units;
        Layout {
            row_len,
            vplane,
            vlen: ci * vplane + P_TILE,
            len,
            stride: len.div_ceil(P_TILE) * P_TILE,
        }
    }
}

/// Outputs per unit of [`DirectConv::run_winograd`] (F(4, 3)).
const WINO_OUT: usize = 4;
/// Transformed inputs, weights and products per unit.
const WINO_PLANES: usize = 6;

/// Zero floats past a row's last unit in [`DirectConv::run_winograd`]'s padded rows: what a
/// vector of 8 units from the last unit reads ([`winograd_inputs`]).
const ROW_SLACK: usize = 32;

/// Winograd's F(4, 3) input transform `Bᵀd` (points 0, ±1, ±2 and ∞) of one padded row: unit
/// `u` reads the six inputs `row[4u .. 4u + 6]`, and `v[j][u]` is its transformed input `j`.
///
/// # Shapes
/// `row`: `[4·up + ROW_SLACK]`, zero past the padded row; each of `v`: `[up]`.
fn winograd_inputs(row: &[f32], v: [&mut [f32]; WINO_PLANES]) {
    let up = v[0].len();
    assert!(row.len() >= WINO_OUT * up + ROW_SLACK);
    assert!(v.iter().all(|v| v.len() == up));
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked above); the asserts above bound every
            // read of `row` and every write to `v`.
            unsafe { winograd_inputs_avx2(row, v) };
            return;
        }
    }
    let [v0, v1, v2, v3, v4, v5] = v;
    for (u, d) in row.windows(6).step_by(WINO_OUT).take(up).enumerate() {
        let (d0, d1, d2, d3, d4, d5) = (d[0], d[1], d[2], d[3], d[4], d[5]);
        let (s12, d12) = (d1 + d2, d1 - d2);
        let (d42, d31) = (d4 - d2, d3 - d1);
        v0[u] = 4.0 * d0 - 5.0 * d2 + d4;
        v1[u] = (d3 + d4) - 4.0 * s12;
        v2[u] = (d4 - d3) + 4.0 * d12;
        v3[u] = d42 + 2.0 * d31;
        v4[u] = d42 - 2.0 * d31;
        v5[u] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// The inputs `k` and `k + 1` (`k` = 0 or 2, by `HIGH`) of eight units from `row`, one vector
/// each: the four quads of eight floats `q` are transposed within their 128-bit lanes.
///
/// # Safety
/// The CPU must have AVX2; `row` must be readable for 32 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn deinterleave4(row: *const f32) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    let (r0, r1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
    let (r2, r3) = (_mm256_loadu_ps(row.add(16)), _mm256_loadu_ps(row.add(24)));
    // Units 0–3 in the low lanes, 4–7 in the high ones.
    let a0 = _mm256_permute2f128_ps(r0, r2, 0x20);
    let a1 = _mm256_permute2f128_ps(r0, r2, 0x31);
    let a2 = _mm256_permute2f128_ps(r1, r3, 0x20);
    let a3 = _mm256_permute2f128_ps(r1, r3, 0x31);
    let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
    let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
    [
        _mm256_shuffle_ps(t0, t2, 0x44),
        _mm256_shuffle_ps(t0, t2, 0xEE),
        _mm256_shuffle_ps(t1, t3, 0x44),
        _mm256_shuffle_ps(t1, t3, 0xEE),
    ]
}

/// [`winograd_inputs`] with AVX2, 8 units at a time (the same operations in the same order, so
/// the same values); a last partial vector goes through a buffer.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `row` must hold `4·up + ROW_SLACK` floats, where `up` is the
/// length of every slice of `v`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn winograd_inputs_avx2(row: &[f32], v: [&mut [f32]; WINO_PLANES]) {
    use std::arch::x86_64::*;
    let up = v[0].len();
    debug_assert!(row.len() >= WINO_OUT * up + ROW_SLACK);
    let (two, four, five) = (
        _mm256_set1_ps(2.0),
        _mm256_set1_ps(4.0),
        _mm256_set1_ps(5.0),
    );
    let out = v.map(|v| v.as_mut_ptr());
    for u in (0..up).step_by(8) {
        let at = row.as_ptr().add(WINO_OUT * u);
        let [d0, d1, d2, d3] = deinterleave4(at);
        let [d4, d5, _, _] = deinterleave4(at.add(WINO_OUT));
        let (s12, d12) = (_mm256_add_ps(d1, d2), _mm256_sub_ps(d1, d2));
        let (d42, d31) = (_mm256_sub_ps(d4, d2), _mm256_sub_ps(d3, d1));
        let t = [
            _mm256_add_ps(
                _mm256_sub_ps(_mm256_mul_ps(four, d0), _mm256_mul_ps(five, d2)),
                d4,
            ),
            _mm256_sub_ps(_mm256_add_ps(d3, d4), _mm256_mul_ps(four, s12)),
            _mm256_add_ps(_mm256_sub_ps(d4, d3), _mm256_mul_ps(four, d12)),
            _mm256_add_ps(d42, _mm256_mul_ps(two, d31)),
            _mm256_sub_ps(d42, _mm256_mul_ps(two, d31)),
            _mm256_add_ps(
                _mm256_sub_ps(_mm256_mul_ps(four, d1), _mm256_mul_ps(five, d3)),
                d5,
            ),
        ];
        let left = up - u;
        for (o, t) in out.iter().zip(t) {
            if left >= 8 {
                _mm256_storeu_ps(o.add(u), t);
            } else {
                let mut buf = [0f32; 8];
                _mm256_storeu_ps(buf.as_mut_ptr(), t);
                std::ptr::copy_nonoverlapping(buf.as_ptr(), o.add(u), left);
            }
        }
    }
}

/// Winograd's F(4, 3) input transform `Bᵀd` down columns: `v[j][x]` from the six rows `d`
/// (the same operations as [`winograd_inputs`] along a row).
///
/// # Shapes
/// Every slice of `d` and `v`: `[len]`.
#[inline(always)]
fn winograd_columns_in(d: [&[f32]; WINO_PLANES], v: [&mut [f32]; WINO_PLANES]) {
    let up = d[0].len();
    let [d0, d1, d2, d3, d4, d5] = d;
    let (d0, d1, d2, d3, d4, d5) = (
        &d0[..up],
        &d1[..up],
        &d2[..up],
        &d3[..up],
        &d4[..up],
        &d5[..up],
    );
    let [v0, v1, v2, v3, v4, v5] = v;
    let (v0, v1, v2) = (&mut v0[..up], &mut v1[..up], &mut v2[..up]);
    let (v3, v4, v5) = (&mut v3[..up], &mut v4[..up], &mut v5[..up]);
    for u in 0..up {
        let (s12, d12) = (d1[u] + d2[u], d1[u] - d2[u]);
        let (d42, d31) = (d4[u] - d2[u], d3[u] - d1[u]);
        v0[u] = 4.0 * d0[u] - 5.0 * d2[u] + d4[u];
        v1[u] = (d3[u] + d4[u]) - 4.0 * s12;
        v2[u] = (d4[u] - d3[u]) + 4.0 * d12;
        v3[u] = d42 + 2.0 * d31;
        v4[u] = d42 - 2.0 * d31;
        v5[u] = 4.0 * d1[u] - 5.0 * d3[u] + d5[u];
    }
}

/// Winograd's F(4, 3) output transform `Aᵀm` over a block of units: from the six products `m`
/// of each unit, its four outputs `y`, biased, and rectified when `RELU`.
///
/// # Shapes
/// Every slice of `m` and `y`: `[pb]`.
#[inline(always)]
fn winograd_outputs_in<const RELU: bool>(
    m: [&[f32]; WINO_PLANES],
    y: [&mut [f32]; WINO_OUT],
    bias: f32,
) {
    let pb = m[0].len();
    let [m0, m1, m2, m3, m4, m5] = m;
    let (m0, m1, m2, m3, m4, m5) = (
        &m0[..pb],
        &m1[..pb],
        &m2[..pb],
        &m3[..pb],
        &m4[..pb],
        &m5[..pb],
    );
    let [y0, y1, y2, y3] = y;
    let (y0, y1, y2, y3) = (&mut y0[..pb], &mut y1[..pb], &mut y2[..pb], &mut y3[..pb]);
    let out = |v: f32| if RELU { v.max(0.0) } else { v };
    for q in 0..pb {
        let (s12, d12) = (m1[q] + m2[q], m1[q] - m2[q]);
        let (s34, d34) = (m3[q] + m4[q], m3[q] - m4[q]);
        y0[q] = out(m0[q] + s12 + s34 + bias);
        y1[q] = out(d12 + 2.0 * d34 + bias);
        y2[q] = out(s12 + 4.0 * s34 + bias);
        y3[q] = out(d12 + 8.0 * d34 + m5[q] + bias);
    }
}

/// The 2 × 2 max-pool of two rows of F(4, 3) outputs: pooled column `2u` from outputs 0 and 1
/// of unit `u` in `top` and `bottom`, column `2u + 1` from outputs 2 and 3, in the order of
/// tract's max-pool (`f32::MIN`, top, bottom).
///
/// # Shapes
/// Every slice of `top` and `bottom`: `[units]` with `2·units ≥ dst.len()`.
#[inline(always)]
fn winograd_pool_in(top: [&[f32]; WINO_OUT], bottom: [&[f32]; WINO_OUT], dst: &mut [f32]) {
    let pool = |t: [&[f32]; WINO_OUT], b: [&[f32]; WINO_OUT], j: usize, u: usize| {
        f32::MIN
            .max(t[j][u])
            .max(t[j + 1][u])
            .max(b[j][u])
            .max(b[j + 1][u])
    };
    let half = dst.len() / 2;
    let mut pairs = dst.chunks_exact_mut(2);
    for (u, d) in pairs.by_ref().enumerate() {
        d[0] = pool(top, bottom, 0, u);
        d[1] = pool(top, bottom, 2, u);
    }
    if let [last] = pairs.into_remainder() {
        *last = pool(top, bottom, 0, half);
    }
}

/// Define `$name`, which runs `$inner` (`#[inline(always)]`) compiled with AVX2 and FMA
/// enabled where the CPU has them, so that LLVM vectorises its loops 8 wide. Rust never fuses a
/// product and a sum by itself, so the results are the same either way.
macro_rules! vectorised {
    ($(#[$doc:meta])* fn $name:ident $(<$(const $c:ident: $ct:ty),*>)? ($($arg:ident: $ty:ty),*) => $inner:ident) => {
        $(#[$doc])*
        fn $name $(<$(const $c: $ct),*>)? ($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2 $(<$(const $c: $ct),*>)? ($($arg: $ty),*) {
                    $inner $(::<$($c),*>)? ($($arg),*)
                }
                if super::simd::avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    return unsafe { avx2 $(::<$($c),*>)? ($($arg),*) };
                }
            }
            $inner $(::<$($c),*>)? ($($arg),*)
        }
    };
}

vectorised! {
    /// Winograd's F(4, 3) input transform `Bᵀd` down columns: [`winograd_columns_in`].
    fn winograd_columns(d: [&[f32]; WINO_PLANES], v: [&mut [f32]; WINO_PLANES]) => winograd_columns_in
}

vectorised! {
    /// Winograd's F(4, 3) output transform `Aᵀm` over a block of units:
    /// [`winograd_outputs_in`].
    fn winograd_outputs<const RELU: bool>(m: [&[f32]; WINO_PLANES], y: [&mut [f32]; WINO_OUT], bias: f32) => winograd_outputs_in
}

vectorised! {
    /// The 2 × 2 max-pool of two rows of F(4, 3) outputs: [`winograd_pool_in`].
    fn winograd_pool(top: [&[f32]; WINO_OUT], bottom: [&[f32]; WINO_OUT], dst: &mut [f32]) => winograd_pool_in
}

/// Winograd's F(4, 3) kernel transform `Gg` of one kernel row `g` (three taps), in f64.
fn winograd_kernel_f64([g0, g1, g2]: [f64; 3]) -> [f64; WINO_PLANES] {
    // Products by reciprocals, not divisions: the plans transform thousands of kernels at
    // start, and f64 keeps the f32 results the same.
    const SIXTH: f64 = 1.0 / 6.0;
    const TWENTY_FOURTH: f64 = 1.0 / 24.0;
    [
        g0 * 0.25,
        -(g0 + g1 + g2) * SIXTH,
        -(g0 - g1 + g2) * SIXTH,
        (g0 + 2.0 * g1 + 4.0 * g2) * TWENTY_FOURTH,
        (g0 - 2.0 * g1 + 4.0 * g2) * TWENTY_FOURTH,
        g2,
    ]
}

/// Fewest taps per transformed product for [`DirectConv::run_winograd`] (the first
/// convolution, 3 channels × 3 rows, runs directly: its tiles would be mostly overhead).
const WINO_MIN_TAPS: usize = 32;
/// About how many floats the six transformed inputs of a group of images side by side take in
/// [`DirectConv::run_winograd`] (1 MiB).
const WINO_GROUP_FLOATS: usize = 1 << 18;

/// Pack a panel: row `t` holds `pb` positions from `p0` of tap `taps[t]`, read in `src` from
/// offset `taps[t] + p0`.
///
/// # Shapes
/// `panel`: at least `taps.len() · pb`.
fn pack_panel(panel: &mut [f32], src: &[f32], taps: &[usize], p0: usize, pb: usize) {
    if pb == P_BLOCK {
        // Whole blocks as fixed-size copies, which compile to vector moves.
        for (row, &off) in panel.chunks_exact_mut(P_BLOCK).zip(taps) {
            let from: &[f32; P_BLOCK] = src[off + p0..][..P_BLOCK].try_into().expect("block");
            let to: &mut [f32; P_BLOCK] = row.try_into().expect("block");
            *to = *from;
        }
    } else {
        for (row, &off) in panel.chunks_exact_mut(pb).zip(taps) {
            row.copy_from_slice(&src[off + p0..][..pb]);
        }
    }
}

/// Taps per panel: the panel (`K_CHUNK × P_BLOCK` floats, 16 KiB) stays in the L1 cache while
/// every output channel reads it.
const K_CHUNK: usize = 128;
/// Positions per panel.
const P_BLOCK: usize = 2 * P_TILE;

/// Buffers kept between runs on each thread (the plans run on rayon's workers).
#[derive(Default)]
struct Scratch {
    input: Vec<f32>,
    full: Vec<f32>,
    panel: Vec<f32>,
    /// [`DirectConv::run_winograd`]'s six transformed inputs.
    vin: Vec<f32>,
    /// [`DirectConv::run_winograd`]'s six products over a block of positions.
    sums: Vec<f32>,
    /// [`DirectConv::run_winograd_2d`]'s six rows of a block transformed down columns.
    rows: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Where a chunk of taps stands in the sum.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The first chunk: start from the bias (else from what `rows` holds).
    first: bool,
    /// The last chunk: apply the ReLU, when `relu`.
    last: bool,
    relu: bool,
}

/// The tiles of one co-block over a panel of `pb` positions (`panel` `[kc, pb]`): their sums go
/// to `rows` `[6, stride]` from column 0. A last tile with at most 8 of the `left` positions
/// still to compute computes only 8.
#[inline]
#[allow(clippy::too_many_arguments)]
fn block_tiles(
    panel: &[f32],
    pb: usize,
    weights: &[f32],
    bias: &[f32; CO_TILE],
    step: Step,
    rows: &mut [f32],
    stride: usize,
    left: usize,
) {
    for t in (0..pb).step_by(P_TILE) {
        let (cols, rows) = (&panel[t..], &mut rows[t..]);
        if t + 8 >= left {
            tile::<1>(cols, pb, weights, bias, step, rows, stride);
        } else {
            tile::<2>(cols, pb, weights, bias, step, rows, stride);
        }
    }
}

/// One tile: 6 output channels (their `weights` `[kc, 6]` and `bias`) at `8·V` positions
/// (`V` ≤ 2). `cols` holds the chunk's `kc` taps, row `t` at `cols[t·pitch..][..8·V]`; the sums
/// go to `rows` `[6, stride]`, columns `0 .. 8·V`.
#[inline]
fn tile<const V: usize>(
    cols: &[f32],
    pitch: usize,
    weights: &[f32],
    bias: &[f32; CO_TILE],
    step: Step,
    rows: &mut [f32],
    stride: usize,
) {
    let width = 8 * V;
    let kc = weights.len() / CO_TILE;
    assert!(width <= P_TILE);
    assert!(kc == 0 || (kc - 1) * pitch + width <= cols.len());
    assert!(rows.len() >= (CO_TILE - 1) * stride + width);
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked above); the asserts above bound every
            // read of `cols` and `weights` and every access to `rows`.
            unsafe { tile_avx2::<V>(cols, pitch, weights, bias, step, rows, stride) };
            return;
        }
    }
    let mut acc = [[0f32; P_TILE]; CO_TILE];
    for (j, a) in acc.iter_mut().enumerate() {
        let a = &mut a[..width];
        if step.first {
            a.fill(bias[j]);
        } else {
            a.copy_from_slice(&rows[j * stride..][..width]);
        }
    }
    for (t, w) in weights.chunks_exact(CO_TILE).enumerate() {
        let src = &cols[t * pitch..][..width];
        for (a, &wj) in acc.iter_mut().zip(w) {
            for (a, &s) in a.iter_mut().zip(src) {
                *a += wj * s;
            }
        }
    }
    let relu = step.last && step.relu;
    for (j, a) in acc.iter().enumerate() {
        let dst = &mut rows[j * stride..][..width];
        for (d, &v) in dst.iter_mut().zip(a) {
            *d = if relu { v.max(0.0) } else { v };
        }
    }
}

/// [`tile`] with AVX2 and FMA: `6·V` accumulators of 8 floats (with `V` = 2, 15 of the 16
/// registers).
///
/// # Safety
/// The CPU must have AVX2 and FMA, and the bounds [`tile`] asserts must hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const V: usize>(
    cols: &[f32],
    pitch: usize,
    weights: &[f32],
    bias: &[f32; CO_TILE],
    step: Step,
    rows: &mut [f32],
    stride: usize,
) {
    use std::arch::x86_64::*;
    let r = rows.as_mut_ptr();
    let mut acc = [[_mm256_setzero_ps(); V]; CO_TILE];
    for (j, a) in acc.iter_mut().enumerate() {
        for (v, a) in a.iter_mut().enumerate() {
            *a = if step.first {
                _mm256_set1_ps(bias[j])
            } else {
                _mm256_loadu_ps(r.add(j * stride + 8 * v))
            };
        }
    }
    let kc = weights.len() / CO_TILE;
    let mut s = cols.as_ptr();
    let mut w = weights.as_ptr();
    for _ in 0..kc {
        let mut x = [_mm256_setzero_ps(); V];
        for (v, x) in x.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(s.add(8 * v));
        }
        for (j, a) in acc.iter_mut().enumerate() {
            let wj = _mm256_broadcast_ss(&*w.add(j));
            for (a, &x) in a.iter_mut().zip(&x) {
                *a = _mm256_fmadd_ps(wj, x, *a);
            }
        }
        s = s.add(pitch);
        w = w.add(CO_TILE);
    }
    let relu = step.last && step.relu;
    let zero = _mm256_setzero_ps();
    for (j, a) in acc.iter().enumerate() {
        for (v, &a) in a.iter().enumerate() {
            let a = if relu { _mm256_max_ps(a, zero) } else { a };
            _mm256_storeu_ps(r.add(j * stride + 8 * v), a);
        }
    }
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        "DirectConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}→{} {}×{} pad {:?} relu {} pool {}",
            self.ci, self.co, self.kh, self.kw, self.pad, self.relu, self.pool
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        if shape.len() != 4 || shape[1] != self.ci {
            bail!("DirectConv expects [n, {}, h, w], got {shape:?}", self.ci);
        }
        let (n, h, w) = (shape[0], shape[2], shape[3]);
        let Some((ho, wo)) = self.output_size(h, w) else {
            bail!(
                "DirectConv: a {}×{} kernel does not fit {h}×{w}",
                self.kh,
                self.kw
            );
        };
        let view = input.try_as_plain_ram()?;
        let x = view.as_slice::<f32>()?;
        let mut out = Tensor::zero::<f32>(&[n, self.co, ho, wo])?;
        self.run_into(
            x,
            n,
            h,
            w,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DirectConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        if s.rank() != 4 {
            bail!("DirectConv expects a rank-4 input");
        }
        let size = |d: &TDim, before: usize, after: usize, k: usize| {
            let d = d.clone() + (before + after) as i64 - (k as i64 - 1);
            if self.pool {
                (d - 2) / 2 + 1
            } else {
                d
            }
        };
        Ok(tvec!(f32::fact([
            s[0].clone(),
            self.co.to_dim(),
            size(&s[2], self.pad[0], self.pad[2], self.kh),
            size(&s[3], self.pad[1], self.pad[3], self.kw),
        ])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition of a padded, valid convolution, one output at a time.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        [co, ci, kh, kw]: [usize; 4],
        pad: [usize; 4],
        relu: bool,
        n: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let (ho, wo) = (h + pad[0] + pad[2] + 1 - kh, w + pad[1] + pad[3] + 1 - kw);
        let mut out = vec![0f32; n * co * ho * wo];
        for b in 0..n {
            for o in 0..co {
                for y in 0..ho {
                    for xo in 0..wo {
                        let mut s = bias[o] as f64;
                        for c in 0..ci {
                            for dy in 0..kh {
                                for dx in 0..kw {
                                    let (iy, ix) = (y + dy, xo + dx);
                                    if iy < pad[0] || ix < pad[1] {
                                        continue;
                                    }
                                    let (iy, ix) = (iy - pad[0], ix - pad[1]);
                                    if iy >= h || ix >= w {
                                        continue;
                                    }
                                    s += weight[((o * ci + c) * kh + dy) * kw + dx] as f64
                                        * x[((b * ci + c) * h + iy) * w + ix] as f64;
                                }
                            }
                        }
                        let v = s as f32;
                        out[((b * co + o) * ho + y) * wo + xo] = if relu { v.max(0.0) } else { v };
                    }
                }
            }
        }
        out
    }

    /// Against the definition on the reader's shapes and on odd ones: channels not a multiple
    /// of 6, widths below and above a tile, a last tile of 8 positions (conv4 at width 28),
    /// padding on every side, batches of 2 and 3. Pooled, bit for bit the unpooled output
    /// through the plans' max-pool.
    #[test]
    fn matches_the_definition() {
        // ([co, ci, kh, kw], pad, relu, [n, h, w])
        type Case = ([usize; 4], [usize; 4], bool, [usize; 3]);
        let cases: [Case; 8] = [
            ([48, 3, 3, 3], [0, 12, 0, 12], true, [1, 32, 57]),
            ([96, 48, 3, 3], [0; 4], true, [1, 15, 40]),
            ([192, 96, 3, 3], [0; 4], true, [1, 6, 19]),
            ([192, 192, 4, 3], [0; 4], true, [1, 4, 17]),
            ([192, 192, 4, 3], [0; 4], true, [1, 4, 28]),
            ([5, 3, 3, 3], [1, 2, 3, 1], false, [2, 7, 3]),
            ([7, 2, 1, 1], [0; 4], true, [1, 1, 1]),
            ([4, 6, 2, 5], [0; 4], false, [3, 9, 31]),
        ];
        for ([co, ci, kh, kw], pad, relu, [n, h, w]) in cases {
            let mut r = crate::rng::Rng::new((co * 131 + ci * 7 + w) as u64);
            let weight: Vec<f32> = (0..co * ci * kh * kw).map(|_| r.normal() * 0.3).collect();
            let bias: Vec<f32> = (0..co).map(|_| r.normal() * 0.1).collect();
            let x: Vec<f32> = (0..n * ci * h * w).map(|_| r.normal()).collect();
            let op = DirectConv::new(&weight, &bias, [co, ci, kh, kw], pad, relu);
            let got = op.run(&x, n, h, w);
            let want = reference(&x, &weight, &bias, [co, ci, kh, kw], pad, relu, n, h, w);
            let (ho, wo) = op.output_size(h, w).expect("fits");
            let pooled = op.pooled().run(&x, n, h, w);
            let planes: Vec<&[f32]> = got.chunks_exact(ho * wo).collect();
            let mut want_pooled = vec![0f32; planes.len() * (ho / 2) * (wo / 2)];
            crate::read::plan::maxpool_2x2(&got, &mut want_pooled, planes.len(), ho, wo);
            assert_eq!(pooled, want_pooled, "pooled {co} {ci} {kh}x{kw} {h}x{w}");
            assert_eq!(got.len(), want.len(), "{co} {ci} {kh}x{kw} {h}x{w}");
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4 * scale,
                    "{co} {ci} {kh}x{kw} {h}x{w} at {i}: {g} vs {e}"
                );
            }
        }
    }

    /// Winograd's F(4, 3) and the tap-by-tap path, each against the definition, on shapes where
    /// [`DirectConv::run_into`] takes the former: the reader's second, third and fourth
    /// convolutions, odd widths and heights, padding, batches of 2 and 3 (images side by side),
    /// with and without the pool (pooled: bit
    /// for bit the unpooled output through the plans' max-pool), AVX2 and portable kernels.
    #[test]
    fn winograd_and_direct_match_the_definition() {
        // ([co, ci, kh, kw], pad, relu, [n, h, w])
        type Case = ([usize; 4], [usize; 4], bool, [usize; 3]);
        let cases: [Case; 8] = [
            ([96, 48, 3, 3], [0; 4], true, [1, 15, 50]),
            ([9, 33, 3, 3], [2, 1, 1, 2], true, [3, 11, 29]),
            ([96, 48, 3, 3], [0; 4], false, [2, 16, 37]),
            ([192, 192, 4, 3], [0; 4], true, [3, 4, 22]),
            ([192, 96, 3, 3], [0; 4], true, [2, 6, 24]),
            ([13, 40, 3, 3], [0; 4], false, [1, 9, 33]),
            ([7, 11, 4, 3], [1, 2, 0, 1], true, [2, 8, 38]),
            ([5, 32, 1, 3], [0, 0, 0, 3], false, [1, 2, 41]),
        ];
        for ([co, ci, kh, kw], pad, relu, [n, h, w]) in cases {
            let name = format!("{co} {ci} {kh}x{kw} {h}x{w} pad {pad:?}");
            let mut r = crate::rng::Rng::new((co * 131 + ci * 7 + w) as u64);
            let weight: Vec<f32> = (0..co * ci * kh * kw).map(|_| r.normal() * 0.3).collect();
            let bias: Vec<f32> = (0..co).map(|_| r.normal() * 0.1).collect();
            let x: Vec<f32> = (0..n * ci * h * w).map(|_| r.normal()).collect();
            let want = reference(&x, &weight, &bias, [co, ci, kh, kw], pad, relu, n, h, w);
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let op = DirectConv::new(&weight, &bias, [co, ci, kh, kw], pad, relu);
            let (ho, wo) = op.output_size(h, w).expect("fits");
            assert!(op.winograd_pays(), "{name}: Winograd's path");
            assert_eq!(
                op.winograd_2d_pays(),
                kh == 3 && ci >= WINO_MIN_TAPS,
                "{name}: 2-D"
            );
            // Winograd along rows, Winograd in 2-D (3 × 3 kernels), tap by tap.
            let paths: &[&str] = if kh == 3 {
                &["rows", "2-D", "direct"]
            } else {
                &["rows", "direct"]
            };
            for portable in [false, true] {
                let run = |op: &DirectConv, path: &str, (oh, ow): (usize, usize)| {
                    let go = || {
                        let mut out = vec![0f32; n * co * oh * ow];
                        match path {
                            "rows" => op.run_winograd(&x, n, h, w, &mut out),
                            "2-D" => op.run_winograd_2d(&x, n, h, w, &mut out),
                            _ => op.run_direct(&x, n, h, w, &mut out),
                        }
                        out
                    };
                    if portable {
                        crate::read::simd::portable_only(go)
                    } else {
                        go()
                    }
                };
                for &path in paths {
                    let got = run(&op, path, (ho, wo));
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - e).abs() <= 1e-4 * scale,
                            "{name} {path} portable {portable} at {i}: {g} vs {e}"
                        );
                    }
                    let pooled_op = op.clone().pooled();
                    let pooled = run(&pooled_op, path, (ho / 2, wo / 2));
                    let mut want_pooled = vec![0f32; n * co * (ho / 2) * (wo / 2)];
                    crate::read::plan::maxpool_2x2(&got, &mut want_pooled, n * co, ho, wo);
                    assert_eq!(pooled, want_pooled, "{name} pooled, {path}");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Any shape, padding, ReLU and pooling against the definition, with the AVX2 kernel
        /// and with the portable one.
        #[test]
        fn any_shape_matches_the_definition(
            co in 1usize..20, ci in 1usize..40, kh in 1usize..5, kw in 1usize..5,
            pad in proptest::array::uniform4(0usize..3), n in 1usize..3,
            dh in 0usize..8, w in 1usize..45, relu in proptest::bool::ANY,
            pool in proptest::bool::ANY, seed in 0u64..1000,
        ) {
            // Tall enough for the kernel once padded.
            let h = kh.saturating_sub(pad[0] + pad[2]).max(1) + dh;
            let mut r = crate::rng::Rng::new(seed);
            let weight: Vec<f32> = (0..co * ci * kh * kw).map(|_| r.normal() * 0.3).collect();
            let bias: Vec<f32> = (0..co).map(|_| r.normal() * 0.1).collect();
            let x: Vec<f32> = (0..n * ci * h * w).map(|_| r.normal()).collect();
            let op = DirectConv::new(&weight, &bias, [co, ci, kh, kw], pad, relu);
            if op.output_size(h, w).is_none() {
                return Ok(());
            }
            let want = reference(&x, &weight, &bias, [co, ci, kh, kw], pad, relu, n, h, w);
            let got = op.run(&x, n, h, w);
            let portable = crate::read::simd::portable_only(|| op.run(&x, n, h, w));
            proptest::prop_assert_eq!(got.len(), want.len());
            proptest::prop_assert_eq!(portable.len(), want.len());
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            for ((g, p), e) in got.iter().zip(&portable).zip(&want) {
                proptest::prop_assert!((g - e).abs() <= 1e-4 * scale, "{} vs {}", g, e);
                proptest::prop_assert!((p - e).abs() <= 1e-4 * scale, "portable {} vs {}", p, e);
            }
            if pool {
                let (ho, wo) = op.output_size(h, w).expect("fits");
                let mut pooled = vec![0f32; n * co * (ho / 2) * (wo / 2)];
                crate::read::plan::maxpool_2x2(&got, &mut pooled, n * co, ho, wo);
                proptest::prop_assert_eq!(&op.clone().pooled().run(&x, n, h, w), &pooled);
                let mut portable_pooled = vec![0f32; pooled.len()];
                crate::read::plan::maxpool_2x2(&portable, &mut portable_pooled, n * co, ho, wo);
                let run = || op.clone().pooled().run(&x, n, h, w);
                proptest::prop_assert_eq!(crate::read::simd::portable_only(run), portable_pooled);
            }
        }
    }
}
