//! The ONNX `LSTM` as one op in the plan, in place of tract's `Scan` over a per-step graph.
//!
//! tract 0.23 runs an ONNX LSTM as a `Scan` whose body (the recurrent matrix product, the bias
//! adds and its fused gate epilogue) is dispatched once per time step: 21 % of the reader's time
//! after the convolutions were rewritten (docs/experiments.md, "Speed"). [`FusedLstm`] computes
//! every step's input projection `X·Wᵀ + Wb + Rb` as one matrix product, then runs the recurrence
//! with the recurrent weights laid out for an AVX2 matrix-vector product and tract's own
//! vectorised `sigmoid` and `tanh` kernels. It is wired when the model is parsed
//! ([`register`]), for the plain case: default activations, no clip, no sequence lengths, no
//! initial states, no peepholes, only the output `Y`, constant weights. Any other LSTM keeps
//! tract's lowering. Sums run in another order than tract's, so values differ by rounding.

use tract_onnx::model::ParsingContext;
use tract_onnx::ops::rec::common::CommonRec;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::tract_linalg::routines::Func;
use tract_onnx::tract_hir::internal::{
    expand, Expansion, InferenceOp, InferenceResult, Solver, TensorProxy,
};

/// Gate outputs per block of the recurrent product: 8 vectors of 8 floats held in registers.
const BLOCK: usize = 64;

/// Make `onnx` parse `LSTM` nodes into [`FusedLstm`] where they are plain.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("LSTM", build);
}

/// The parser for `LSTM`: tract's own ([`CommonRec`] over its LSTM body), wrapped in
/// [`FastLstm`] when the node sets no attribute beyond `hidden_size` and `direction`.
fn build(ctx: &ParsingContext, pb: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let plain = pb
        .attribute
        .iter()
        .all(|a| a.name == "hidden_size" || a.name == "direction");
    if !plain {
        return tract_onnx::ops::rec::lstm::lstm(ctx, pb);
    }
    let body = tract_onnx::ops::rec::lstm::LSTM {
        f: Box::new(tract_onnx::tract_core::ops::nn::sigmoid()),
        g: Box::new(tract_onnx::tract_core::ops::math::tanh()),
        h: Box::new(tract_onnx::tract_core::ops::math::tanh()),
    };
    let common = CommonRec::from_node_and_options(pb, 3, 0, Box::new(body))?;
    Ok((expand(FastLstm { common }), vec![]))
}

/// tract's LSTM expansion, which wires [`FusedLstm`] instead when it can.
#[derive(Debug, Clone)]
struct FastLstm {
    common: CommonRec,
}

impl FastLstm {
    /// The [`FusedLstm`] for these inputs, when the node is plain and its weights constant.
    fn fused(&self, target: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<FusedLstm>> {
        let c = &self.common;
        let Some(bias) = c.optional_bias_input else {
            return Ok(None);
        };
        if c.optional_sequence_lens_input.is_some()
            || c.optional_initial_h_input.is_some()
            || c.optional_initial_c_input.is_some()
            || c.optional_p_input.is_some()
            || c.optional_y_output != Some(0)
            || c.optional_y_h_output.is_some()
            || c.optional_y_c_output.is_some()
            || c.batch_first
            || target.outlet_fact(inputs[0])?.datum_type != f32::datum_type()
            || target.outlet_fact(inputs[0])?.rank() != 3
        {
            return Ok(None);
        }
        let konst = |i: usize| -> TractResult<Option<Vec<f32>>> {
            let fact = target.outlet_fact(inputs[i])?;
            match &fact.konst {
                Some(t) if t.datum_type() == f32::datum_type() => {
                    Ok(Some(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
                }
                _ => Ok(None),
            }
        };
        let shape = |i: usize| -> TractResult<Option<Vec<usize>>> {
            let s = &target.outlet_fact(inputs[i])?.shape;
            Ok(s.as_concrete().map(|s| s.to_vec()))
        };
        let (Some(w), Some(r), Some(b)) = (konst(1)?, konst(2)?, konst(bias)?) else {
            return Ok(None);
        };
        let (Some(ws), Some(rs)) = (shape(1)?, shape(2)?) else {
            return Ok(None);
        };
        let [dirs, gates, input] = ws[..] else {
            return Ok(None);
        };
        let hidden = gates / 4;
        if gates != 4 * hidden || rs != [dirs, gates, hidden] || b.len() != dirs * 8 * hidden {
            return Ok(None);
        }
        let x_input = &target.outlet_fact(inputs[0])?.shape[2];
        if x_input.to_usize().ok() != Some(input) {
            return Ok(None);
        }
        Ok(Some(FusedLstm::new(&w, &r, &b, dirs, hidden, input)))
    }
}

impl Expansion for FastLstm {
    fn name(&self) -> StaticName {
        "LSTM".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.common.nboutputs()
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        match self.fused(target, inputs)? {
            Some(op) => target.wire_node(prefix, op, &inputs[..1]),
            None => self.common.wire(prefix, target, inputs),
        }
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.common.rules(s, inputs, outputs)
    }
}

/// A plain ONNX LSTM (gate order i, o, f, c; `f` = sigmoid, `g` = `h` = tanh; zero initial
/// states) over one or both directions.
///
/// # Shapes
/// `X` `[t, n, input]` → `Y` `[t, dirs, n, hidden]`.
#[derive(Debug, Clone)]
pub struct FusedLstm {
    dirs: usize,
    hidden: usize,
    input: usize,
    /// `[dirs, 4·hidden, input]`, as in ONNX.
    w: Vec<f32>,
    /// The recurrent weights transposed and cut into blocks of [`BLOCK`] gate outputs:
    /// `[dirs, blocks, hidden, BLOCK]`, zero past `4·hidden`.
    r: Vec<f32>,
    /// `Wb + Rb`: `[dirs, 4·hidden]`.
    bias: Vec<f32>,
}

impl FusedLstm {
    /// From ONNX-layout weights.
    ///
    /// # Shapes
    /// `w`: `[dirs, 4·hidden, input]`, `r`: `[dirs, 4·hidden, hidden]`, `b`: `[dirs, 8·hidden]`.
    pub fn new(w: &[f32], r: &[f32], b: &[f32], dirs: usize, hidden: usize, input: usize) -> Self {
        let gates = 4 * hidden;
        assert_eq!(w.len(), dirs * gates * input, "W [dirs, 4h, input]");
        assert_eq!(r.len(), dirs * gates * hidden, "R [dirs, 4h, h]");
        assert_eq!(b.len(), dirs * 2 * gates, "B [dirs, 8h]");
        let blocks = gates.div_ceil(BLOCK);
        let mut packed = vec![0f32; dirs * blocks * hidden * BLOCK];
        for d in 0..dirs {
            for g in 0..gates {
                let (blk, j) = (g / BLOCK, g % BLOCK);
                for k in 0..hidden {
                    packed[((d * blocks + blk) * hidden + k) * BLOCK + j] =
                        r[(d * gates + g) * hidden + k];
                }
            }
        }
        let bias = (0..dirs)
            .flat_map(|d| (0..gates).map(move |g| (d, g)))
            .map(|(d, g)| b[d * 2 * gates + g] + b[d * 2 * gates + gates + g])
            .collect();
        FusedLstm {
            dirs,
            hidden,
            input,
            w: w.to_vec(),
            r: packed,
            bias,
        }
    }

    /// The LSTM over a sequence.
    ///
    /// # Shapes
    /// `x`: `[t, n, input]` → `[t, dirs, n, hidden]`.
    pub fn run(&self, x: &[f32], t: usize, n: usize) -> TractResult<Vec<f32>> {
        let mut y = vec![0f32; t * self.dirs * n * self.hidden];
        self.run_into(x, t, n, &mut y)?;
        Ok(y)
    }

    /// [`FusedLstm::run`] into `y` `[t, dirs, n, hidden]`.
    pub fn run_into(&self, x: &[f32], t: usize, n: usize, y: &mut [f32]) -> TractResult<()> {
        let (h, gates) = (self.hidden, 4 * self.hidden);
        ensure!(
            x.len() == t * n * self.input,
            "X is not [{t}, {n}, {}]",
            self.input
        );
        ensure!(
            y.len() == t * self.dirs * n * h,
            "Y is not [{t}, {}, {n}, {h}]",
            self.dirs
        );
        if t == 0 || n == 0 {
            return Ok(());
        }
        let sigmoid = Func::Sigmoid.ew_f32()?;
        let tanh = Func::Tanh.ew_f32()?;
        let blocks = gates.div_ceil(BLOCK);
        let pitch = blocks * BLOCK;
        let mut xw = vec![0f32; t * n * gates];
        // Per sequence: its gate sums (`pitch` floats), then h, c and a scratch row.
        let mut pre = vec![0f32; n * pitch];
        let mut state = vec![0f32; 3 * n * h];
        for d in 0..self.dirs {
            let w = &self.w[d * gates * self.input..][..gates * self.input];
            let r = &self.r[d * blocks * h * BLOCK..][..blocks * h * BLOCK];
            let bias = &self.bias[d * gates..][..gates];
            for row in xw.chunks_exact_mut(gates) {
                row.copy_from_slice(bias);
            }
            // xw[s, b, g] += Σ_i x[s, b, i] · w[g, i], every step and sequence in one product.
            project(x, 0, self.input, w, self.input, t * n, gates, &mut xw);
            state.fill(0.0);
            let (hs, rest) = state.split_at_mut(n * h);
            let (cs, tmp) = rest.split_at_mut(n * h);
            for step in 0..t {
                let s = if d == 0 { step } else { t - 1 - step };
                for (b, p) in pre.chunks_exact_mut(pitch).enumerate() {
                    p[..gates].copy_from_slice(&xw[(s * n + b) * gates..][..gates]);
                }
                recurrent(r, hs, h, blocks, &mut pre);
                for b in 0..n {
                    let g = &mut pre[b * pitch..][..gates];
                    let (hb, cb, tb) = (
                        &mut hs[b * h..][..h],
                        &mut cs[b * h..][..h],
                        &mut tmp[b * h..][..h],
                    );
                    // Gate order i, o, f, c.
                    sigmoid.run(&mut g[..3 * h])?;
                    tanh.run(&mut g[3 * h..])?;
                    for j in 0..h {
                        cb[j] = g[2 * h + j] * cb[j] + g[j] * g[3 * h + j];
                    }
                    tb.copy_from_slice(cb);
                    tanh.run(tb)?;
                    for j in 0..h {
                        hb[j] = g[h + j] * tb[j];
                    }
                    y[((s * self.dirs + d) * n + b) * h..][..h].copy_from_slice(hb);
                }
            }
        }
        Ok(())
    }
}

/// `out[s, g] += Σ_i x[offset + s·pitch + i] · w[g, i]` for `s < t`, `g < gates`.
///
/// # Shapes
/// `x`: rows of `input` floats `pitch` apart from `offset`, `w`: `[gates, input]`, `out`:
/// `[t, gates]`.
#[allow(clippy::too_many_arguments)]
fn project(
    x: &[f32],
    offset: usize,
    pitch: usize,
    w: &[f32],
    input: usize,
    t: usize,
    gates: usize,
    out: &mut [f32],
) {
    assert!(offset + (t - 1) * pitch + input <= x.len());
    assert!(w.len() >= gates * input && out.len() >= t * gates);
    // SAFETY: the asserts above bound every element the strides reach.
    unsafe {
        matrixmultiply::sgemm(
            t,
            input,
            gates,
            1.0,
            x.as_ptr().add(offset),
            pitch as isize,
            1,
            w.as_ptr(),
            1,
            input as isize,
            1.0,
            out.as_mut_ptr(),
            gates as isize,
            1,
        );
    }
}

/// `pre[b, g] += Σ_k r[g, k] · h[b, k]` for every sequence `b`, with `r` packed as
/// [`FusedLstm`]'s blocks. Each sum runs over `k` in order from `pre`, whatever the batch, so a
/// sequence reads the same alone or batched.
///
/// # Shapes
/// `r`: `[blocks, hidden, BLOCK]`, `h`: `[n, hidden]`, `pre`: `[n, blocks · BLOCK]`.
fn recurrent(r: &[f32], h: &[f32], hidden: usize, blocks: usize, pre: &mut [f32]) {
    let pitch = blocks * BLOCK;
    let n = pre.len() / pitch;
    assert!(r.len() >= blocks * hidden * BLOCK && pre.len() == n * pitch && h.len() == n * hidden);
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2_fma() {
            let mut b = 0;
            while b < n {
                let (hb, pb) = (&h[b * hidden..], &mut pre[b * pitch..]);
                // SAFETY: the CPU has AVX2 and FMA (checked above); the assert above bounds
                // every read of `r` and `h` and every access to `pre` for these sequences.
                unsafe {
                    match n - b {
                        1 => recurrent_avx2::<1, 8>(r, hb, hidden, blocks, pb),
                        2 => recurrent_avx2::<2, 4>(r, hb, hidden, blocks, pb),
                        _ => recurrent_avx2::<3, 4>(r, hb, hidden, blocks, pb),
                    }
                }
                b += 3;
            }
            return;
        }
    }
    for (hb, pb) in h.chunks_exact(hidden).zip(pre.chunks_exact_mut(pitch)) {
        for (blk, out) in pb.chunks_exact_mut(BLOCK).enumerate() {
            let r = &r[blk * hidden * BLOCK..][..hidden * BLOCK];
            for (&hk, row) in hb.iter().zip(r.chunks_exact(BLOCK)) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += hk * v;
                }
            }
        }
    }
}

/// [`recurrent`] with AVX2 and FMA for `B` ≤ 3 sequences at once: `8·V` gate sums of each in
/// `V` registers (`B·V` ≤ 12), so that every row of `r` read serves all `B`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `h` must hold `B` rows of `hidden` floats and `pre` `B` rows
/// of `blocks · BLOCK`, and `r` the [`recurrent`] layout.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn recurrent_avx2<const B: usize, const V: usize>(
    r: &[f32],
    h: &[f32],
    hidden: usize,
    blocks: usize,
    pre: &mut [f32],
) {
    use std::arch::x86_64::*;
    let pitch = blocks * BLOCK;
    debug_assert!(BLOCK % (8 * V) == 0 && h.len() >= B * hidden && pre.len() >= B * pitch);
    let (h, pre) = (h.as_ptr(), pre.as_mut_ptr());
    for blk in 0..blocks {
        for part in 0..BLOCK / (8 * V) {
            let at = blk * BLOCK + part * 8 * V;
            let mut acc = [[_mm256_setzero_ps(); V]; B];
            for (b, a) in acc.iter_mut().enumerate() {
                for (v, a) in a.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(pre.add(b * pitch + at + 8 * v));
                }
            }
            let mut row = r.as_ptr().add(blk * hidden * BLOCK + part * 8 * V);
            for k in 0..hidden {
                let mut hk = [_mm256_setzero_ps(); B];
                for (b, hk) in hk.iter_mut().enumerate() {
                    *hk = _mm256_set1_ps(*h.add(b * hidden + k));
                }
                for v in 0..V {
                    let rv = _mm256_loadu_ps(row.add(8 * v));
                    for (a, &hb) in acc.iter_mut().zip(&hk) {
                        a[v] = _mm256_fmadd_ps(hb, rv, a[v]);
                    }
                }
                row = row.add(BLOCK);
            }
            for (b, a) in acc.iter().enumerate() {
                for (v, a) in a.iter().enumerate() {
                    _mm256_storeu_ps(pre.add(b * pitch + at + 8 * v), *a);
                }
            }
        }
    }
}

impl Op for FusedLstm {
    fn name(&self) -> StaticName {
        "FusedLstm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} direction(s), input {}, hidden {}",
            self.dirs, self.input, self.hidden
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FusedLstm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape = x.shape();
        if shape.len() != 3 || shape[2] != self.input {
            bail!("FusedLstm expects [t, n, {}], got {shape:?}", self.input);
        }
        let (t, n) = (shape[0], shape[1]);
        let mut y = Tensor::zero::<f32>(&[t, self.dirs, n, self.hidden])?;
        let view = x.try_as_plain_ram()?;
        self.run_into(
            view.as_slice::<f32>()?,
            t,
            n,
            y.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for FusedLstm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        if s.rank() != 3 {
            bail!("FusedLstm expects a rank-3 input");
        }
        Ok(tvec!(f32::fact([
            s[0].clone(),
            self.dirs.to_dim(),
            s[1].clone(),
            self.hidden.to_dim(),
        ])))
    }

    as_op!();
}

impl PartialEq for FusedLstm {
    fn eq(&self, other: &Self) -> bool {
        use super::plan::same_bits;
        (self.dirs, self.hidden, self.input) == (other.dirs, other.hidden, other.input)
            && same_bits(&self.w, &other.w)
            && same_bits(&self.r, &other.r)
            && same_bits(&self.bias, &other.bias)
    }
}

impl Eq for FusedLstm {}

impl std::hash::Hash for FusedLstm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.dirs, self.hidden, self.input).hash(state);
        for v in [&self.w, &self.r, &self.bias] {
            super::plan::hash_bits(v, state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ONNX LSTM by its definition, in f64.
    fn reference(
        x: &[f32],
        w: &[f32],
        r: &[f32],
        b: &[f32],
        [t, n, input, hidden, dirs]: [usize; 5],
    ) -> Vec<f32> {
        let g4 = 4 * hidden;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut y = vec![0f32; t * dirs * n * hidden];
        for d in 0..dirs {
            for bi in 0..n {
                let (mut hs, mut cs) = (vec![0f64; hidden], vec![0f64; hidden]);
                for step in 0..t {
                    let s = if d == 0 { step } else { t - 1 - step };
                    let pre: Vec<f64> = (0..g4)
                        .map(|g| {
                            let mut v = (b[d * 2 * g4 + g] + b[d * 2 * g4 + g4 + g]) as f64;
                            for i in 0..input {
                                v += (w[(d * g4 + g) * input + i] * x[(s * n + bi) * input + i])
                                    as f64;
                            }
                            for k in 0..hidden {
                                v += r[(d * g4 + g) * hidden + k] as f64 * hs[k];
                            }
                            v
                        })
                        .collect();
                    for j in 0..hidden {
                        let (i, o) = (sig(pre[j]), sig(pre[hidden + j]));
                        let (f, c) = (sig(pre[2 * hidden + j]), pre[3 * hidden + j].tanh());
                        cs[j] = f * cs[j] + i * c;
                        hs[j] = o * cs[j].tanh();
                        y[((s * dirs + d) * n + bi) * hidden + j] = hs[j] as f32;
                    }
                }
            }
        }
        y
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Any length, batch, input and hidden size, one or two directions.
        #[test]
        fn any_shape_matches_the_definition(
            t in 1usize..12, n in 1usize..8, input in 1usize..20, hidden in 1usize..40,
            dirs in 1usize..3,
        ) {
            check([t, n, input, hidden, dirs]);
        }
    }

    /// [`FusedLstm`] against [`reference`] on random weights and inputs of these sizes, with
    /// the AVX2 kernel and with the portable one.
    fn check([t, n, input, hidden, dirs]: [usize; 5]) {
        let mut rng = crate::rng::Rng::new((t * 100 + hidden * 7 + input) as u64);
        let g4 = 4 * hidden;
        let mut draw =
            |len: usize, s: f32| (0..len).map(|_| rng.normal() * s).collect::<Vec<f32>>();
        let w = draw(dirs * g4 * input, 0.4);
        let r = draw(dirs * g4 * hidden, 0.3);
        let b = draw(dirs * 2 * g4, 0.2);
        let x = draw(t * n * input, 1.0);
        let op = FusedLstm::new(&w, &r, &b, dirs, hidden, input);
        let want = reference(&x, &w, &r, &b, [t, n, input, hidden, dirs]);
        let portable = crate::read::simd::portable_only(|| op.run(&x, t, n).expect("run"));
        for got in [op.run(&x, t, n).expect("run"), portable] {
            assert_eq!(got.len(), want.len());
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                let case = [t, n, input, hidden, dirs];
                assert!((g - e).abs() < 2e-5, "{case:?} {i}: {g} vs {e}");
            }
        }
    }

    /// Against the definition: both directions, one and two, a batch of 2, a hidden size whose
    /// gates fill no whole block, and one whose gates fill several.
    #[test]
    fn matches_the_definition() {
        for case in [[5, 2, 7, 12, 2], [9, 1, 16, 40, 1], [1, 1, 3, 5, 2]] {
            check(case);
        }
    }

    /// The shipped reader parsed with [`register`] against tract's own lowering, on strips of
    /// several widths: the plan holds a [`FusedLstm`] and no `Scan`, and the log-probabilities
    /// agree to rounding.
    #[test]
    fn the_shipped_reader_reads_as_under_tract() {
        use tract_onnx::prelude::Framework;
        let bytes = crate::read::reader::EMBEDDED_MODEL;
        let plan = |fused: bool, w: usize| {
            let mut onnx = tract_onnx::onnx();
            if fused {
                register(&mut onnx);
            }
            let mut model = onnx
                .model_for_read(&mut std::io::Cursor::new(bytes))
                .expect("parse");
            model
                .set_input_fact(0, f32::fact([1, 3, crate::read::HEIGHT, w]).into())
                .expect("input");
            let m = model.into_optimized().expect("optimise");
            let names: Vec<String> = m
                .nodes()
                .iter()
                .map(|n| n.op().name().to_string())
                .collect();
            (m.into_runnable().expect("plan"), names)
        };
        for w in [32, 77, 160] {
            let mut rng = crate::rng::Rng::new(w as u64);
            let x: Vec<f32> = (0..3 * crate::read::HEIGHT * w)
                .map(|_| rng.normal())
                .collect();
            let input = Tensor::from_shape(&[1, 3, crate::read::HEIGHT, w], &x).expect("input");
            let run = |(p, names): (Arc<TypedRunnableModel>, Vec<String>)| {
                let out = p.run(tvec!(input.clone().into_tvalue())).expect("run");
                let v = out[0].to_plain_array_view::<f32>().expect("f32");
                (v.iter().cloned().collect::<Vec<f32>>(), names)
            };
            let (ours, names) = run(plan(true, w));
            let (theirs, old) = run(plan(false, w));
            assert!(names.iter().any(|n| n == "FusedLstm") && !names.iter().any(|n| n == "Scan"));
            assert!(old.iter().any(|n| n == "Scan"));
            assert_eq!(ours.len(), theirs.len());
            let worst = ours
                .iter()
                .zip(&theirs)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-4, "width {w}: max |Δ log p| = {worst}");
        }
    }
}
