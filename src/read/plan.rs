//! Rewrites of tract's optimised plan where one of its operators is slow for these models.
//!
//! tract 0.23 runs the models' convolutions as im2col and a packed matrix product, 45 GFLOP/s on
//! one core against onnxruntime's 87 on the same strips. [`rewrite_convs`] replaces each plain
//! float convolution, with the ReLU and the 2 × 2 max-pool after it, by one [`DirectConv`]
//! (`read::conv`), whose sums differ from tract's by rounding only.
//!
//! tract 0.23 runs a 2 × 2, stride-2 max-pool one output value at a time with bounds checks (its
//! vectorised 2 × 2 path covers stride 1 only): 15 % of the reader's time, against 2 % for the
//! same operator in onnxruntime (`housenum bench-strips --per-op`, docs/experiments.md, "Speed").
//! [`MaxPool2x2`] computes the same values (the maximum is exact, so bit for bit) a row pair at a
//! time, in loops the compiler vectorises (where no convolution took the pool in already).
//! The `.onnx` files are unchanged: the rewrites happen on the plan this process builds.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::math::Max;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::conv::DirectConv;

/// Max-pooling over 2 × 2 windows with stride 2 and no padding, NCHW f32, odd rows and columns
/// dropped (ONNX `MaxPool` with `kernel_shape = strides = [2, 2]`, floor mode).
///
/// # Shapes
/// `[n, c, h, w]` → `[n, c, h / 2, w / 2]` (floor).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct MaxPool2x2;

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "MaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        if shape.len() != 4 {
            bail!("MaxPool2x2 expects [n, c, h, w], got {shape:?}");
        }
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let (oh, ow) = (h / 2, w / 2);
        let view = input.try_as_plain_ram()?;
        let x = view.as_slice::<f32>()?;
        let mut out = vec![0f32; n * c * oh * ow];
        maxpool_2x2(x, &mut out, n * c, h, w);
        Ok(tvec!(
            Tensor::from_shape(&[n, c, oh, ow], &out)?.into_tvalue()
        ))
    }
}

impl TypedOp for MaxPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        if s.rank() != 4 {
            bail!("MaxPool2x2 expects a rank-4 input");
        }
        let half = |d: &TDim| (d.clone() - 2) / 2 + 1;
        Ok(tvec!(f32::fact([
            s[0].clone(),
            s[1].clone(),
            half(&s[2]),
            half(&s[3])
        ])))
    }

    as_op!();
}

/// The pooling itself: `planes` planes of `h × w` in `x`, `planes` planes of
/// `(h / 2) × (w / 2)` into `out`.
///
/// # Shapes
/// `x`: `[planes, h, w]`, `out`: `[planes, h / 2, w / 2]`.
pub fn maxpool_2x2(x: &[f32], out: &mut [f32], planes: usize, h: usize, w: usize) {
    let (oh, ow) = (h / 2, w / 2);
    for p in 0..planes {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            let r0 = &plane[2 * oy * w..2 * oy * w + 2 * ow];
            let r1 = &plane[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
            let o = &mut out[(p * oh + oy) * ow..(p * oh + oy + 1) * ow];
            for ((o, a), b) in o.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                // The order of tract's generic walk (row 0 then row 1, left then right).
                *o = f32::MIN.max(a[0]).max(a[1]).max(b[0]).max(b[1]);
            }
        }
    }
}

/// Whether `op` is a max-pool that [`MaxPool2x2`] computes exactly.
fn is_plain_2x2(op: &MaxPool) -> bool {
    let s = &op.pool_spec;
    let zeros = |v: &[usize]| v.iter().all(|&p| p == 0);
    let unpadded = match &s.padding {
        PaddingSpec::Valid => true,
        PaddingSpec::Explicit(b, a) => zeros(b) && zeros(a),
        PaddingSpec::ExplicitOnnxPool(b, a, ceil) => zeros(b) && zeros(a) && !ceil,
        _ => false,
    };
    op.with_index_outputs.is_none()
        && s.data_format == DataFormat::NCHW
        && s.kernel_shape[..] == [2, 2]
        && s.strides.as_deref() == Some(&[2, 2][..])
        && s.dilations
            .as_ref()
            .is_none_or(|d| d.iter().all(|&x| x == 1))
        && unpadded
}

/// The runnable plan of an ONNX model whose input 0 is `input`: typed, decluttered, its
/// convolutions ([`rewrite_convs`]), max-pools ([`rewrite_maxpools`]) and log-softmax
/// ([`super::softmax::rewrite_log_softmax`]) rewritten, optimised.
/// What the reader, the localiser and the detector run.
pub fn build(
    mut model: InferenceModel,
    input: InferenceFact,
) -> TractResult<Arc<TypedRunnableModel>> {
    model.set_input_fact(0, input)?;
    let mut m = model.into_typed()?.into_decluttered()?;
    rewrite_convs(&mut m)?;
    rewrite_maxpools(&mut m)?;
    super::softmax::rewrite_log_softmax(&mut m)?;
    m.into_optimized()?.into_runnable()
}

/// Replace every plain 2 × 2 max-pool of a decluttered model by [`MaxPool2x2`]; returns how many.
pub fn rewrite_maxpools(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = node.op_as::<MaxPool>() else {
            continue;
        };
        if !is_plain_2x2(op) || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
            continue;
        }
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, MaxPool2x2)?;
        patch.apply(model)?;
        count += 1;
    }
    Ok(count)
}

/// Whether two weight arrays of the plan's own ops are the same bit for bit (their `Eq`).
pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Feed a weight array of the plan's own ops to `state` bit for bit (their `Hash`).
pub(crate) fn hash_bits<H: std::hash::Hasher>(v: &[f32], state: &mut H) {
    use std::hash::Hash;
    v.len().hash(state);
    v.iter().for_each(|x| x.to_bits().hash(state));
}

/// `(top, left, bottom, right)` zero padding of a 2-D `spec`, where it is explicit.
fn explicit_padding(spec: &PaddingSpec) -> Option<[usize; 4]> {
    let pads =
        |b: &[usize], a: &[usize]| (b.len() == 2 && a.len() == 2).then(|| [b[0], b[1], a[0], a[1]]);
    match spec {
        PaddingSpec::Valid => Some([0; 4]),
        PaddingSpec::Explicit(b, a) => pads(b, a),
        PaddingSpec::ExplicitOnnxPool(b, a, false) => pads(b, a),
        _ => None,
    }
}

/// The [`DirectConv`] that computes `node` (a [`Conv`]), when it is a plain float convolution
/// with constant weights and bias: NCHW, OIHW weights, one group, stride and dilation 1,
/// explicit padding.
fn direct_conv(
    model: &TypedModel,
    node: &TypedNode,
    relu: bool,
) -> TractResult<Option<DirectConv>> {
    let Some(op) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let s = &op.pool_spec;
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&x| x == 1));
    let Some(pad) = explicit_padding(&s.padding) else {
        return Ok(None);
    };
    if op.group != 1
        || op.q_params.is_some()
        || op.kernel_fmt != KernelFormat::OIHW
        || s.data_format != DataFormat::NCHW
        || s.kernel_shape.len() != 2
        || !ones(&s.strides)
        || !ones(&s.dilations)
        || node.inputs.len() != 3
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    let konst = |i: usize| -> TractResult<Option<Arc<Tensor>>> {
        let fact = model.outlet_fact(node.inputs[i])?;
        Ok(fact
            .konst
            .clone()
            .filter(|t| t.datum_type() == f32::datum_type()))
    };
    let (Some(weight), Some(bias)) = (konst(1)?, konst(2)?) else {
        return Ok(None);
    };
    let (ci, co) = (s.input_channels, s.output_channels);
    let (kh, kw) = (s.kernel_shape[0], s.kernel_shape[1]);
    if weight.shape() != [co, ci, kh, kw] {
        return Ok(None);
    }
    let floats = |t: &Tensor| -> TractResult<Vec<f32>> {
        Ok(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    };
    let bias = floats(&bias)?;
    let bias = match bias.len() {
        1 => vec![bias[0]; co],
        n if n == co => bias,
        _ => return Ok(None),
    };
    Ok(Some(DirectConv::new(
        &floats(&weight)?,
        &bias,
        [co, ci, kh, kw],
        pad,
        relu,
    )))
}

/// The node that applies ReLU to `node`'s only output (`max(x, 0)`), when that is its only use.
fn relu_after(model: &TypedModel, node: &TypedNode) -> Option<usize> {
    let [succ] = &node.outputs[0].successors[..] else {
        return None;
    };
    let next = model.node(succ.node);
    let bin = next.op_as::<TypedBinOp>()?;
    if !bin.0.is::<Max>() || next.inputs.len() != 2 {
        return None;
    }
    let other = next.inputs[1 - succ.slot];
    let zero = model.outlet_fact(other).ok()?.konst.clone()?;
    let view = zero.try_as_plain_ram().ok()?;
    let zero = view.as_slice::<f32>().ok()?;
    (zero.len() == 1 && zero[0] == 0.0).then_some(next.id)
}

/// The plain 2 × 2 max-pool ([`is_plain_2x2`]) that is the only use of `node`'s output.
fn pool_after(model: &TypedModel, node: &TypedNode) -> TractResult<Option<usize>> {
    let [succ] = &node.outputs[0].successors[..] else {
        return Ok(None);
    };
    let next = model.node(succ.node);
    Ok(next
        .op_as::<MaxPool>()
        .filter(|op| is_plain_2x2(op))
        .map(|_| next.id))
}

/// Replace every plain float convolution of a decluttered model (f32, NCHW, OIHW weights, one
/// group, stride and dilation 1, explicit padding, constant weights and bias), and the
/// ReLU and 2 × 2 max-pool after it where they follow, by a [`DirectConv`]; returns how many.
pub fn rewrite_convs(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.op_as::<Conv>().is_none() {
            continue;
        }
        let relu = relu_after(model, node);
        let Some(op) = direct_conv(model, node, relu.is_some())? else {
            continue;
        };
        let last = relu.unwrap_or(id);
        let (op, last) = match pool_after(model, model.node(last))? {
            Some(pool) => (op.pooled(), pool),
            None => (op, last),
        };
        let last = OutletId::new(last, 0);
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[0])?;
        let out = patch.wire_node(&node.name, op, &[x])?;
        patch.shunt_outside(model, last, out[0])?;
        patch.apply(model)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output of `m` (optimised first when `optimise`) on `input`, flattened.
    fn run_plan(m: TypedModel, input: &Tensor, optimise: bool) -> Vec<f32> {
        let m = if optimise {
            m.into_optimized().expect("optimise")
        } else {
            m
        };
        let out = m
            .into_runnable()
            .expect("plan")
            .run(tvec!(input.clone().into_tvalue()))
            .expect("run");
        let view = out[0].to_plain_array_view::<f32>().expect("f32");
        view.iter().cloned().collect()
    }

    /// The rewrite against tract's own max-pool, bit for bit, on odd and even sizes.
    #[test]
    fn maxpool_matches_tract() {
        for (h, w) in [(30, 124), (13, 60), (13, 61), (2, 2), (3, 5), (4, 7)] {
            let planes = 3;
            let mut r = crate::rng::Rng::new((h * 1000 + w) as u64);
            let x: Vec<f32> = (0..planes * h * w).map(|_| r.normal()).collect();
            let mut ours = vec![0f32; planes * (h / 2) * (w / 2)];
            maxpool_2x2(&x, &mut ours, planes, h, w);

            let mut m = TypedModel::default();
            let src = m
                .add_source("x", f32::fact([1, planes, h, w]))
                .expect("source");
            let spec = tract_onnx::tract_core::ops::cnn::PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![2, 2],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: Some(tvec![2, 2]),
                input_channels: planes,
                output_channels: planes,
            };
            let out = m
                .wire_node("pool", MaxPool::new(spec, None), &[src])
                .expect("wire");
            m.select_output_outlets(&out).expect("outputs");
            let input = Tensor::from_shape(&[1, planes, h, w], &x).expect("tensor");
            let run = |m: TypedModel| run_plan(m, &input, false);
            let theirs = run(m.clone());
            assert_eq!(ours, theirs, "{h}x{w}");
            assert_eq!(rewrite_maxpools(&mut m).expect("rewrite"), 1);
            let got = run(m);
            assert_eq!(got, theirs);
        }
    }

    /// Convolutions (with and without the ReLU and the max-pool after them, padded or not)
    /// rewritten to [`DirectConv`] against tract's own, to rounding; a grouped one is left
    /// alone.
    #[test]
    fn convs_match_tract() {
        use tract_onnx::tract_core::ops::cnn::PoolSpec;
        // (ci, co, kh, kw, pad before, pad after, [relu, pool], group, h, w, rewritten)
        let cases = [
            (3, 48, 3, 3, [0, 12], [0, 12], [true, true], 1, 32, 40, 1),
            (48, 96, 3, 3, [0, 0], [0, 0], [true, false], 1, 15, 31, 1),
            (8, 5, 4, 3, [1, 2], [0, 1], [false, false], 1, 6, 9, 1),
            (8, 5, 3, 3, [0, 0], [0, 0], [false, true], 1, 7, 10, 1),
            (8, 8, 3, 3, [0, 0], [0, 0], [true, false], 2, 6, 9, 0),
        ];
        for (ci, co, kh, kw, before, after, [relu, pool], group, h, w, rewritten) in cases {
            let mut r = crate::rng::Rng::new((ci * 100 + co) as u64);
            let mut m = TypedModel::default();
            let src = m.add_source("x", f32::fact([1, ci, h, w])).expect("source");
            let kernel: Vec<f32> = (0..co * ci / group * kh * kw)
                .map(|_| r.normal() * 0.3)
                .collect();
            let kernel = Tensor::from_shape(&[co, ci / group, kh, kw], &kernel).expect("kernel");
            let bias: Vec<f32> = (0..co).map(|_| r.normal()).collect();
            let k = m.add_const("k", kernel).expect("const");
            let b = m
                .add_const("b", Tensor::from_shape(&[co], &bias).expect("bias"))
                .expect("const");
            let conv = Conv {
                pool_spec: PoolSpec {
                    data_format: DataFormat::NCHW,
                    kernel_shape: tvec![kh, kw],
                    padding: PaddingSpec::Explicit(before[..].into(), after[..].into()),
                    dilations: None,
                    strides: Some(tvec![1, 1]),
                    input_channels: ci,
                    output_channels: co,
                },
                kernel_fmt: KernelFormat::OIHW,
                group,
                q_params: None,
            };
            let mut out = m.wire_node("conv", conv, &[src, k, b]).expect("conv");
            if relu {
                let zero = m.add_const("zero", tensor4(&[[[[0f32]]]])).expect("zero");
                let max = TypedBinOp(Box::new(Max), None);
                out = m.wire_node("relu", max, &[out[0], zero]).expect("relu");
            }
            if pool {
                let spec = PoolSpec {
                    data_format: DataFormat::NCHW,
                    kernel_shape: tvec![2, 2],
                    padding: PaddingSpec::Valid,
                    dilations: None,
                    strides: Some(tvec![2, 2]),
                    input_channels: co,
                    output_channels: co,
                };
                out = m
                    .wire_node("pool", MaxPool::new(spec, None), &out)
                    .expect("pool");
            }
            m.select_output_outlets(&out).expect("outputs");
            let x: Vec<f32> = (0..ci * h * w).map(|_| r.normal()).collect();
            let input = Tensor::from_shape(&[1, ci, h, w], &x).expect("tensor");
            let run = |m: TypedModel| run_plan(m, &input, true);
            let theirs = run(m.clone());
            assert_eq!(rewrite_convs(&mut m).expect("rewrite"), rewritten);
            let ours = run(m);
            assert_eq!(ours.len(), theirs.len());
            let scale = theirs.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (a, b) in ours.iter().zip(&theirs) {
                assert!((a - b).abs() <= 1e-5 * scale, "{ci}→{co}: {a} vs {b}");
            }
        }
    }
}
