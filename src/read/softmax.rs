//! The reader's log-softmax as one op that computes each row the same wherever it lies.
//!
//! tract lowers ONNX `LogSoftmax` to a `Softmax` and an elementwise `Ln`, whose vectorised
//! kernels split a buffer into aligned and unaligned parts. A row's values then depend, by a
//! unit in the last place, on where the row starts in the batch: a strip read in a batch and
//! alone gave log-probabilities one ulp apart. [`LogSoftmax`] computes every row by the same
//! scalar loop, `x − max − ln Σ exp(x − max)`, so that a strip reads the same, bit for bit,
//! alone or in any batch (`read::reader::MAX_BATCH`). [`rewrite_log_softmax`] wires it in place
//! of the pair.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::Ln;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// `log(softmax(x))` along one axis of an f32 tensor, each row on its own.
///
/// # Shapes
/// Any shape → the same shape; the sums run along `axis`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct LogSoftmax {
    /// The axis summed over.
    pub axis: usize,
}

impl LogSoftmax {
    /// The op over `x` of `shape`, into `out`.
    ///
    /// # Shapes
    /// `x`, `out`: `shape`, row-major.
    pub fn run(&self, x: &[f32], shape: &[usize], out: &mut [f32]) {
        assert!(self.axis < shape.len(), "axis {} of {shape:?}", self.axis);
        assert_eq!(x.len(), shape.iter().product::<usize>(), "x is {shape:?}");
        assert_eq!(out.len(), x.len(), "out is {shape:?}");
        let len = shape[self.axis];
        let inner: usize = shape[self.axis + 1..].iter().product();
        let outer: usize = shape[..self.axis].iter().product();
        if len == 0 {
            return;
        }
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * len + k) * inner + i;
                let max = (0..len).fold(f32::NEG_INFINITY, |m, k| m.max(x[at(k)]));
                let sum: f32 = (0..len).map(|k| (x[at(k)] - max).exp()).sum();
                let log_sum = sum.ln();
                for k in 0..len {
                    out[at(k)] = x[at(k)] - max - log_sum;
                }
            }
        }
    }
}

impl Op for LogSoftmax {
    fn name(&self) -> StaticName {
        "LogSoftmaxRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis {}", self.axis)])
    }

    op_as_typed_op!();
}

impl EvalOp for LogSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape = x.shape().to_vec();
        if self.axis >= shape.len() {
            bail!("LogSoftmaxRows over axis {} of {shape:?}", self.axis);
        }
        let mut y = Tensor::zero::<f32>(&shape)?;
        let view = x.try_as_plain_ram()?;
        self.run(
            view.as_slice::<f32>()?,
            &shape,
            y.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for LogSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replace every f32 `Softmax` over one axis whose only use is an elementwise `Ln` (tract's
/// lowering of ONNX `LogSoftmax`) by a [`LogSoftmax`]; returns how many.
pub fn rewrite_log_softmax(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = node.op_as::<Softmax>() else {
            continue;
        };
        let [axis] = op.axes[..] else {
            continue;
        };
        if op.kind != SoftmaxKind::Softmax
            || op.quant_output_dt.is_some()
            || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
            || model.output_outlets()?.contains(&OutletId::new(id, 0))
        {
            continue;
        }
        let [succ] = node.outputs[0].successors[..] else {
            continue;
        };
        let ln = model.node(succ.node);
        let is_ln = ln
            .op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<Ln>() && op.1.is_none());
        if !is_ln || ln.inputs.len() != 1 {
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[0])?;
        let out = patch.wire_node(&ln.name, LogSoftmax { axis }, &[x])?;
        patch.shunt_outside(model, OutletId::new(ln.id, 0), out[0])?;
        patch.apply(model)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against `ln(softmax)` in f64, over each axis of a 3-D tensor, with large and equal
    /// values; and a row gives the same bits wherever it lies.
    #[test]
    fn matches_the_definition_and_ignores_where_a_row_lies() {
        let shape = [3, 4, 11];
        let mut rng = crate::rng::Rng::new(7);
        let mut x: Vec<f32> = (0..132).map(|_| rng.normal() * 8.0).collect();
        x[..11].fill(3.0);
        x[11] = 1e4;
        for axis in 0..3 {
            let mut got = vec![0f32; x.len()];
            LogSoftmax { axis }.run(&x, &shape, &mut got);
            let len = shape[axis];
            let inner: usize = shape[axis + 1..].iter().product();
            let outer: usize = shape[..axis].iter().product();
            for o in 0..outer {
                for i in 0..inner {
                    let at = |k: usize| (o * len + k) * inner + i;
                    let max = (0..len).map(|k| x[at(k)] as f64).fold(f64::MIN, f64::max);
                    let sum: f64 = (0..len).map(|k| (x[at(k)] as f64 - max).exp()).sum();
                    for k in 0..len {
                        let want = x[at(k)] as f64 - max - sum.ln();
                        let g = got[at(k)] as f64;
                        assert!(
                            (g - want).abs() < 1e-5 * (1.0 + want.abs()),
                            "{axis}: {g} vs {want}"
                        );
                    }
                }
            }
        }
        let row: Vec<f32> = x[22..33].to_vec();
        let mut alone = vec![0f32; 11];
        LogSoftmax { axis: 0 }.run(&row, &[11], &mut alone);
        let mut all = vec![0f32; x.len()];
        LogSoftmax { axis: 2 }.run(&x, &shape, &mut all);
        assert!(alone
            .iter()
            .zip(&all[22..33])
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
