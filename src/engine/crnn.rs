//! The reader's network and its training-side engine: a conv window embedder (the same weights
//! at every window, computed as one valid convolution over the strip) → bidirectional LSTM →
//! linear → log-softmax over [`NUM_CLASSES`] (blank = 0).
//!
//! Layers, for a strip `[3, 32, W]`:
//! `conv1 3×3 → ReLU → maxpool 2×2 → conv2 3×3 → ReLU → maxpool 2×2 → conv3 3×3 → ReLU →
//! conv4 (h×3, collapses the height) → ReLU` gives `[c4, 1, T]` with `T = (W − 26)/4 + 1`: one
//! embedding per window of 26 columns, stride 4 (see [`crate::read::window`]). Then the BiLSTM over
//! the `T` steps and the linear head. Parameters carry PyTorch names (`lstm.weight_ih_l0`, …) and
//! PyTorch gate order (i, f, g, o); [`crate::export`] maps them to ONNX.

use rayon::prelude::*;

use crate::alphabet::NUM_CLASSES;
use crate::engine::layers::{self, ConvShape, LstmCache};
use crate::rng::Rng;

/// Architecture hyper-parameters; saved beside the weights so a checkpoint rebuilds its model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Strip height in pixels (the conv stack is laid out for 32).
    pub height: usize,
    /// Output channels of conv1..conv4.
    pub channels: [usize; 4],
    /// LSTM hidden size per direction.
    pub hidden: usize,
    /// Whether the LSTM reads in both directions.
    pub bidirectional: bool,
    /// Zero columns added on each side of the strip before the conv stack, so that windows
    /// also centre on the strip's first and last digits and a short strip gets enough time
    /// steps for CTC (`T = num_steps(w + 2·pad)`). 0 in models trained before it existed.
    #[serde(default)]
    pub pad: usize,
    /// Horizontal stretch of the strips this model reads (preprocessing resizes a region to
    /// `round(w · height · stretch / h)` columns): more time steps per digit. 1 in models
    /// trained before it existed.
    #[serde(default = "unit_stretch")]
    pub stretch: f32,
    /// Residual blocks after the first and after the second pooling (none in models trained
    /// before they existed). Each block is two 3 × 3 convolutions of the stage's channels,
    /// zero-padded in height and valid in width, with a ReLU between; its output is its input
    /// with [`BLOCK_CROP`] columns dropped on each side plus `gate ·` the second convolution
    /// (ReZero: the gate starts at 0, so a new block starts as the identity; at export it is
    /// multiplied into that convolution's weights, so the ONNX graph holds Conv, Slice and Add
    /// only). Valid in width, a block widens the window by 8 (first stage) or 16 (second) pixels
    /// ([`ModelConfig::window`]); the stride stays 4.
    #[serde(default)]
    pub blocks: [usize; 2],
    /// Batch normalisation after each of the four convolutions, before its ReLU (off in models
    /// trained before it existed). Training normalises every channel by its statistics over the
    /// conv group's strips ([`CONV_GROUP`]: a ghost batch) and keeps running averages of them;
    /// inference uses the running averages, an affine map per channel, so the window property
    /// holds and [`Crnn::folded`] multiplies it into the convolution (the ONNX graph is the
    /// same as without it).
    #[serde(default)]
    pub norm: bool,
}

/// Columns a residual block drops on each side of its input (one per valid 3-wide convolution).
pub const BLOCK_CROP: usize = 2;

fn unit_stretch() -> f32 {
    1.0
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            height: crate::read::HEIGHT,
            channels: [32, 64, 128, 128],
            hidden: 128,
            bidirectional: true,
            pad: 0,
            stretch: 1.0,
            blocks: [0, 0],
            norm: false,
        }
    }
}

impl ModelConfig {
    /// How this model's strips are made and padded.
    pub fn geometry(&self) -> crate::read::Geometry {
        crate::read::Geometry {
            stretch: self.stretch,
            pad: self.pad,
            window: self.window(),
        }
    }
    /// Window width in pixels (the receptive field of the conv stack): [`WINDOW`] for the four
    /// convolutions, plus `2 · BLOCK_CROP · 2` per block of the first stage and `2 · BLOCK_CROP ·
    /// 4` per block of the second (each column dropped there spans 2 or 4 strip pixels).
    ///
    /// [`WINDOW`]: crate::read::window::WINDOW
    pub fn window(&self) -> usize {
        crate::read::window::WINDOW + 2 * self.extra_pad()
    }
    /// Half of what the residual blocks add to the window: the zero columns to add to
    /// [`ModelConfig::pad`] on each side so that a strip gives the same number of steps, each
    /// centred on the same column, as without the blocks.
    pub fn extra_pad(&self) -> usize {
        BLOCK_CROP * (2 * self.blocks[0] + 4 * self.blocks[1])
    }
    /// The 3 × 3 convolution of every residual block of stage `stage` (0: after the first
    /// pooling, `channels[0]` wide; 1: after the second, `channels[1]` wide).
    pub fn block_conv(&self, stage: usize) -> ConvShape {
        let c = self.channels[stage];
        ConvShape {
            ci: c,
            co: c,
            kh: 3,
            kw: 3,
        }
    }
    /// Kernel height of conv4, which collapses what is left of the height to 1.
    pub fn last_kernel_height(&self) -> usize {
        ((self.height - 2) / 2 - 2) / 2 - 2
    }
    /// Time steps the model gives a strip `w` pixels wide (windows of the padded strip).
    pub fn steps(&self, w: usize) -> usize {
        crate::read::window::steps_of(w + 2 * self.pad, self.window())
    }
    /// `[n, 3, height, w]` strips with [`ModelConfig::pad`] zero columns added on both sides:
    /// `[n, 3, height, w + 2·pad]` (borrowed as is when `pad` is 0).
    pub fn pad_input<'a>(&self, x: &'a [f32], w: usize) -> (std::borrow::Cow<'a, [f32]>, usize) {
        if self.pad == 0 {
            return (std::borrow::Cow::Borrowed(x), w);
        }
        let wp = w + 2 * self.pad;
        let mut out = vec![0f32; x.len() / w * wp];
        for (row, src) in out.chunks_exact_mut(wp).zip(x.chunks_exact(w)) {
            row[self.pad..self.pad + w].copy_from_slice(src);
        }
        (std::borrow::Cow::Owned(out), wp)
    }
    /// Number of LSTM directions.
    pub fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// The four convolutions' shapes.
    pub fn convs(&self) -> [ConvShape; 4] {
        let c = self.channels;
        [
            ConvShape {
                ci: 3,
                co: c[0],
                kh: 3,
                kw: 3,
            },
            ConvShape {
                ci: c[0],
                co: c[1],
                kh: 3,
                kw: 3,
            },
            ConvShape {
                ci: c[1],
                co: c[2],
                kh: 3,
                kw: 3,
            },
            ConvShape {
                ci: c[2],
                co: c[3],
                kh: self.last_kernel_height(),
                kw: 3,
            },
        ]
    }
    /// Parameter names and shapes, in storage order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for (i, s) in self.convs().iter().enumerate() {
            v.push((
                format!("conv{}.weight", i + 1),
                vec![s.co, s.ci, s.kh, s.kw],
            ));
            v.push((format!("conv{}.bias", i + 1), vec![s.co]));
        }
        let (h, f) = (self.hidden, self.channels[3]);
        for suffix in ["", "_reverse"].iter().take(self.dirs()) {
            v.push((format!("lstm.weight_ih_l0{suffix}"), vec![4 * h, f]));
            v.push((format!("lstm.weight_hh_l0{suffix}"), vec![4 * h, h]));
            v.push((format!("lstm.bias_ih_l0{suffix}"), vec![4 * h]));
        }
        v.push(("fc.weight".into(), vec![NUM_CLASSES, self.dirs() * h]));
        v.push(("fc.bias".into(), vec![NUM_CLASSES]));
        // Residual blocks last, so that the indices of the parameters above do not move.
        for (stage, &count) in self.blocks.iter().enumerate() {
            let s = self.block_conv(stage);
            for j in 0..count {
                for conv in ["conv_a", "conv_b"] {
                    v.push((
                        format!("{}.{conv}.weight", block_name(stage, j)),
                        vec![s.co, s.ci, s.kh, s.kw],
                    ));
                    v.push((format!("{}.{conv}.bias", block_name(stage, j)), vec![s.co]));
                }
                v.push((format!("{}.gate", block_name(stage, j)), vec![1]));
            }
        }
        if self.norm {
            for (i, &c) in self.channels.iter().enumerate() {
                for what in NORM_PARAMS {
                    v.push((format!("bn{}.{what}", i + 1), vec![c]));
                }
            }
        }
        v
    }
    /// Index in [`ModelConfig::param_specs`] of the normalisation of conv`layer + 1` (then its
    /// weight, bias, running mean, running variance: [`NORM_PARAMS`]).
    fn norm_param(&self, layer: usize) -> usize {
        self.block_param(1, self.blocks[1]) + NORM_PARAMS.len() * layer
    }
    /// Index in [`ModelConfig::param_specs`] of the first parameter of block `j` of `stage`
    /// (then conv_a weight, conv_a bias, conv_b weight, conv_b bias, gate).
    fn block_param(&self, stage: usize, j: usize) -> usize {
        LSTM0
            + 3 * self.dirs()
            + 2
            + BLOCK_PARAMS * (j + if stage == 1 { self.blocks[0] } else { 0 })
    }
}

/// The model: its config and all parameters in one flat buffer (views by name or index).
#[derive(Debug, Clone, PartialEq)]
pub struct Crnn {
    /// Architecture.
    pub config: ModelConfig,
    /// All parameters, concatenated in [`ModelConfig::param_specs`] order.
    pub params: Vec<f32>,
    offsets: Vec<(usize, usize)>,
}

/// Name prefix of block `j` of `stage` (`res1.0`, …: stages counted from 1).
pub fn block_name(stage: usize, j: usize) -> String {
    format!("res{}.{j}", stage + 1)
}

// Indices into `param_specs`.
const BLOCK_PARAMS: usize = 5;
/// The parameters of one batch normalisation, in storage order (PyTorch's names): the scale,
/// the shift, and the running mean and variance (updated by [`Crnn::update_running`], never by
/// the gradient, which is zero for them).
pub const NORM_PARAMS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];
/// Momentum of the running statistics (PyTorch's default).
pub const NORM_MOMENTUM: f32 = 0.1;
const CONV_W: [usize; 4] = [0, 2, 4, 6];
const CONV_B: [usize; 4] = [1, 3, 5, 7];
const LSTM0: usize = 8;

/// Samples whose conv stacks run as one GEMM per layer: bigger groups make bigger matrices,
/// smaller ones keep the im2col buffers in cache. Measured on 2 cores, batch 32 × 3×32×128,
/// 1.1 M-parameter model, 3 interleaved rounds: groups of 2/4/8/16 gave 154/161/144/125 img/s.
pub const CONV_GROUP: usize = 4;

/// Everything the forward pass keeps for the backward pass of a batch's conv stack (all
/// activations channel-major, `[c, m, h, w]`).
#[derive(Debug, Clone)]
struct ConvCache {
    /// Post-ReLU outputs of conv1..conv4 (`acts[3]` is the `[c4, m, t]` window embedding).
    acts: [Vec<f32>; 4],
    /// im2col matrices of conv1..conv4.
    cols: [Vec<f32>; 4],
    /// Argmax indices of the two poolings.
    pool_idx: [Vec<u32>; 2],
    /// Input `(h, w)` of conv1..conv4.
    dims: [(usize, usize); 4],
    /// The residual blocks of each stage, in order.
    blocks: [Vec<BlockCache>; 2],
    /// The batch normalisations of conv1..conv4 (training with [`ModelConfig::norm`] only).
    norms: [Option<layers::NormCache>; 4],
}

/// What a residual block keeps for its backward pass (channel-major).
#[derive(Debug, Clone)]
struct BlockCache {
    /// Input `(h, w)`.
    dims: (usize, usize),
    /// im2col matrices of its two convolutions (of their row-padded inputs).
    cols: [Vec<f32>; 2],
    /// Post-ReLU output of the first convolution `[c, m, h, w − 2]`.
    a: Vec<f32>,
    /// Output of the second convolution before the gate `[c, m, h, w − 4]`.
    b: Vec<f32>,
}

/// One layer's statistics over a batch, kept as sums so that conv groups and batch chunks add up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStats {
    /// Values per channel seen.
    pub count: f64,
    /// Their sum per channel.
    pub sum: Vec<f64>,
    /// The sum of their squares per channel.
    pub sum_sq: Vec<f64>,
}

impl LayerStats {
    /// Add `n` values per channel of mean `mean` and (biased) variance `var`.
    pub fn add(&mut self, mean: &[f32], var: &[f32], n: usize) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; mean.len()];
            self.sum_sq = vec![0.0; mean.len()];
        }
        let n64 = n as f64;
        self.count += n64;
        for c in 0..mean.len() {
            let (m, v) = (mean[c] as f64, var[c] as f64);
            self.sum[c] += m * n64;
            self.sum_sq[c] += (v + m * m) * n64;
        }
    }

    /// Add another batch's sums.
    pub fn merge(&mut self, other: &LayerStats) {
        if self.sum.is_empty() {
            *self = other.clone();
            return;
        }
        self.count += other.count;
        add_into(&mut self.sum, &other.sum);
        add_into(&mut self.sum_sq, &other.sum_sq);
    }

    /// The mean and the unbiased variance per channel.
    pub fn mean_var(&self) -> (Vec<f32>, Vec<f32>) {
        let n = self.count.max(1.0);
        let bessel = n / (n - 1.0).max(1.0);
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| {
                let m = s / n;
                (m as f32, ((q / n - m * m).max(0.0) * bessel) as f32)
            })
            .unzip()
    }
}

/// The statistics of a training batch at the four normalisations ([`ModelConfig::norm`]), for
/// [`Crnn::update_running`]; empty for a model without them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NormStats {
    /// conv1..conv4.
    pub layers: [LayerStats; 4],
}

impl NormStats {
    /// Add another batch's statistics.
    pub fn merge(&mut self, other: &NormStats) {
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.merge(b);
        }
    }
}

/// The forward pass of a batch, with what its backward pass needs.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Batch size.
    pub n: usize,
    /// Strip width after [`ModelConfig::pad`].
    pub width: usize,
    /// Time steps.
    pub t: usize,
    /// Window embeddings `[t, n, c4]`.
    pub seq: Vec<f32>,
    /// LSTM outputs `[t, n, dirs·hidden]`.
    pub lstm_out: Vec<f32>,
    /// Log-probabilities `[t, n, NUM_CLASSES]`.
    pub log_probs: Vec<f32>,
    /// Conv caches of consecutive groups of at most [`CONV_GROUP`] samples.
    convs: Vec<ConvCache>,
    lstm: Vec<LstmCache>,
    /// Dropout masks (0 or 1/(1−p)) on the window embeddings and on the LSTM outputs.
    masks: Option<(Vec<f32>, Vec<f32>)>,
}

impl Forward {
    /// The statistics the normalisations saw in this (training) pass, every conv group's.
    pub fn norm_stats(&self) -> NormStats {
        let mut stats = NormStats::default();
        for cache in &self.convs {
            for (st, norm) in stats.layers.iter_mut().zip(&cache.norms) {
                if let Some(nc) = norm {
                    st.add(&nc.mean, &nc.var, nc.xhat.len() / nc.mean.len());
                }
            }
        }
        stats
    }
}

impl Crnn {
    /// A freshly initialised model: He-uniform convolutions, PyTorch-style uniform LSTM and head,
    /// and the LSTM forget-gate bias set to +1 so that early training keeps memory.
    pub fn new(config: ModelConfig, seed: u64) -> Crnn {
        let specs = config.param_specs();
        let mut rng = Rng::new(seed);
        let mut params = Vec::new();
        let h = config.hidden;
        for (name, shape) in &specs {
            let len: usize = shape.iter().product();
            let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
            let conv = name.starts_with("conv") || name.starts_with("res");
            if name.starts_with("bn") {
                // Scale and variance 1, shift and mean 0: the identity on normalised values.
                let one = name.ends_with(".weight") || name.ends_with(".running_var");
                params.extend(std::iter::repeat_n(if one { 1.0 } else { 0.0 }, len));
            } else if conv && name.ends_with("weight") {
                let b = (6.0 / fan_in as f32).sqrt();
                params.extend((0..len).map(|_| rng.uniform(-b, b)));
            } else if conv || name == "fc.bias" {
                params.extend(std::iter::repeat_n(0.0, len));
            } else if name.starts_with("lstm.bias") {
                params.extend((0..len).map(|i| if (h..2 * h).contains(&i) { 1.0 } else { 0.0 }));
            } else {
                let b = 1.0 / (h as f32).sqrt();
                params.extend((0..len).map(|_| rng.uniform(-b, b)));
            }
        }
        Crnn::from_params(config, params).expect("sizes follow the specs")
    }

    /// A model from a config and a flat parameter buffer; `None` when the size does not match.
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Option<Crnn> {
        let (offsets, total) = layers::param_offsets(&config.param_specs());
        (total == params.len()).then_some(Crnn {
            config,
            params,
            offsets,
        })
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// Parameter `idx` (in spec order) as a slice.
    pub fn param(&self, idx: usize) -> &[f32] {
        let (o, l) = self.offsets[idx];
        &self.params[o..o + l]
    }

    /// Parameter by name.
    pub fn param_by_name(&self, name: &str) -> Option<&[f32]> {
        let specs = self.config.param_specs();
        specs
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| self.param(i))
    }

    /// This model grown to `channels` and `hidden` (each at least the current size) without
    /// changing what it computes (Net2Net-style): old units keep their weights and ignore the
    /// new ones (zero weights from new inputs), new units start as in [`Crnn::new`] with `seed`
    /// (forget-gate bias +1), and every weight *out of* a new unit is zero, so the output is
    /// the old model's until training moves them. `None` when a size would shrink, or the model
    /// has residual blocks or normalisation.
    pub fn widened(&self, channels: [usize; 4], hidden: usize, seed: u64) -> Option<Crnn> {
        let old = &self.config;
        if hidden < old.hidden
            || channels.iter().zip(&old.channels).any(|(n, o)| n < o)
            || old.blocks != [0, 0]
            || old.norm
        {
            return None;
        }
        let config = ModelConfig {
            channels,
            hidden,
            ..old.clone()
        };
        let mut new = Crnn::new(config.clone(), seed);
        let (h0, h1) = (old.hidden, hidden);
        let (f0, f1) = (old.channels[3], channels[3]);
        // Copy old block `src` (rows × cols, row-major) into the new block's top-left corner
        // and zero the rest of those rows' new columns.
        let place =
            |dst: &mut [f32], cols1: usize, src: &[f32], cols0: usize, row0: usize, row1: usize| {
                let d = &mut dst[row1 * cols1..(row1 + 1) * cols1];
                d[..cols0].copy_from_slice(&src[row0 * cols0..(row0 + 1) * cols0]);
                d[cols0..].fill(0.0);
            };
        for (idx, (name, shape)) in config.param_specs().iter().enumerate() {
            let src = self.param_by_name(name).expect("same parameter names");
            let range = new.param_range(idx);
            let dst = &mut new.params[range];
            if let Some(k) = name
                .strip_prefix("conv")
                .and_then(|r| r.strip_suffix(".weight"))
            {
                let k: usize = k.parse().expect("conv index");
                let s0 = old.convs()[k - 1];
                let area = shape[2] * shape[3];
                for o in 0..s0.co {
                    place(dst, shape[1] * area, src, s0.ci * area, o, o);
                }
            } else if name.starts_with("conv") || name == "fc.bias" {
                dst[..src.len()].copy_from_slice(src);
            } else if name.starts_with("lstm") {
                // [4·hidden, cols], gates i, f, g, o: cols = window features (weight_ih),
                // hidden units (weight_hh), 1 (bias).
                let (cols0, cols1) = if name.contains("weight_ih") {
                    (f0, f1)
                } else if name.contains("weight_hh") {
                    (h0, h1)
                } else {
                    (1, 1)
                };
                for g in 0..4 {
                    for r in 0..h0 {
                        place(dst, cols1, src, cols0, g * h0 + r, g * h1 + r);
                    }
                }
            } else if name == "fc.weight" {
                let dirs = old.dirs();
                for c in 0..NUM_CLASSES {
                    let row = &mut dst[c * dirs * h1..(c + 1) * dirs * h1];
                    row.fill(0.0);
                    for d in 0..dirs {
                        row[d * h1..d * h1 + h0]
                            .copy_from_slice(&src[c * dirs * h0 + d * h0..][..h0]);
                    }
                }
            }
        }
        Some(new)
    }

    /// This model with residual blocks added up to `blocks` per stage, computing what it computed:
    /// the new blocks start with their gate at 0 (so each passes on its input without its edge
    /// columns), their convolutions drawn as in [`Crnn::new`] with `seed`, and
    /// [`ModelConfig::pad`] grows by the added [`ModelConfig::extra_pad`] so that every strip
    /// gives the same steps, each centred where it was. Existing blocks keep their weights.
    /// `None` when a stage would lose blocks.
    pub fn deepened(&self, blocks: [usize; 2], seed: u64) -> Option<Crnn> {
        let old = &self.config;
        if blocks.iter().zip(&old.blocks).any(|(n, o)| n < o) {
            return None;
        }
        let mut config = ModelConfig {
            blocks,
            ..old.clone()
        };
        config.pad = old.pad + config.extra_pad() - old.extra_pad();
        let mut new = Crnn::new(config.clone(), seed);
        for (idx, (name, _)) in config.param_specs().iter().enumerate() {
            if let Some(src) = self.param_by_name(name) {
                let range = new.param_range(idx);
                new.params[range].copy_from_slice(src);
            }
        }
        Some(new)
    }

    /// The largest post-ReLU output of each channel of conv1..conv4 over one strip: a channel
    /// whose peak is 0 on every strip of a data set never fires on it (a dead ReLU).
    ///
    /// # Shapes
    /// `x`: `[3, height, w]` (before [`ModelConfig::pad`]) → four vectors of `channels[k]`.
    pub fn channel_peaks(&self, x: &[f32], w: usize) -> [Vec<f32>; 4] {
        let (x, w) = self.config.pad_input(x, w);
        let cache = self.conv_forward(&x, 1, w, false);
        std::array::from_fn(|k| {
            let c = self.config.channels[k];
            let per = cache.acts[k].len() / c;
            cache.acts[k]
                .chunks(per)
                .map(|a| a.iter().copied().fold(0.0, f32::max))
                .collect()
        })
    }

    /// This model with the conv channels `dead[k]` of conv`k+1` started again: their incoming
    /// weights and bias drawn as in [`Crnn::new`] with `seed`, every weight *out of* them (the
    /// next conv's input slice; for conv4, the LSTM's input columns) set to zero. A channel that
    /// never fired contributed nothing, so on the data it was found dead on the model computes
    /// what it did, as [`Crnn::widened`] does for new units, and training can use it again.
    /// Indices past a layer's width are ignored.
    ///
    /// # Panics
    /// When the model has residual blocks (a block reads conv1's or conv2's channels too) or
    /// normalisation (a channel's scale and shift decide whether it fires).
    pub fn revived(&self, dead: &[Vec<usize>; 4], seed: u64) -> Crnn {
        assert_eq!(
            self.config.blocks,
            [0, 0],
            "reviving channels of a model with residual blocks"
        );
        assert!(!self.config.norm, "reviving channels of a normalised model");
        let fresh = Crnn::new(self.config.clone(), seed);
        let mut out = self.clone();
        let s = self.config.convs();
        for (k, chans) in dead.iter().enumerate() {
            let area = s[k].ci * s[k].kh * s[k].kw;
            for &o in chans.iter().filter(|&&o| o < s[k].co) {
                let (w, b) = (self.param_range(CONV_W[k]), self.param_range(CONV_B[k]));
                out.params[w.start + o * area..][..area]
                    .copy_from_slice(&fresh.params[w.start + o * area..][..area]);
                out.params[b.start + o] = fresh.params[b.start + o];
                if k + 1 < 4 {
                    // Next conv's weight [co, ci, kh, kw]: zero input channel `o` of every row.
                    let n = s[k + 1];
                    let r = out.param_range(CONV_W[k + 1]);
                    for row in out.params[r].chunks_mut(n.ci * n.kh * n.kw) {
                        row[o * n.kh * n.kw..][..n.kh * n.kw].fill(0.0);
                    }
                } else {
                    // LSTM weight_ih [4·hidden, c4] of each direction: zero column `o`.
                    for d in 0..self.config.dirs() {
                        let r = out.param_range(LSTM0 + 3 * d);
                        for row in out.params[r].chunks_mut(s[3].co) {
                            row[o] = 0.0;
                        }
                    }
                }
            }
        }
        out
    }

    /// Range of parameter `idx` inside the flat buffer.
    pub fn param_range(&self, idx: usize) -> std::ops::Range<usize> {
        let (o, l) = self.offsets[idx];
        o..o + l
    }

    /// The conv stack on a batch of strips, every layer one GEMM over the whole batch; with
    /// [`ModelConfig::norm`], normalised by the batch's statistics when `train`, by the running
    /// ones otherwise.
    ///
    /// # Shapes
    /// `x`: `[m, 3, height, w]` → cache whose `acts[3]` is `[c4, m, num_steps(w)]` (one column
    /// per window).
    fn conv_forward(&self, x: &[f32], m: usize, w: usize, train: bool) -> ConvCache {
        let s = self.config.convs();
        let h0 = self.config.height;
        // [m, 3, h, w] → [3, m, h, w].
        let xc = layers::to_channel_major(x, m, 3, h0 * w);
        let mut dims = [(h0, w); 4];
        let (a1, c1, n1) = self.conv_layer(0, &xc, m, (h0, w), train);
        let (p1, i1) = layers::maxpool2(&a1, s[0].co * m, h0 - 2, w - 2);
        let (b1, x2, d2) = self.blocks_forward(0, p1, m, ((h0 - 2) / 2, (w - 2) / 2));
        dims[1] = d2;
        let (a2, c2, n2) = self.conv_layer(1, &x2, m, d2, train);
        let (p2, i2) = layers::maxpool2(&a2, s[1].co * m, d2.0 - 2, d2.1 - 2);
        let (b2, x3, d3) = self.blocks_forward(1, p2, m, ((d2.0 - 2) / 2, (d2.1 - 2) / 2));
        dims[2] = d3;
        let (a3, c3, n3) = self.conv_layer(2, &x3, m, d3, train);
        dims[3] = (d3.0 - 2, d3.1 - 2);
        let (a4, c4, n4) = self.conv_layer(3, &a3, m, dims[3], train);
        ConvCache {
            acts: [a1, a2, a3, a4],
            cols: [c1, c2, c3, c4],
            pool_idx: [i1, i2],
            dims,
            blocks: [b1, b2],
            norms: [n1, n2, n3, n4],
        }
    }

    /// conv`layer + 1`, its normalisation (with [`ModelConfig::norm`]) and its ReLU.
    ///
    /// # Shapes
    /// `x`: `[ci, m, h, w]` with `dims` = `(h, w)` → (post-ReLU `[co, m, ho, wo]`, im2col
    /// matrix, the normalisation's cache when training a normalised model).
    fn conv_layer(
        &self,
        layer: usize,
        x: &[f32],
        m: usize,
        dims: (usize, usize),
        train: bool,
    ) -> (Vec<f32>, Vec<f32>, Option<layers::NormCache>) {
        let s = self.config.convs()[layer];
        let (wt, b) = (self.param(CONV_W[layer]), self.param(CONV_B[layer]));
        if !self.config.norm {
            let (y, cols) = layers::conv_relu(x, s, m, dims.0, dims.1, wt, b);
            return (y, cols, None);
        }
        let (mut y, cols) = layers::conv(x, s, m, dims.0, dims.1, wt, b);
        let k = self.config.norm_param(layer);
        let (gamma, beta) = (self.param(k), self.param(k + 1));
        let cache = if train {
            Some(layers::batch_norm(&mut y, s.co, gamma, beta))
        } else {
            let (scale, shift) =
                layers::norm_affine(gamma, beta, self.param(k + 2), self.param(k + 3));
            let n = y.len() / s.co;
            for (c, yc) in y.chunks_exact_mut(n).enumerate() {
                yc.iter_mut().for_each(|v| *v = *v * scale[c] + shift[c]);
            }
            None
        };
        y.iter_mut().for_each(|v| *v = v.max(0.0));
        (y, cols, cache)
    }

    /// This model with its normalisations multiplied into the convolutions before them
    /// ([`ModelConfig::norm`] off): conv`k`'s weights scaled by `γ / sqrt(running var + ε)` per
    /// output channel, its bias `(b − running mean) · that + β`. It computes what this model
    /// computes at inference; a model without normalisation is returned as is.
    pub fn folded(&self) -> Crnn {
        if !self.config.norm {
            return self.clone();
        }
        let config = ModelConfig {
            norm: false,
            ..self.config.clone()
        };
        // Every parameter of the unnormalised model, under the same names.
        let params = config
            .param_specs()
            .iter()
            .flat_map(|(name, _)| self.param_by_name(name).expect("same names"))
            .copied()
            .collect();
        let mut out = Crnn::from_params(config, params).expect("sizes follow the specs");
        for layer in 0..4 {
            let k = self.config.norm_param(layer);
            let (scale, shift) = layers::norm_affine(
                self.param(k),
                self.param(k + 1),
                self.param(k + 2),
                self.param(k + 3),
            );
            let wr = out.param_range(CONV_W[layer]);
            let per = wr.len() / scale.len();
            for (row, s) in out.params[wr].chunks_exact_mut(per).zip(&scale) {
                row.iter_mut().for_each(|v| *v *= s);
            }
            let br = out.param_range(CONV_B[layer]);
            for ((b, s), t) in out.params[br].iter_mut().zip(&scale).zip(&shift) {
                *b = *b * s + t;
            }
        }
        out
    }

    /// Move the running statistics of the normalisations towards a batch's:
    /// `running ← (1 − momentum) · running + momentum · batch` (the variance unbiased, as
    /// PyTorch keeps it). Nothing happens without [`ModelConfig::norm`].
    pub fn update_running(&mut self, stats: &NormStats, momentum: f32) {
        if !self.config.norm {
            return;
        }
        for (layer, st) in stats.layers.iter().enumerate() {
            if st.count == 0.0 {
                continue;
            }
            let k = self.config.norm_param(layer);
            let (mean, var) = st.mean_var();
            for (idx, batch) in [(k + 2, mean), (k + 3, var)] {
                let r = self.param_range(idx);
                for (p, b) in self.params[r].iter_mut().zip(batch) {
                    *p = (1.0 - momentum) * *p + momentum * b;
                }
            }
        }
    }

    /// The residual blocks of `stage` on `x` `[c, m, h, w]` (`dims` = `(h, w)`): their caches,
    /// the output `[c, m, h, w − 2·BLOCK_CROP·blocks]` and its `(h, w)`.
    fn blocks_forward(
        &self,
        stage: usize,
        mut x: Vec<f32>,
        m: usize,
        mut dims: (usize, usize),
    ) -> (Vec<BlockCache>, Vec<f32>, (usize, usize)) {
        let s = self.config.block_conv(stage);
        let mut caches = Vec::with_capacity(self.config.blocks[stage]);
        for j in 0..self.config.blocks[stage] {
            let k = self.config.block_param(stage, j);
            let (h, w) = dims;
            let planes = s.ci * m;
            let xp = layers::pad_rows(&x, planes, h, w, 1);
            let (a, ca) = layers::conv_relu(&xp, s, m, h + 2, w, self.param(k), self.param(k + 1));
            let ap = layers::pad_rows(&a, planes, h, w - 2, 1);
            let (b, cb) = layers::conv(
                &ap,
                s,
                m,
                h + 2,
                w - 2,
                self.param(k + 2),
                self.param(k + 3),
            );
            let gate = self.param(k + 4)[0];
            let mut y = layers::crop_cols(&x, w, BLOCK_CROP);
            y.iter_mut().zip(&b).for_each(|(v, r)| *v += gate * r);
            caches.push(BlockCache {
                dims,
                cols: [ca, cb],
                a,
                b,
            });
            x = y;
            dims = (h, w - 2 * BLOCK_CROP);
        }
        (caches, x, dims)
    }

    /// Backward of [`Crnn::blocks_forward`]: from the gradient of the stage's output, the
    /// gradient of its input; parameter gradients accumulated into `grad`.
    fn blocks_backward(
        &self,
        stage: usize,
        caches: &[BlockCache],
        mut dy: Vec<f32>,
        m: usize,
        grad: &mut [f32],
    ) -> Vec<f32> {
        let s = self.config.block_conv(stage);
        for (j, cache) in caches.iter().enumerate().rev() {
            let k = self.config.block_param(stage, j);
            let (h, w) = cache.dims;
            let planes = s.ci * m;
            let gate = self.param(k + 4)[0];
            grad[self.param_range(k + 4).start] +=
                dy.iter().zip(&cache.b).map(|(d, b)| d * b).sum::<f32>();
            let db: Vec<f32> = dy.iter().map(|d| d * gate).collect();
            let (gw, gb) = split_two(grad, self.param_range(k + 2), self.param_range(k + 3));
            let dap = layers::conv_backward(
                &db,
                &cache.cols[1],
                s,
                m,
                h + 2,
                w - 2,
                self.param(k + 2),
                gw,
                gb,
                true,
            )
            .expect("dx requested");
            let mut da = layers::crop_rows(&dap, planes, h, w - 2, 1);
            let (gw, gb) = split_two(grad, self.param_range(k), self.param_range(k + 1));
            let dxp = layers::conv_relu_backward(
                &mut da,
                &cache.a,
                &cache.cols[0],
                s,
                m,
                h + 2,
                w,
                self.param(k),
                gw,
                gb,
                true,
            )
            .expect("dx requested");
            // The branch's input gradient, plus the skip's (dy into the kept columns).
            let mut dx = layers::crop_rows(&dxp, planes, h, w, 1);
            layers::uncrop_cols_into(&dy, w, BLOCK_CROP, &mut dx);
            dy = dx;
        }
        dy
    }

    /// Embed each window of one strip: the conv stack applied to the whole strip.
    ///
    /// # Shapes
    /// `x`: `[3, height, w]` with `w ≥ WINDOW` → `[c4, num_steps(w)]`.
    pub fn embed(&self, x: &[f32], w: usize) -> Vec<f32> {
        let [.., a4] = self.conv_forward(x, 1, w, false).acts;
        a4
    }

    /// Forward pass of a batch of strips of equal width, as at inference (normalisation by the
    /// running statistics).
    ///
    /// # Shapes
    /// `x`: `[n, 3, height, w]` with `w ≥ WINDOW` → [`Forward`] with `log_probs`
    /// `[t, n, NUM_CLASSES]`, `t = config.steps(w)`.
    pub fn forward(&self, x: &[f32], n: usize, w: usize) -> Forward {
        self.forward_mode(x, n, w, None, false)
    }

    /// [`Crnn::forward`] as in training: normalisation by the statistics of each conv group
    /// ([`ModelConfig::norm`]), and dropout of rate `p` on the window embeddings and on the
    /// LSTM outputs (inverted dropout: inference needs no change), masks drawn from `rng`.
    pub fn forward_dropout(
        &self,
        x: &[f32],
        n: usize,
        w: usize,
        dropout: Option<(f32, &mut Rng)>,
    ) -> Forward {
        self.forward_mode(x, n, w, dropout, true)
    }

    fn forward_mode(
        &self,
        x: &[f32],
        n: usize,
        w: usize,
        dropout: Option<(f32, &mut Rng)>,
        train: bool,
    ) -> Forward {
        let cfg = &self.config;
        assert_eq!(
            x.len(),
            n * 3 * cfg.height * w,
            "input must be [n, 3, height, w]"
        );
        let (x, w) = cfg.pad_input(x, w);
        let per = 3 * cfg.height * w;
        let t = crate::read::window::steps_of(w, cfg.window());
        let f = cfg.channels[3];
        let convs: Vec<ConvCache> = (0..n)
            .step_by(CONV_GROUP)
            .map(|g0| {
                let m = CONV_GROUP.min(n - g0);
                self.conv_forward(&x[g0 * per..][..m * per], m, w, train)
            })
            .collect();
        // [c4, m, t] per group → [t, n, c4].
        let mut seq = vec![0f32; t * n * f];
        for (gi, cache) in convs.iter().enumerate() {
            let (g0, feat) = (gi * CONV_GROUP, &cache.acts[3]);
            let m = CONV_GROUP.min(n - g0);
            for c in 0..f {
                for b in 0..m {
                    for tt in 0..t {
                        seq[(tt * n + g0 + b) * f + c] = feat[(c * m + b) * t + tt];
                    }
                }
            }
        }
        let hid = cfg.hidden;
        let dirs = cfg.dirs();
        let masks = dropout.filter(|(p, _)| *p > 0.0).map(|(p, rng)| {
            let keep = 1.0 / (1.0 - p);
            let mut draw = |len: usize| -> Vec<f32> {
                (0..len)
                    .map(|_| if rng.chance(p) { 0.0 } else { keep })
                    .collect()
            };
            (draw(seq.len()), draw(t * n * dirs * hid))
        });
        if let Some((m, _)) = &masks {
            seq.iter_mut().zip(m).for_each(|(v, k)| *v *= k);
        }
        let lstm: Vec<LstmCache> = (0..dirs)
            .map(|d| {
                let base = LSTM0 + 3 * d;
                layers::lstm_forward(
                    &seq,
                    t,
                    n,
                    f,
                    hid,
                    self.param(base),
                    self.param(base + 1),
                    self.param(base + 2),
                    d == 1,
                )
            })
            .collect();
        let dh = dirs * hid;
        let mut lstm_out = vec![0f32; t * n * dh];
        for (d, cache) in lstm.iter().enumerate() {
            for row in 0..t * n {
                lstm_out[row * dh + d * hid..][..hid].copy_from_slice(&cache.h[row * hid..][..hid]);
            }
        }
        if let Some((_, m)) = &masks {
            lstm_out.iter_mut().zip(m).for_each(|(v, k)| *v *= k);
        }
        let fc_w = LSTM0 + 3 * dirs;
        let mut log_probs = vec![0f32; t * n * NUM_CLASSES];
        for row in log_probs.chunks_exact_mut(NUM_CLASSES) {
            row.copy_from_slice(self.param(fc_w + 1));
        }
        layers::gemm(
            t * n,
            dh,
            NUM_CLASSES,
            &lstm_out,
            false,
            self.param(fc_w),
            true,
            &mut log_probs,
            1.0,
        );
        layers::log_softmax_rows(&mut log_probs, NUM_CLASSES);
        Forward {
            n,
            width: w,
            t,
            seq,
            lstm_out,
            log_probs,
            convs,
            lstm,
            masks,
        }
    }

    /// Backward pass: `dlogits` `[t, n, NUM_CLASSES]` is the loss gradient w.r.t. the pre-softmax
    /// logits. Returns the gradient of every parameter, flat, in storage order.
    pub fn backward(&self, fwd: &Forward, dlogits: &[f32]) -> Vec<f32> {
        let cfg = &self.config;
        let (t, n) = (fwd.t, fwd.n);
        let mut grad = vec![0f32; self.params.len()];
        let hid = cfg.hidden;
        let dirs = cfg.dirs();
        let dh = dirs * hid;
        let f = cfg.channels[3];
        let fc_w = LSTM0 + 3 * dirs;
        // Head.
        {
            let r = self.param_range(fc_w);
            layers::gemm(
                NUM_CLASSES,
                t * n,
                dh,
                dlogits,
                true,
                &fwd.lstm_out,
                false,
                &mut grad[r],
                1.0,
            );
            let rb = self.param_range(fc_w + 1);
            for row in dlogits.chunks_exact(NUM_CLASSES) {
                for (g, v) in grad[rb.clone()].iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
        let mut dlstm_out = vec![0f32; t * n * dh];
        layers::gemm(
            t * n,
            NUM_CLASSES,
            dh,
            dlogits,
            false,
            self.param(fc_w),
            false,
            &mut dlstm_out,
            0.0,
        );
        if let Some((_, m)) = &fwd.masks {
            dlstm_out.iter_mut().zip(m).for_each(|(v, k)| *v *= k);
        }
        // LSTM directions.
        let mut dseq = vec![0f32; t * n * f];
        for d in 0..dirs {
            let mut dhd = vec![0f32; t * n * hid];
            for row in 0..t * n {
                dhd[row * hid..][..hid].copy_from_slice(&dlstm_out[row * dh + d * hid..][..hid]);
            }
            let base = LSTM0 + 3 * d;
            let (mut gih, mut ghh, mut gb) = (
                vec![0f32; self.param(base).len()],
                vec![0f32; self.param(base + 1).len()],
                vec![0f32; self.param(base + 2).len()],
            );
            let dx = layers::lstm_backward(
                &fwd.lstm[d],
                &dhd,
                &fwd.seq,
                t,
                n,
                f,
                hid,
                self.param(base),
                self.param(base + 1),
                d == 1,
                &mut gih,
                &mut ghh,
                &mut gb,
            );
            add_into(&mut grad[self.param_range(base)], &gih);
            add_into(&mut grad[self.param_range(base + 1)], &ghh);
            add_into(&mut grad[self.param_range(base + 2)], &gb);
            add_into(&mut dseq, &dx);
        }
        if let Some((m, _)) = &fwd.masks {
            dseq.iter_mut().zip(m).for_each(|(v, k)| *v *= k);
        }
        // Conv stack, group by group.
        let s = cfg.convs();
        for (gi, cache) in fwd.convs.iter().enumerate() {
            let g0 = gi * CONV_GROUP;
            let m = CONV_GROUP.min(n - g0);
            // [t, n, c4] → [c4, m, t] for this group.
            let mut dy = vec![0f32; f * m * t];
            for c in 0..f {
                for b in 0..m {
                    for tt in 0..t {
                        dy[(c * m + b) * t + tt] = dseq[(tt * n + g0 + b) * f + c];
                    }
                }
            }
            for layer in (0..4).rev() {
                let (hi, wi) = cache.dims[layer];
                let (wr, br) = (
                    self.param_range(CONV_W[layer]),
                    self.param_range(CONV_B[layer]),
                );
                // The ReLU, then the normalisation's backward (with `norm`), then the conv's.
                for (d, v) in dy.iter_mut().zip(&cache.acts[layer]) {
                    *d = if *v > 0.0 { *d } else { 0.0 };
                }
                if cfg.norm {
                    let nc = cache.norms[layer]
                        .as_ref()
                        .expect("the backward pass of a normalised model needs a training forward");
                    let k = cfg.norm_param(layer);
                    let (mut dg, mut db) = (vec![0f32; s[layer].co], vec![0f32; s[layer].co]);
                    layers::batch_norm_backward(&mut dy, nc, self.param(k), &mut dg, &mut db);
                    add_into(&mut grad[self.param_range(k)], &dg);
                    add_into(&mut grad[self.param_range(k + 1)], &db);
                }
                let (gw, gb) = split_two(&mut grad, wr, br);
                let dx = layers::conv_backward(
                    &dy,
                    &cache.cols[layer],
                    s[layer],
                    m,
                    hi,
                    wi,
                    self.param(CONV_W[layer]),
                    gw,
                    gb,
                    layer > 0,
                );
                let Some(dx) = dx else { break };
                dy = match layer {
                    1 | 2 => {
                        let stage = layer - 1;
                        let dp =
                            self.blocks_backward(stage, &cache.blocks[stage], dx, m, &mut grad);
                        layers::maxpool2_backward(
                            &dp,
                            &cache.pool_idx[stage],
                            cache.acts[stage].len(),
                        )
                    }
                    _ => dx,
                };
            }
        }
        grad
    }
}

fn add_into<T: Copy + std::ops::AddAssign>(dst: &mut [T], src: &[T]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

/// Two disjoint mutable ranges of one buffer (`a` before `b`).
fn split_two(
    buf: &mut [f32],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> (&mut [f32], &mut [f32]) {
    assert!(a.end <= b.start);
    let (lo, hi) = buf.split_at_mut(b.start);
    (&mut lo[a], &mut hi[..b.end - b.start])
}

/// CTC loss of a batch (PyTorch's `mean` reduction: each sample's loss divided by its label
/// length, averaged over the samples that have an alignment) and the gradient of that loss
/// w.r.t. every parameter. The batch is split into [`BATCH_PARTS`] chunks, run in parallel; each
/// chunk runs forward and backward on its own and the gradients are summed in chunk order.
///
/// # Shapes
/// `x`: `[n, 3, height, w]`; `targets`: `n` digit sequences. Returns
/// `(mean loss, gradient [num_params], number of samples used)`.
pub fn loss_and_grad(
    model: &Crnn,
    x: &[f32],
    n: usize,
    w: usize,
    targets: &[Vec<u8>],
) -> (f32, Vec<f32>, usize) {
    loss_and_grad_dropout(model, x, n, w, targets, 0.0, 0)
}

/// How many chunks a batch's gradient is computed in ([`loss_and_grad`]), each on its own rayon
/// thread. Fixed rather than one per thread, so that a run's numbers (the chunks' summation order
/// and dropout masks) do not depend on the machine's thread count: with one chunk per thread a
/// 1-thread and a 2-thread run of the same command differed from the first epoch (loss 4.9677 vs
/// 4.9778). 2 is what a 2-thread run used before, so every 2-thread run since is reproduced.
pub const BATCH_PARTS: usize = 2;

/// [`loss_and_grad`] with dropout of rate `p` (masks seeded by `seed` and the chunk).
pub fn loss_and_grad_dropout(
    model: &Crnn,
    x: &[f32],
    n: usize,
    w: usize,
    targets: &[Vec<u8>],
    p: f32,
    seed: u64,
) -> (f32, Vec<f32>, usize) {
    let (loss, grad, used, _) = loss_grad_stats(model, x, n, w, targets, p, seed);
    (loss, grad, used)
}

/// [`loss_and_grad_dropout`] and the batch's statistics at the normalisations
/// ([`ModelConfig::norm`]; empty without), for [`Crnn::update_running`] after the step.
pub fn loss_grad_stats(
    model: &Crnn,
    x: &[f32],
    n: usize,
    w: usize,
    targets: &[Vec<u8>],
    p: f32,
    seed: u64,
) -> (f32, Vec<f32>, usize, NormStats) {
    let targets: Vec<Target> = targets.iter().map(|d| Target::Digits(d)).collect();
    loss_grad_targets(model, x, n, w, &targets, p, seed)
}

/// What one strip of a batch is trained towards.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Its digits, by CTC.
    Digits(&'a [u8]),
    /// A teacher's log-probabilities of this very strip, `[t, NUM_CLASSES]` (the same steps as
    /// the model's): `Σ_t KL(q_t ‖ p_t)` divided, as CTC's loss by the label's length, by the
    /// digits of the teacher's greedy reading (at least 1)
    /// ([`crate::engine::ctc_loss::distillation_loss_grad`]).
    Soft(&'a [f32]),
}

/// [`loss_grad_stats`] with each strip's [`Target`]: digits (CTC) or a teacher's posteriors
/// (distillation), mixed freely in one batch; the mean is over the strips used (every soft one,
/// and the digits that have an alignment).
///
/// # Shapes
/// `x`: `[n, 3, height, w]`; `targets`: `n`, a soft one `[t, NUM_CLASSES]` with `t =
/// model.config.steps(w)`. Returns `(mean loss, gradient [num_params], samples used, statistics)`.
pub fn loss_grad_targets(
    model: &Crnn,
    x: &[f32],
    n: usize,
    w: usize,
    targets: &[Target],
    p: f32,
    seed: u64,
) -> (f32, Vec<f32>, usize, NormStats) {
    assert_eq!(targets.len(), n, "one target per strip");
    let per = 3 * model.config.height * w;
    let chunk = n.div_ceil(BATCH_PARTS).max(1);
    // First pass per chunk: forward + per-sample loss; the normalisation needs the count of
    // usable samples, so gradients are scaled after the reduction.
    let parts: Vec<(f32, Vec<f32>, usize, NormStats)> = (0..n)
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let m = chunk.min(n - start);
            let mut rng = Rng::derive(seed, start as u64);
            let fwd =
                model.forward_dropout(&x[start * per..][..m * per], m, w, Some((p, &mut rng)));
            let t = fwd.t;
            let mut dlogits = vec![0f32; t * m * NUM_CLASSES];
            let mut loss = 0f32;
            let mut used = 0;
            for b in 0..m {
                let lp = sample_log_probs(&fwd.log_probs, m, b);
                let scaled = match targets[start + b] {
                    Target::Digits(digits) => {
                        let labels: Vec<usize> = digits
                            .iter()
                            .map(|&d| crate::alphabet::class_of_digit(d))
                            .collect();
                        crate::engine::ctc_loss::ctc_loss_grad(&lp, t, &labels)
                            .map(|lg| (lg, labels.len()))
                    }
                    Target::Soft(q) => {
                        assert_eq!(q.len(), t * NUM_CLASSES, "a soft target must be [t, 11]");
                        let lg = crate::engine::ctc_loss::distillation_loss_grad(&lp, q, t);
                        Some((lg, crate::engine::ctc_loss::greedy_length(q)))
                    }
                };
                if let Some(((l, g), len)) = scaled {
                    let scale = 1.0 / len.max(1) as f32;
                    loss += l * scale;
                    used += 1;
                    for tt in 0..t {
                        for k in 0..NUM_CLASSES {
                            dlogits[(tt * m + b) * NUM_CLASSES + k] =
                                g[tt * NUM_CLASSES + k] * scale;
                        }
                    }
                }
            }
            let grad = model.backward(&fwd, &dlogits);
            (loss, grad, used, fwd.norm_stats())
        })
        .collect();
    let mut total = 0f32;
    let mut used = 0;
    let mut grad = vec![0f32; model.params.len()];
    let mut stats = NormStats::default();
    for (l, g, u, st) in parts {
        total += l;
        used += u;
        add_into(&mut grad, &g);
        stats.merge(&st);
    }
    if used == 0 {
        return (0.0, grad, 0, stats);
    }
    let inv = 1.0 / used as f32;
    grad.iter_mut().for_each(|g| *g *= inv);
    (total * inv, grad, used, stats)
}

/// Strip `b`'s log-probabilities out of a batch's.
///
/// # Shapes
/// `log_probs`: `[t, n, NUM_CLASSES]` → `[t, NUM_CLASSES]`.
pub fn sample_log_probs(log_probs: &[f32], n: usize, b: usize) -> Vec<f32> {
    log_probs
        .chunks_exact(n * NUM_CLASSES)
        .flat_map(|step| &step[b * NUM_CLASSES..][..NUM_CLASSES])
        .copied()
        .collect()
}

/// Log-probabilities of a batch of equal-width strips, computed in parallel per sample.
///
/// # Shapes
/// `x`: `[n, 3, height, w]` → `[t, n, NUM_CLASSES]`.
pub fn log_probs(model: &Crnn, x: &[f32], n: usize, w: usize) -> Vec<f32> {
    model.forward(x, n, w).log_probs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::window::{cut_window_of, num_steps, steps_of, WINDOW};

    fn tiny() -> Crnn {
        let cfg = ModelConfig {
            height: 32,
            channels: [4, 5, 6, 7],
            hidden: 5,
            bidirectional: true,
            pad: 0,
            stretch: 1.0,
            blocks: [0, 0],
            norm: false,
        };
        Crnn::new(cfg, 3)
    }

    /// `tiny` with residual blocks, padded so that its steps are `tiny_padded(pad)`'s, and its
    /// gates set to `gate` (a fresh block's gate is 0: the identity).
    fn tiny_res(blocks: [usize; 2], pad: usize, gate: f32) -> Crnn {
        let mut m = tiny_padded(pad).deepened(blocks, 4).expect("grows");
        for (idx, (name, _)) in m.config.param_specs().iter().enumerate() {
            if name.ends_with(".gate") {
                let r = m.param_range(idx);
                m.params[r].fill(gate);
            }
        }
        m
    }

    /// `tiny_res` with batch normalisation; with `drawn`, its scales, shifts and running
    /// statistics are drawn away from the identity, so that inference's affine map does
    /// something (otherwise they start as [`Crnn::new`] starts them).
    fn tiny_norm(blocks: [usize; 2], pad: usize, drawn: bool) -> Crnn {
        let base = tiny_res(blocks, pad, 0.6);
        let mut m = Crnn::new(
            ModelConfig {
                norm: true,
                ..base.config.clone()
            },
            0,
        );
        let mut rng = Rng::new(21);
        for (idx, (name, _)) in m.config.param_specs().iter().enumerate() {
            let r = m.param_range(idx);
            match base.param_by_name(name) {
                Some(src) => m.params[r].copy_from_slice(src),
                None if !drawn => {}
                None if name.ends_with("running_var") || name.ends_with(".weight") => m.params[r]
                    .iter_mut()
                    .for_each(|v| *v = rng.uniform(0.5, 2.0)),
                None => m.params[r]
                    .iter_mut()
                    .for_each(|v| *v = rng.uniform(-0.5, 0.5)),
            }
        }
        m
    }

    fn tiny_padded(pad: usize) -> Crnn {
        let mut m = tiny();
        m.config.pad = pad;
        m
    }

    /// Largest element-wise |a − b|.
    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    fn strip(w: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..3 * 32 * w).map(|_| r.normal()).collect()
    }

    #[test]
    fn widening_keeps_the_function() {
        let m = tiny_padded(3);
        let x = strip(45, 8);
        let before = log_probs(&m, &x, 1, 45);
        // (channels, hidden): wider everywhere, only the LSTM, only one conv, unchanged.
        let cases = [
            ([6, 8, 9, 10], 9),
            ([4, 5, 6, 7], 8),
            ([4, 9, 6, 7], 5),
            ([4, 5, 6, 7], 5),
        ];
        for (channels, hidden) in cases {
            let w = m.widened(channels, hidden, 5).expect("grows");
            assert_eq!((w.config.channels, w.config.hidden), (channels, hidden));
            assert_eq!(w.config.pad, 3);
            let after = log_probs(&w, &x, 1, 45);
            let diff = max_abs_diff(&before, &after);
            assert!(diff < 1e-5, "{channels:?}/{hidden}: max |Δ log p| {diff}");
            // New LSTM units are live: the head's weights out of them get a gradient.
            if hidden > 5 {
                let (_, grad, _) = loss_and_grad(&w, &x, 1, 45, &[vec![3, 4]]);
                let fc = w.param_range(w.config.param_specs().len() - 2);
                let out_of_new: f32 = (0..NUM_CLASSES)
                    .flat_map(|c| (5..hidden).map(move |j| c * 2 * hidden + j))
                    .map(|i| grad[fc.start + i].abs())
                    .sum();
                assert!(
                    out_of_new > 0.0,
                    "{channels:?}/{hidden}: new units get no gradient"
                );
            }
        }
        assert!(
            m.widened([3, 5, 6, 7], 5, 5).is_none(),
            "shrinking is refused"
        );
        assert!(
            m.widened([4, 5, 6, 7], 4, 5).is_none(),
            "shrinking is refused"
        );
    }

    #[test]
    fn reviving_dead_channels_keeps_the_function_and_lets_them_learn() {
        // One channel of each conv layer killed (bias far below zero), found by its peaks,
        // started again: same log-probabilities, the channel fires, the weights out of it get
        // a gradient (the next conv's input slice, or the LSTM's input column for conv4).
        let x = strip(45, 8);
        for (k, ch) in [(0, 2), (1, 0), (2, 5), (3, 6)] {
            let mut m = tiny_padded(3);
            let b = m.param_range(CONV_B[k]);
            m.params[b.start + ch] = -1e3;
            let peaks = m.channel_peaks(&x, 45);
            assert_eq!(peaks[k][ch], 0.0, "conv{} ch {ch} is dead", k + 1);
            let dead: [Vec<usize>; 4] = std::array::from_fn(|l| {
                (0..peaks[l].len())
                    .filter(|&c| peaks[l][c] <= 0.0)
                    .collect()
            });
            assert!(dead[k].contains(&ch));
            let r = m.revived(&dead, 9);
            let diff = max_abs_diff(&log_probs(&m, &x, 1, 45), &log_probs(&r, &x, 1, 45));
            assert!(diff < 1e-5, "conv{}: max |Δ log p| {diff}", k + 1);
            assert!(
                r.channel_peaks(&x, 45)[k][ch] > 0.0,
                "conv{} ch {ch} fires",
                k + 1
            );
            let (_, grad, _) = loss_and_grad(&r, &x, 1, 45, &[vec![3, 4]]);
            let out_of: f32 = if k < 3 {
                let n = r.config.convs()[k + 1];
                let w = r.param_range(CONV_W[k + 1]);
                grad[w]
                    .chunks(n.ci * n.kh * n.kw)
                    .flat_map(|row| row[ch * n.kh * n.kw..][..n.kh * n.kw].to_vec())
                    .map(f32::abs)
                    .sum()
            } else {
                let w = r.param_range(LSTM0);
                grad[w]
                    .chunks(r.config.channels[3])
                    .map(|row| row[ch].abs())
                    .sum()
            };
            assert!(
                out_of > 0.0,
                "conv{}: weights out of the revived channel learn",
                k + 1
            );
        }
    }

    #[test]
    fn step_t_embedding_equals_cnn_on_window_t() {
        // The four convolutions alone, and with residual blocks in one or both stages (gates
        // non-zero, so the blocks compute something): the window widens, the property holds.
        let plain = Crnn::new(ModelConfig::default(), 11);
        let cases = [
            (plain, WINDOW),
            (tiny_res([1, 0], 0, 0.7), WINDOW + 8),
            (tiny_res([0, 2], 0, 0.7), WINDOW + 32),
            (tiny_res([2, 1], 0, -0.4), WINDOW + 32),
            (tiny_norm([0, 0], 0, true), WINDOW),
            (tiny_norm([1, 1], 0, true), WINDOW + 24),
        ];
        for (m, window) in cases {
            assert_eq!(m.config.window(), window, "{:?}", m.config.blocks);
            for w in [window, window + 6, window + 31, window + 74] {
                let x = strip(w, w as u64);
                let full = m.embed(&x, w);
                let t = steps_of(w, window);
                let f = m.config.channels[3];
                assert_eq!(full.len(), f * t);
                for step in 0..t {
                    let win = cut_window_of(&x, 3, 32, w, step, window);
                    let one = m.embed(&win, window);
                    assert_eq!(one.len(), f, "a window gives exactly one step");
                    for c in 0..f {
                        let (a, b) = (full[c * t + step], one[c]);
                        assert!(
                            (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                            "blocks {:?} w {w} step {step} ch {c}: {a} vs {b}",
                            m.config.blocks
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn deepening_keeps_the_function_and_the_steps() {
        // New blocks start as the identity on the columns they keep, and the pad grows by what
        // they take: same log-probabilities, same steps, for any strip width.
        let m = tiny_padded(12);
        for blocks in [[1, 0], [0, 1], [2, 3]] {
            let d = m.deepened(blocks, 5).expect("grows");
            assert_eq!(d.config.pad, 12 + d.config.extra_pad());
            for w in [32, 45, 90] {
                let x = strip(w, 30 + w as u64);
                let (a, b) = (m.forward(&x, 1, w), d.forward(&x, 1, w));
                assert_eq!(a.t, b.t, "{blocks:?} w {w}");
                assert_eq!(b.t, d.config.steps(w));
                let diff = max_abs_diff(&a.log_probs, &b.log_probs);
                assert!(diff < 1e-5, "{blocks:?} w {w}: max |Δ log p| {diff}");
            }
            // Deepening further keeps the blocks there are.
            let more = d.deepened([blocks[0] + 1, blocks[1]], 6).expect("grows");
            assert_eq!(
                more.param_by_name("res2.0.conv_a.weight"),
                d.param_by_name("res2.0.conv_a.weight")
            );
            assert!(d.deepened([0, 0], 5).is_none(), "shrinking is refused");
        }
        // The gates learn first: a fresh block's gate gets a gradient, its second convolution
        // none (its output is multiplied by the gate, 0).
        let d = m.deepened([1, 1], 5).unwrap();
        let x = strip(45, 8);
        let (_, grad, _) = loss_and_grad(&d, &x, 1, 45, &[vec![3, 4]]);
        let by_name = |n: &str| {
            let i = d
                .config
                .param_specs()
                .iter()
                .position(|(s, _)| s == n)
                .unwrap();
            grad[d.param_range(i)].iter().map(|g| g.abs()).sum::<f32>()
        };
        assert!(by_name("res1.0.gate") > 0.0 && by_name("res2.0.gate") > 0.0);
        assert_eq!(by_name("res1.0.conv_b.weight"), 0.0);
        assert!(m.deepened([0, 0], 1).is_some());
        assert!(
            d.widened([8, 8, 8, 8], 8, 1).is_none(),
            "widening a residual model is refused"
        );
    }

    #[test]
    fn padding_adds_zero_columns_before_the_windows() {
        // A padded model equals the unpadded one on a strip with `pad` zero columns added on
        // each side, and gives `steps(w)` time steps; step t is window t of that padded strip.
        for (pad, w) in [(12, 32), (12, 45), (3, 26), (0, 40)] {
            let m = tiny_padded(pad);
            let x = strip(w, 7 + w as u64);
            let wp = w + 2 * pad;
            let mut xp = vec![0f32; 3 * 32 * wp];
            for (row, src) in xp.chunks_exact_mut(wp).zip(x.chunks_exact(w)) {
                row[pad..pad + w].copy_from_slice(src);
            }
            let got = m.forward(&x, 1, w);
            let want = tiny().forward(&xp, 1, wp);
            assert_eq!(got.t, m.config.steps(w));
            assert_eq!(got.t, num_steps(wp));
            assert_eq!(got.log_probs, want.log_probs, "pad {pad} w {w}");
        }
        assert!(
            tiny_padded(12).config.steps(30) >= 2 * 2 + 3,
            "two digits get room"
        );
        assert_eq!(tiny().config.steps(30), 2);
    }

    #[test]
    fn forget_gate_bias_starts_positive() {
        let m = Crnn::new(ModelConfig::default(), 1);
        let h = m.config.hidden;
        for name in ["lstm.bias_ih_l0", "lstm.bias_ih_l0_reverse"] {
            let b = m.param_by_name(name).unwrap();
            assert!(b[h..2 * h].iter().all(|&v| v > 0.0), "{name}");
            assert!(b[..h].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Without and with dropout (the same seed gives the same masks on every evaluation),
        // without and with padding.
        // Residual blocks (gates non-zero) in both stages, with and without dropout.
        // Batch normalisation (training: the batch's statistics), alone and with blocks.
        // Soft: the second strip is taught a teacher's posteriors instead of its digits.
        for (p_drop, pad, blocks, norm, soft) in [
            (0.0, 0, [0, 0], false, false),
            (0.3, 0, [0, 0], false, false),
            (0.0, 6, [0, 0], false, false),
            (0.0, 0, [1, 1], false, false),
            (0.3, 0, [2, 1], false, false),
            (0.0, 0, [0, 0], true, false),
            (0.0, 6, [0, 0], true, false),
            (0.3, 0, [0, 1], true, false),
            (0.0, 0, [0, 0], false, true),
            (0.3, 6, [0, 0], false, true),
            (0.0, 0, [0, 1], true, true),
        ] {
            let m = if norm {
                tiny_norm(blocks, pad, false)
            } else {
                tiny_res(blocks, pad, 0.6)
            };
            let (n, w) = (2, 42);
            let x: Vec<f32> = strip(w, 5).into_iter().chain(strip(w, 6)).collect();
            let mut qrng = Rng::new(31);
            let mut q: Vec<f32> = (0..m.config.steps(w) * NUM_CLASSES)
                .map(|_| qrng.uniform(-3.0, 3.0))
                .collect();
            crate::engine::layers::log_softmax_rows(&mut q, NUM_CLASSES);
            let targets = [
                Target::Digits(&[1, 2]),
                if soft {
                    Target::Soft(&q)
                } else {
                    Target::Digits(&[7])
                },
            ];
            let f = |model: &Crnn| {
                let (l, g, u, _) = loss_grad_targets(model, &x, n, w, &targets, p_drop, 17);
                (l, g, u)
            };
            let (_, grad, used) = f(&m);
            assert_eq!(used, 2);
            let mut rng = Rng::new(9);
            let specs = m.config.param_specs();
            for (idx, (name, _)) in specs.iter().enumerate() {
                let r = m.param_range(idx);
                for _ in 0..4 {
                    let p = r.start + rng.below(r.len());
                    // Padding puts whole regions at exactly 0 next to real values (ReLU and
                    // max-pool kinks), where a large step crosses a kink: smaller step.
                    // Normalisation couples every position of a channel (a step moves many of
                    // them, and a channel of small variance curves the loss sharply): the
                    // difference quotients of three steps, the analytic gradient must match one
                    // (it matched the smallest in every case looked at; a wrong term misses all).
                    let steps: &[f32] = match (m.config.pad > 0, norm) {
                        (_, true) => &[3e-3, 1e-3, 3e-4],
                        (true, false) => &[1e-3],
                        (false, false) => &[1e-2],
                    };
                    let quotient = |eps: f32| {
                        let mut plus = m.clone();
                        plus.params[p] += eps;
                        let mut minus = m.clone();
                        minus.params[p] -= eps;
                        (f(&plus).0 - f(&minus).0) / (2.0 * eps)
                    };
                    let nums: Vec<f32> = steps.iter().map(|&e| quotient(e)).collect();
                    let ana = grad[p];
                    let off =
                        |num: f32| (num - ana).abs() - (2e-3 + 5e-2 * num.abs().max(ana.abs()));
                    let num = nums
                        .iter()
                        .copied()
                        .min_by(|a, b| off(*a).total_cmp(&off(*b)))
                        .unwrap();
                    let tol = 2e-3 + 5e-2 * num.abs().max(ana.abs());
                    assert!(
                        (num - ana).abs() <= tol,
                        "dropout {p_drop} pad {pad} blocks {blocks:?} norm {norm} soft {soft}, {name}[{}]: numeric {num} analytic {ana}",
                        p - r.start
                    );
                }
            }
        }
    }

    #[test]
    fn batch_forward_equals_single_forward() {
        // 7 strips: more than one conv group (CONV_GROUP) and a partial last group.
        let m = tiny();
        let (n, w) = (2 * CONV_GROUP - 1, 40);
        let strips: Vec<Vec<f32>> = (0..n).map(|i| strip(w, 1 + i as u64)).collect();
        let all: Vec<f32> = strips.concat();
        let lb = log_probs(&m, &all, n, w);
        let t = num_steps(w);
        for (b, one) in strips.iter().enumerate() {
            let l1 = log_probs(&m, one, 1, w);
            for tt in 0..t {
                for k in 0..NUM_CLASSES {
                    let x = lb[(tt * n + b) * NUM_CLASSES + k];
                    assert!((x - l1[tt * NUM_CLASSES + k]).abs() < 1e-5, "sample {b}");
                }
            }
        }
    }

    #[test]
    fn batch_gradient_is_the_mean_of_single_gradients() {
        let m = tiny();
        let (n, w) = (2 * CONV_GROUP + 1, 40);
        let strips: Vec<Vec<f32>> = (0..n).map(|i| strip(w, 20 + i as u64)).collect();
        let targets: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 10) as u8, 3]).collect();
        let (_, gb, used) = loss_and_grad(&m, &strips.concat(), n, w, &targets);
        assert_eq!(used, n);
        let mut mean = vec![0f32; gb.len()];
        for (x, y) in strips.iter().zip(&targets) {
            let (_, g, _) = loss_and_grad(&m, x, 1, w, std::slice::from_ref(y));
            mean.iter_mut()
                .zip(&g)
                .for_each(|(a, b)| *a += b / n as f32);
        }
        let worst = max_abs_diff(&gb, &mean);
        assert!(worst < 1e-4, "max |batch - mean of singles| = {worst}");
    }

    #[test]
    fn folding_the_normalisation_keeps_the_function() {
        // Inference normalises by the running statistics, an affine map per channel; folded into
        // the convolutions it computes the same, with the parameters of a model without it.
        for (blocks, pad) in [([0, 0], 0), ([0, 0], 12), ([1, 2], 3)] {
            let m = tiny_norm(blocks, pad, true);
            let f = m.folded();
            assert!(!f.config.norm);
            assert_eq!(
                f.config.param_specs().len(),
                m.config.param_specs().len() - 16
            );
            for w in [32, 57] {
                let x: Vec<f32> = strip(w, 3).into_iter().chain(strip(w, 4)).collect();
                let diff = max_abs_diff(&log_probs(&m, &x, 2, w), &log_probs(&f, &x, 2, w));
                assert!(
                    diff < 1e-4,
                    "{blocks:?} pad {pad} w {w}: max |Δ log p| {diff}"
                );
            }
        }
        let plain = tiny();
        assert_eq!(plain.folded(), plain);
    }

    #[test]
    fn statistics_of_groups_add_up_to_the_batchs() {
        // (values of each group: n, mean, biased variance) → the union's mean and unbiased
        // variance, computed directly.
        let groups: [&[f32]; 4] = [
            &[1.0, 2.0, 3.0],
            &[4.0],
            &[-2.0, 0.5],
            &[10.0, 10.0, 10.0, 9.0],
        ];
        for take in 1..=groups.len() {
            let (mut a, mut b) = (LayerStats::default(), LayerStats::default());
            for (k, g) in groups[..take].iter().enumerate() {
                let n = g.len() as f32;
                let mean = g.iter().sum::<f32>() / n;
                let var = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
                let target = if k % 2 == 0 { &mut a } else { &mut b };
                target.add(&[mean], &[var], g.len());
            }
            a.merge(&b);
            let all: Vec<f32> = groups[..take].concat();
            let n = all.len() as f32;
            let mean = all.iter().sum::<f32>() / n;
            let var = all.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / (n - 1.0).max(1.0);
            let (m, v) = a.mean_var();
            assert!(
                (m[0] - mean).abs() < 1e-5,
                "{take} groups: mean {} vs {mean}",
                m[0]
            );
            assert!(
                (v[0] - var).abs() < 1e-4,
                "{take} groups: var {} vs {var}",
                v[0]
            );
        }
    }

    #[test]
    fn running_statistics_move_by_the_momentum_and_settle_on_the_batchs() {
        // One update moves each running value by `momentum` of the way to the batch's; updated
        // again and again on one batch, inference normalises it as training does (up to the
        // unbiased variance), and a model without normalisation is left alone.
        let mut m = tiny_norm([0, 0], 12, true);
        let (n, w) = (CONV_GROUP, 120);
        let x: Vec<f32> = (0..n).flat_map(|i| strip(w, 70 + i as u64)).collect();
        let stats = m.forward_dropout(&x, n, w, None).norm_stats();
        assert!(stats.layers.iter().all(|l| l.count > 0.0));
        let k = m.config.norm_param(2);
        let before = m.param(k + 2).to_vec();
        m.update_running(&stats, 0.25);
        let (mean, _) = stats.layers[2].mean_var();
        for c in 0..before.len() {
            let want = 0.75 * before[c] + 0.25 * mean[c];
            assert!((m.param(k + 2)[c] - want).abs() < 1e-5);
        }
        for _ in 0..200 {
            m.update_running(&stats, NORM_MOMENTUM);
        }
        for (layer, st) in stats.layers.iter().enumerate() {
            let k = m.config.norm_param(layer);
            let (mean, var) = st.mean_var();
            assert!(
                max_abs_diff(m.param(k + 2), &mean) < 1e-4,
                "conv{}",
                layer + 1
            );
            assert!(max_abs_diff(m.param(k + 3), &var) < 1e-3 * (1.0 + var[0]));
        }
        let train = m.forward_dropout(&x, n, w, None).log_probs;
        let infer = log_probs(&m, &x, n, w);
        let diff = max_abs_diff(&train, &infer);
        assert!(diff < 0.05, "inference vs training on the batch: {diff}");
        let mut plain = tiny();
        plain.update_running(&stats, 0.5);
        assert_eq!(plain, tiny());
    }

    #[test]
    fn the_gradient_does_not_depend_on_the_thread_count() {
        for m in [tiny(), tiny_norm([0, 0], 0, true)] {
            thread_count_check(&m);
        }
    }

    fn thread_count_check(m: &Crnn) {
        let (n, w) = (7, 40);
        let x: Vec<f32> = (0..n).flat_map(|i| strip(w, 50 + i as u64)).collect();
        let targets: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 10) as u8, 1]).collect();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| loss_and_grad_dropout(m, &x, n, w, &targets, 0.2, 9))
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            let (loss, grad, used) = run(threads);
            assert_eq!(loss.to_bits(), one.0.to_bits(), "{threads} threads");
            assert_eq!(used, one.2);
            assert!(grad
                .iter()
                .zip(&one.1)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
