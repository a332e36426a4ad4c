//! ONNX export of a [`Crnn`], built from the ONNX protobuf types that tract-onnx carries.
//!
//! Graph (opset 17, standard operators only):
//! `strip [N, 3, 32, W]` → (Pad, when the model pads its strips) → Conv/Relu/MaxPool ×2 (each
//! followed by the stage's residual blocks, when the model has any: Conv/Relu/Conv added to a Slice
//! of the block's input) → Conv/Relu → Conv/Relu (`[N, C, 1, T]`) →
//! Squeeze → Transpose (`[T, N, C]`) → LSTM (bidirectional) → Transpose + Reshape
//! (`[T, N, 2H]`) → MatMul + Add → LogSoftmax → `log_probs [T, N, 11]`. The windowing is the
//! convolution stack itself (valid convolutions, stride 4 overall), so it happens in the graph.

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::alphabet::NUM_CLASSES;
use crate::engine::crnn::{block_name, Crnn, BLOCK_CROP};
use crate::engine::detector::{Detector, PAD as DET_PAD, STRIDE as DET_STRIDE};
use crate::engine::layers::ConvShape;
use crate::engine::localiser::{Localiser, LocaliserConfig};
use crate::read::metadata::{
    DET_INPUT_NAME, DET_KEY, DET_OUTPUT_NAME, INPUT_NAME, LOC_BINS_KEY, LOC_INPUT_NAME, LOC_KEY,
    LOC_MEMBERS_KEY, LOC_MIRROR_KEY, LOC_OUTPUT_NAME, LOC_PROFILE_NAME, MEMBERS_KEY, OUTPUT_NAME,
    PAD_KEY, STRETCH_KEY, WINDOW_KEY,
};
use crate::read::window::WINDOW;

/// ONNX opset the graph uses.
pub const OPSET: i64 = 17;

/// Reorder one direction's LSTM gate blocks from PyTorch's (i, f, g, o) to ONNX's (i, o, f, c).
///
/// # Shapes
/// `w`: `[4h, k]` (or `[4h]` with `k = 1`) → same shape, blocks reordered.
pub fn pytorch_to_onnx_gates(w: &[f32], hidden: usize) -> Vec<f32> {
    let block = w.len() / 4;
    debug_assert_eq!(block % hidden, 0);
    let get = |g: usize| &w[g * block..(g + 1) * block];
    [get(0), get(3), get(1), get(2)].concat()
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: vec![data.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Ok(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                Err(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The nodes and initialisers of a stack of valid convolutions, each followed by ReLU, the first
/// `pools` of them also by a 2×2 max-pooling; `params[i]` is conv `i`'s (weight, bias), named
/// `conv{first + i}` (and `pool{first + i}`). Returns the name of the stack's output.
fn conv_stack(
    first: usize,
    convs: &[ConvShape],
    params: &[(&[f32], &[f32])],
    pools: usize,
    input: &str,
    nodes: &mut Vec<NodeProto>,
    inits: &mut Vec<TensorProto>,
) -> String {
    let mut prev = input.to_string();
    for (i, (s, (w, b))) in convs.iter().zip(params).enumerate() {
        let i = i + first - 1;
        let pooled = i + 1 - first < pools;
        let (wn, bn) = (
            format!("conv{}.weight", i + 1),
            format!("conv{}.bias", i + 1),
        );
        inits.push(tensor(&wn, &[s.co, s.ci, s.kh, s.kw], w));
        inits.push(tensor(&bn, &[s.co], b));
        let (conv_out, relu_out) = (format!("conv{}", i + 1), format!("relu{}", i + 1));
        nodes.push(node(
            "Conv",
            &conv_out,
            &[&prev, &wn, &bn],
            &[&conv_out],
            vec![
                ints("kernel_shape", &[s.kh as i64, s.kw as i64]),
                ints("strides", &[1, 1]),
                ints("pads", &[0, 0, 0, 0]),
            ],
        ));
        nodes.push(node("Relu", &relu_out, &[&conv_out], &[&relu_out], vec![]));
        prev = relu_out;
        if pooled {
            let pool = format!("pool{}", i + 1);
            nodes.push(node(
                "MaxPool",
                &pool,
                &[&prev],
                &[&pool],
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ));
            prev = pool;
        }
    }
    prev
}

/// The model as an ONNX `ModelProto`. `metadata` is written into `metadata_props`.
pub fn to_onnx(model: &Crnn, metadata: &[(&str, String)]) -> ModelProto {
    // Batch normalisation at inference is an affine map per channel: multiplied into the
    // convolutions, the graph is the one of a model without it.
    let folded = model.config.norm.then(|| model.folded());
    let model = folded.as_ref().unwrap_or(model);
    let cfg = &model.config;
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut prev = INPUT_NAME.to_string();
    if cfg.pad > 0 {
        let p = cfg.pad as i64;
        inits.push(tensor_i64("pad_columns", &[0, 0, 0, p, 0, 0, 0, p]));
        nodes.push(node(
            "Pad",
            "pad",
            &[INPUT_NAME, "pad_columns"],
            &["padded"],
            vec![],
        ));
        prev = "padded".into();
    }
    let params: Vec<(&[f32], &[f32])> = (0..4)
        .map(|i| {
            let p = |n: String| model.param_by_name(&n).expect("conv parameter");
            (
                p(format!("conv{}.weight", i + 1)),
                p(format!("conv{}.bias", i + 1)),
            )
        })
        .collect();
    let convs = cfg.convs();
    let (n, i) = (&mut nodes, &mut inits);
    prev = conv_stack(1, &convs[..1], &params[..1], 1, &prev, n, i);
    prev = residual_blocks(model, 0, &prev, n, i);
    prev = conv_stack(2, &convs[1..2], &params[1..2], 1, &prev, n, i);
    prev = residual_blocks(model, 1, &prev, n, i);
    prev = conv_stack(3, &convs[2..], &params[2..], 0, &prev, n, i);
    // [N, C, 1, T] → [T, N, C]
    inits.push(tensor_i64("squeeze_axes", &[2]));
    nodes.push(node(
        "Squeeze",
        "squeeze",
        &[&prev, "squeeze_axes"],
        &["features_nct"],
        vec![],
    ));
    nodes.push(node(
        "Transpose",
        "to_tnc",
        &["features_nct"],
        &["features"],
        vec![ints("perm", &[2, 0, 1])],
    ));
    // LSTM: W [dirs, 4H, C], R [dirs, 4H, H], B [dirs, 8H] with ONNX gate order i, o, f, c.
    let h = cfg.hidden;
    let dirs = cfg.dirs();
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for suffix in ["", "_reverse"].iter().take(dirs) {
        let p = |n: &str| {
            model
                .param_by_name(&format!("lstm.{n}_l0{suffix}"))
                .expect("lstm parameter")
        };
        w.extend(pytorch_to_onnx_gates(p("weight_ih"), h));
        r.extend(pytorch_to_onnx_gates(p("weight_hh"), h));
        b.extend(pytorch_to_onnx_gates(p("bias_ih"), h));
        b.extend(std::iter::repeat_n(0.0, 4 * h));
    }
    let f = cfg.channels[3];
    inits.push(tensor("lstm.W", &[dirs, 4 * h, f], &w));
    inits.push(tensor("lstm.R", &[dirs, 4 * h, h], &r));
    inits.push(tensor("lstm.B", &[dirs, 8 * h], &b));
    nodes.push(node(
        "LSTM",
        "lstm",
        &["features", "lstm.W", "lstm.R", "lstm.B"],
        &["lstm_y"],
        vec![
            int("hidden_size", h as i64),
            string(
                "direction",
                if dirs == 2 {
                    "bidirectional"
                } else {
                    "forward"
                },
            ),
        ],
    ));
    // Y [T, dirs, N, H] → [T, N, dirs·H]
    nodes.push(node(
        "Transpose",
        "y_tnd",
        &["lstm_y"],
        &["lstm_tndh"],
        vec![ints("perm", &[0, 2, 1, 3])],
    ));
    inits.push(tensor_i64("y_shape", &[0, 0, (dirs * h) as i64]));
    nodes.push(node(
        "Reshape",
        "y_flat",
        &["lstm_tndh", "y_shape"],
        &["lstm_out"],
        vec![],
    ));
    // Head: MatMul by fc.weightᵀ [dirs·H, 11], Add bias, LogSoftmax.
    let fcw = model.param_by_name("fc.weight").expect("fc weight");
    let k = dirs * h;
    let mut fcw_t = vec![0f32; k * NUM_CLASSES];
    for c in 0..NUM_CLASSES {
        for j in 0..k {
            fcw_t[j * NUM_CLASSES + c] = fcw[c * k + j];
        }
    }
    inits.push(tensor("fc.weight_t", &[k, NUM_CLASSES], &fcw_t));
    inits.push(tensor(
        "fc.bias",
        &[NUM_CLASSES],
        model.param_by_name("fc.bias").expect("fc bias"),
    ));
    nodes.push(node(
        "MatMul",
        "fc",
        &["lstm_out", "fc.weight_t"],
        &["logits_nb"],
        vec![],
    ));
    nodes.push(node(
        "Add",
        "fc_bias",
        &["logits_nb", "fc.bias"],
        &["logits"],
        vec![],
    ));
    nodes.push(node(
        "LogSoftmax",
        "log_softmax",
        &["logits"],
        &[OUTPUT_NAME],
        vec![int("axis", 2)],
    ));

    let graph = reader_graph(
        "housenum",
        nodes,
        inits,
        cfg.height,
        &[Err("T"), Err("N"), Ok(NUM_CLASSES as i64)],
    );
    let mut own = vec![
        (PAD_KEY, cfg.pad.to_string()),
        (STRETCH_KEY, cfg.stretch.to_string()),
    ];
    if cfg.window() != WINDOW {
        own.push((WINDOW_KEY, cfg.window().to_string()));
    }
    model_proto(graph, &own, metadata)
}

/// The residual blocks of `stage` (see [`ModelConfig::blocks`]) after `input`: per block
/// `Conv` (padded one row above and below) → `Relu` → `Conv` (the gate multiplied into its
/// weights and bias), added to `Slice` of the input without its first and last
/// [`BLOCK_CROP`] columns. Returns the name of the last block's output (`input` when none).
///
/// [`ModelConfig::blocks`]: crate::engine::crnn::ModelConfig::blocks
fn residual_blocks(
    model: &Crnn,
    stage: usize,
    input: &str,
    nodes: &mut Vec<NodeProto>,
    inits: &mut Vec<TensorProto>,
) -> String {
    let cfg = &model.config;
    let s = cfg.block_conv(stage);
    let mut prev = input.to_string();
    if cfg.blocks[stage] > 0 && !inits.iter().any(|t| t.name == "block_crop.starts") {
        let c = BLOCK_CROP as i64;
        inits.push(tensor_i64("block_crop.starts", &[c]));
        inits.push(tensor_i64("block_crop.ends", &[-c]));
        inits.push(tensor_i64("block_crop.axes", &[3]));
    }
    let p = |n: String| model.param_by_name(&n).expect("block parameter");
    for j in 0..cfg.blocks[stage] {
        let name = block_name(stage, j);
        let gate = p(format!("{name}.gate"))[0];
        let mut conv = |which: &str, scale: f32, input: &str, nodes: &mut Vec<NodeProto>| {
            let (wn, bn) = (
                format!("{name}.{which}.weight"),
                format!("{name}.{which}.bias"),
            );
            let scaled = |v: &[f32]| v.iter().map(|x| x * scale).collect::<Vec<_>>();
            inits.push(tensor(
                &wn,
                &[s.co, s.ci, s.kh, s.kw],
                &scaled(p(wn.clone())),
            ));
            inits.push(tensor(&bn, &[s.co], &scaled(p(bn.clone()))));
            let out = format!("{name}.{which}");
            nodes.push(node(
                "Conv",
                &out,
                &[input, &wn, &bn],
                &[&out],
                vec![
                    ints("kernel_shape", &[s.kh as i64, s.kw as i64]),
                    ints("strides", &[1, 1]),
                    ints("pads", &[1, 0, 1, 0]),
                ],
            ));
            out
        };
        let a = conv("conv_a", 1.0, &prev, nodes);
        let relu = format!("{name}.relu");
        nodes.push(node("Relu", &relu, &[&a], &[&relu], vec![]));
        let b = conv("conv_b", gate, &relu, nodes);
        let skip = format!("{name}.skip");
        nodes.push(node(
            "Slice",
            &skip,
            &[
                &prev,
                "block_crop.starts",
                "block_crop.ends",
                "block_crop.axes",
            ],
            &[&skip],
            vec![],
        ));
        nodes.push(node("Add", &name, &[&skip, &b], &[&name], vec![]));
        prev = name;
    }
    prev
}

/// The inverse of [`pytorch_to_onnx_gates`]: ONNX's (i, o, f, c) blocks back to (i, f, g, o).
///
/// # Shapes
/// `w`: `[4h, k]` (or `[4h]`) → same shape, blocks reordered.
pub fn onnx_to_pytorch_gates(w: &[f32]) -> Vec<f32> {
    let block = w.len() / 4;
    let get = |g: usize| &w[g * block..(g + 1) * block];
    [get(0), get(2), get(3), get(1)].concat()
}

/// Metadata key holding the exported model's [`ModelConfig`](crate::engine::crnn::ModelConfig)
/// as JSON (written by `housenum export`).
pub const CONFIG_KEY: &str = "housenum.config";

/// The reader inside an ONNX file written by [`to_onnx`] (one member, as `housenum export`
/// writes it): its configuration from the metadata ([`CONFIG_KEY`], with [`PAD_KEY`] and
/// [`STRETCH_KEY`]) and every weight from the initialisers, exactly, so that
/// `to_onnx(&crnn_from_onnx(m))` has `m`'s initialisers bit for bit. What `train --init`
/// starts from when it is given an `.onnx` file. `source` names the file in errors.
///
/// # Errors
/// [`Error::Model`](crate::Error::Model) when the bytes are not ONNX, the metadata or an
/// initialiser is missing or has the wrong shape, or the LSTM carries a recurrent bias
/// (housenum's engine has none).
pub fn crnn_from_onnx(bytes: &[u8], source: &std::path::Path) -> crate::Result<Crnn> {
    use crate::engine::crnn::ModelConfig;
    let err = |reason: String| crate::Error::Model {
        path: source.to_path_buf(),
        reason,
    };
    let model = ModelProto::decode(bytes).map_err(|e| err(format!("not an ONNX model: {e}")))?;
    let meta = |key: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    let json = meta(CONFIG_KEY).ok_or_else(|| {
        err(format!(
            "no {CONFIG_KEY} metadata (only readers written by `housenum export` can be imported)"
        ))
    })?;
    let mut config: ModelConfig =
        serde_json::from_str(&json).map_err(|e| err(format!("{CONFIG_KEY}: {e}")))?;
    // The graph holds any normalisation multiplied into the convolutions ([`to_onnx`]).
    config.norm = false;
    if let Some(p) = meta(PAD_KEY) {
        config.pad = p.parse().map_err(|e| err(format!("{PAD_KEY}: {e}")))?;
    }
    if let Some(s) = meta(STRETCH_KEY) {
        config.stretch = s.parse().map_err(|e| err(format!("{STRETCH_KEY}: {e}")))?;
    }
    let graph = model.graph.as_ref().ok_or_else(|| err("no graph".into()))?;
    let init = |name: &str, len: usize| -> crate::Result<Vec<f32>> {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                err(format!(
                    "no initialiser {name} (an ensemble cannot be imported)"
                ))
            })?;
        let v: Vec<f32> = if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        if v.len() != len {
            return Err(err(format!("{name}: {} values, expected {len}", v.len())));
        }
        Ok(v)
    };
    let (h, dirs) = (config.hidden, config.dirs());
    let f = config.channels[3];
    let (w, r, b) = (
        init("lstm.W", dirs * 4 * h * f)?,
        init("lstm.R", dirs * 4 * h * h)?,
        init("lstm.B", dirs * 8 * h)?,
    );
    if b.chunks_exact(8 * h)
        .any(|d| d[4 * h..].iter().any(|&v| v != 0.0))
    {
        return Err(err(
            "the LSTM has a recurrent bias, which housenum's engine lacks".into(),
        ));
    }
    let mut params = Vec::new();
    for (name, shape) in config.param_specs() {
        let len: usize = shape.iter().product();
        let dir = usize::from(name.ends_with("_reverse"));
        let part = |all: &[f32], stride: usize| onnx_to_pytorch_gates(&all[dir * stride..][..len]);
        if name.starts_with("lstm.weight_ih") {
            params.extend(part(&w, 4 * h * f));
        } else if name.starts_with("lstm.weight_hh") {
            params.extend(part(&r, 4 * h * h));
        } else if name.starts_with("lstm.bias_ih") {
            params.extend(part(&b, 8 * h));
        } else if name.ends_with(".gate") {
            // Exported with the gate multiplied into the block's second convolution.
            params.push(1.0);
        } else if name == "fc.weight" {
            let k = dirs * h;
            let t = init("fc.weight_t", k * NUM_CLASSES)?;
            params.extend(
                (0..NUM_CLASSES)
                    .flat_map(|c| (0..k).map(move |j| (c, j)))
                    .map(|(c, j)| t[j * NUM_CLASSES + c]),
            );
        } else {
            params.extend(init(&name, len)?);
        }
    }
    Crnn::from_params(config, params).ok_or_else(|| err("parameter sizes do not match".into()))
}

/// A reader's graph: input [`INPUT_NAME`] `[N, 3, height, W]`, output [`OUTPUT_NAME`] of
/// dimensions `out` (`Err` names a symbolic one).
fn reader_graph(
    name: &str,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    height: usize,
    out: &[Result<i64, &str>],
) -> GraphProto {
    GraphProto {
        name: name.into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(
            INPUT_NAME,
            &[Err("N"), Ok(3), Ok(height as i64), Err("W")],
        )],
        output: vec![value_info(OUTPUT_NAME, out)],
        ..Default::default()
    }
}

/// The model as ONNX bytes.
pub fn to_onnx_bytes(model: &Crnn, metadata: &[(&str, String)]) -> Vec<u8> {
    to_onnx(model, metadata).encode_to_vec()
}

/// Why models cannot be one ensemble: they must read the same strips ([`crate::engine::crnn::ModelConfig::pad`],
/// [`crate::engine::crnn::ModelConfig::stretch`] and height equal, so every member gives the same number of steps).
pub fn ensemble_mismatch(models: &[&Crnn]) -> Option<String> {
    let first = &models.first()?.config;
    models.iter().enumerate().skip(1).find_map(|(k, m)| {
        let c = &m.config;
        let differs = c.pad != first.pad
            || c.stretch != first.stretch
            || c.height != first.height
            || c.window() != first.window();
        differs.then(|| {
            format!(
                "member {k} reads other strips (pad {}, stretch {}, height {}, window {}) than \
                 member 0 (pad {}, stretch {}, height {}, window {})",
                c.pad,
                c.stretch,
                c.height,
                c.window(),
                first.pad,
                first.stretch,
                first.height,
                first.window()
            )
        })
    })
}

/// Several models as one ONNX graph, an ensemble: every member reads the same `strip` and its
/// `log_probs [T, N, 11]` is stacked into `log_probs [M, T, N, 11]` (Unsqueeze + Concat; member
/// `k`'s nodes and initialisers are [`to_onnx`]'s, renamed `m{k}.NAME`). One model gives
/// [`to_onnx`]'s graph unchanged. The reader combines the members' readings as it combines
/// framings ([`crate::read::framings::combine`]: a product of experts over whole readings, so members
/// need not align their CTC peaks). [`MEMBERS_KEY`] holds `M`; `metadata` follows it.
///
/// # Panics
/// When `models` is empty or [`ensemble_mismatch`] finds a member that reads other strips.
pub fn ensemble_to_onnx(models: &[&Crnn], metadata: &[(&str, String)]) -> ModelProto {
    assert!(!models.is_empty(), "an ensemble needs a member");
    if let Some(why) = ensemble_mismatch(models) {
        panic!("{why}");
    }
    if models.len() == 1 {
        return to_onnx(models[0], metadata);
    }
    let mut nodes = Vec::new();
    let mut inits = vec![tensor_i64("members_axis", &[0])];
    let mut stacked = Vec::new();
    for (k, m) in models.iter().enumerate() {
        let g = to_onnx(m, &[]).graph.expect("graph");
        let prefix = format!("m{k}.");
        let io = (INPUT_NAME, INPUT_NAME);
        let out = absorb(g, (&prefix, &prefix), io, &mut nodes, &mut inits);
        let up = format!("m{k}.stacked");
        nodes.push(node(
            "Unsqueeze",
            &up,
            &[&out, "members_axis"],
            &[&up],
            vec![],
        ));
        stacked.push(up);
    }
    let refs: Vec<&str> = stacked.iter().map(String::as_str).collect();
    nodes.push(node(
        "Concat",
        "members",
        &refs,
        &[OUTPUT_NAME],
        vec![int("axis", 0)],
    ));
    let cfg = &models[0].config;
    let graph = reader_graph(
        "housenum-ensemble",
        nodes,
        inits,
        cfg.height,
        &[
            Ok(models.len() as i64),
            Err("T"),
            Err("N"),
            Ok(NUM_CLASSES as i64),
        ],
    );
    let mut own = vec![
        (PAD_KEY, cfg.pad.to_string()),
        (STRETCH_KEY, cfg.stretch.to_string()),
        (MEMBERS_KEY, models.len().to_string()),
    ];
    if cfg.window() != WINDOW {
        own.push((WINDOW_KEY, cfg.window().to_string()));
    }
    model_proto(graph, &own, metadata)
}

/// Moves `graph`'s nodes and initialisers into `nodes` and `inits`: node outputs are prefixed
/// with `prefix`, initialisers with `weights` (one already in `inits` under that name is shared,
/// not copied: two copies of a graph on different inputs keep one set of weights), and the graph
/// input `input` is renamed `feed` (the tensor the absorbed copy reads). Returns the name of the
/// graph's first output.
fn absorb(
    graph: GraphProto,
    (prefix, weights): (&str, &str),
    (input, feed): (&str, &str),
    nodes: &mut Vec<NodeProto>,
    inits: &mut Vec<TensorProto>,
) -> String {
    let params: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    let rename = |n: &str| {
        if n == input {
            feed.to_string()
        } else if n.is_empty() {
            String::new()
        } else if params.contains(n) {
            format!("{weights}{n}")
        } else {
            format!("{prefix}{n}")
        }
    };
    for mut t in graph.initializer {
        t.name = rename(&t.name);
        if !inits.iter().any(|have| have.name == t.name) {
            inits.push(t);
        }
    }
    for mut n in graph.node {
        n.name = rename(&n.name);
        n.input = n.input.iter().map(|i| rename(i)).collect();
        n.output = n.output.iter().map(|o| rename(o)).collect();
        nodes.push(n);
    }
    rename(&graph.output[0].name)
}

/// ONNX bytes with the metadata entry `key` set to `value` (replacing any previous one);
/// everything else is kept as it was. `Err` holds the protobuf decoder's message.
pub fn with_metadata(onnx: &[u8], key: &str, value: &str) -> std::result::Result<Vec<u8>, String> {
    let mut proto = ModelProto::decode(onnx).map_err(|e| e.to_string())?;
    proto.metadata_props.retain(|p| p.key != key);
    proto.metadata_props.push(StringStringEntryProto {
        key: key.to_string(),
        value: value.to_string(),
    });
    Ok(proto.encode_to_vec())
}

/// The localiser as an ONNX `ModelProto`: `image [N, 3, H, W]` → (Conv → Relu → MaxPool) ×3 →
/// Conv → Relu → Flatten → Gemm (`transB`) → Sigmoid → `box [N, 4]` (`x0, y0, x1, y1` as fractions
/// of the image), or for a profile localiser `profile [N, bx + by]` (the column then row profiles,
/// decoded as [`crate::read::locate::decode`] does; [`LOC_BINS_KEY`] says `BXxBY`). `metadata` is
/// written into `metadata_props` after [`LOC_KEY`] (and [`LOC_BINS_KEY`]).
pub fn localiser_to_onnx(loc: &Localiser, metadata: &[(&str, String)]) -> ModelProto {
    let cfg = &loc.config;
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let params: Vec<(&[f32], &[f32])> = (0..4)
        .map(|i| (loc.param(2 * i), loc.param(2 * i + 1)))
        .collect();
    let prev = conv_stack(
        1,
        &cfg.convs(),
        &params,
        3,
        LOC_INPUT_NAME,
        &mut nodes,
        &mut inits,
    );
    nodes.push(node(
        "Flatten",
        "flatten",
        &[&prev],
        &["features"],
        vec![int("axis", 1)],
    ));
    let k = cfg.outputs();
    let output = localiser_output(cfg);
    inits.push(tensor("fc.weight", &[k, cfg.features()], loc.param(8)));
    inits.push(tensor("fc.bias", &[k], loc.param(9)));
    nodes.push(node(
        "Gemm",
        "fc",
        &["features", "fc.weight", "fc.bias"],
        &["logits"],
        vec![int("transB", 1)],
    ));
    nodes.push(node("Sigmoid", "sigmoid", &["logits"], &[output], vec![]));
    let graph = localiser_graph("housenum-localiser", cfg, nodes, inits);
    model_proto(graph, &localiser_metadata(cfg), metadata)
}

/// The localiser's output name: [`LOC_PROFILE_NAME`] for a profile localiser, else
/// [`LOC_OUTPUT_NAME`].
fn localiser_output(cfg: &LocaliserConfig) -> &'static str {
    if cfg.bins.is_some() {
        LOC_PROFILE_NAME
    } else {
        LOC_OUTPUT_NAME
    }
}

/// A localiser's graph: input [`LOC_INPUT_NAME`] `[N, 3, height, width]`, output
/// [`localiser_output`] `[N, outputs]`.
fn localiser_graph(
    name: &str,
    cfg: &LocaliserConfig,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
) -> GraphProto {
    GraphProto {
        name: name.into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(
            LOC_INPUT_NAME,
            &[Err("N"), Ok(3), Ok(cfg.height as i64), Ok(cfg.width as i64)],
        )],
        output: vec![value_info(
            localiser_output(cfg),
            &[Err("N"), Ok(cfg.outputs() as i64)],
        )],
        ..Default::default()
    }
}

/// The metadata every localiser carries: [`LOC_KEY`], and [`LOC_BINS_KEY`] for profiles.
fn localiser_metadata(cfg: &LocaliserConfig) -> Vec<(&'static str, String)> {
    let mut own = vec![(LOC_KEY, format!("{}x{}", cfg.height, cfg.width))];
    if let Some([bx, by]) = cfg.bins {
        own.push((LOC_BINS_KEY, format!("{bx}x{by}")));
    }
    own
}

/// Why `locs` cannot make one localiser ensemble (with `mirror`), or `None` when they can: every
/// member must take the same input size and predict the same outputs, and mirroring needs
/// profiles (a column profile reversed is the mirrored image's; a box head has no such rule
/// here).
pub fn localiser_ensemble_mismatch(locs: &[&Localiser], mirror: bool) -> Option<String> {
    let first = &locs.first()?.config;
    for (k, l) in locs.iter().enumerate().skip(1) {
        let c = &l.config;
        if (c.height, c.width, c.bins) != (first.height, first.width, first.bins) {
            return Some(format!(
                "member {k} takes {}x{} with bands {:?}, member 0 {}x{} with bands {:?}",
                c.height, c.width, c.bins, first.height, first.width, first.bins
            ));
        }
    }
    (mirror && first.bins.is_none())
        .then(|| "only profile localisers (--bins) can read the mirrored image".to_string())
}

/// Several localisers as one: `image [N, 3, H, W]` → the element-wise mean of every member's
/// output (`box [N, 4]` or `profile [N, bx + by]`, as [`localiser_to_onnx`]) and, with `mirror`,
/// of every member's profiles of the image mirrored left to right (an ONNX `Gather` reversing the
/// columns), their column bands reversed back → the same output, so every runtime and
/// [`crate::read::locate::Locator`] use it as one localiser. One member without `mirror` is exactly
/// [`localiser_to_onnx`]. Panics where [`localiser_ensemble_mismatch`] objects.
pub fn localiser_ensemble_to_onnx(
    locs: &[&Localiser],
    mirror: bool,
    metadata: &[(&str, String)],
) -> ModelProto {
    assert!(!locs.is_empty(), "an ensemble needs a member");
    if let Some(why) = localiser_ensemble_mismatch(locs, mirror) {
        panic!("{why}");
    }
    if locs.len() == 1 && !mirror {
        return localiser_to_onnx(locs[0], metadata);
    }
    let cfg = &locs[0].config;
    let (mut nodes, mut inits, mut views) = (Vec::new(), Vec::new(), Vec::new());
    let mirrored = "image_mirrored";
    if mirror {
        let cols: Vec<i64> = (0..cfg.width as i64).rev().collect();
        inits.push(tensor_i64("mirror_columns", &cols));
        nodes.push(node(
            "Gather",
            "mirror",
            &[LOC_INPUT_NAME, "mirror_columns"],
            &[mirrored],
            vec![int("axis", 3)],
        ));
        let [bx, by] = cfg.bins.expect("checked: profiles");
        let bands: Vec<i64> = (0..bx as i64)
            .rev()
            .chain(bx as i64..(bx + by) as i64)
            .collect();
        inits.push(tensor_i64("unmirror_bands", &bands));
    }
    for (k, l) in locs.iter().enumerate() {
        let feeds: &[&str] = if mirror {
            &[LOC_INPUT_NAME, mirrored]
        } else {
            &[LOC_INPUT_NAME]
        };
        for (v, feed) in feeds.iter().enumerate() {
            let g = localiser_to_onnx(l, &[]).graph.expect("graph");
            let (prefix, weights) = (format!("m{k}v{v}."), format!("m{k}."));
            let io = (LOC_INPUT_NAME, *feed);
            let mut out = absorb(g, (&prefix, &weights), io, &mut nodes, &mut inits);
            if v == 1 {
                let back = format!("{prefix}unmirrored");
                nodes.push(node(
                    "Gather",
                    &back,
                    &[&out, "unmirror_bands"],
                    &[&back],
                    vec![int("axis", 1)],
                ));
                out = back;
            }
            views.push(out);
        }
    }
    let refs: Vec<&str> = views.iter().map(String::as_str).collect();
    nodes.push(node(
        "Mean",
        "mean",
        &refs,
        &[localiser_output(cfg)],
        vec![],
    ));
    let graph = localiser_graph("housenum-localiser-ensemble", cfg, nodes, inits);
    let mut own = localiser_metadata(cfg);
    own.push((LOC_MEMBERS_KEY, locs.len().to_string()));
    if mirror {
        own.push((LOC_MIRROR_KEY, "1".to_string()));
    }
    model_proto(graph, &own, metadata)
}

/// The detector as an ONNX `ModelProto`: input [`DET_INPUT_NAME`] `[1, 3, 8·a + 46, 8·b + 46]`
/// (an image of `a × b` cells with the detector's `PAD` = 23 zeros on each side: padding
/// outside the graph lets a large image run in tiles that give exactly its cells), the five
/// convolutions (max-pooling after the first three), a 1×1 convolution and a sigmoid: output
/// [`DET_OUTPUT_NAME`] `[1, 1, a, b]`. `metadata` is written after [`DET_KEY`] (value: the cell
/// size and the padding, `8,23`).
pub fn detector_to_onnx(det: &Detector, metadata: &[(&str, String)]) -> ModelProto {
    let cfg = &det.config;
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let params: Vec<(&[f32], &[f32])> = (0..5)
        .map(|i| (det.param(2 * i), det.param(2 * i + 1)))
        .collect();
    let prev = conv_stack(
        1,
        &cfg.convs(),
        &params,
        3,
        DET_INPUT_NAME,
        &mut nodes,
        &mut inits,
    );
    inits.push(tensor(
        "head.weight",
        &[1, cfg.channels[4], 1, 1],
        det.param(10),
    ));
    inits.push(tensor("head.bias", &[1], det.param(11)));
    nodes.push(node(
        "Conv",
        "head",
        &[&prev, "head.weight", "head.bias"],
        &["logits"],
        vec![
            ints("kernel_shape", &[1, 1]),
            ints("strides", &[1, 1]),
            ints("pads", &[0, 0, 0, 0]),
        ],
    ));
    nodes.push(node(
        "Sigmoid",
        "sigmoid",
        &["logits"],
        &[DET_OUTPUT_NAME],
        vec![],
    ));
    let graph = GraphProto {
        name: "housenum-detector".into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(
            DET_INPUT_NAME,
            &[Ok(1), Ok(3), Err("H"), Err("W")],
        )],
        output: vec![value_info(
            DET_OUTPUT_NAME,
            &[Ok(1), Ok(1), Err("CH"), Err("CW")],
        )],
        ..Default::default()
    };
    model_proto(
        graph,
        &[(DET_KEY, format!("{DET_STRIDE},{DET_PAD}"))],
        metadata,
    )
}

/// A `ModelProto` of opset [`OPSET`] around `graph`, with `own` and then `extra` as
/// `metadata_props`.
fn model_proto(graph: GraphProto, own: &[(&str, String)], extra: &[(&str, String)]) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "housenum".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: own
            .iter()
            .chain(extra)
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_inverts_export_bit_for_bit() {
        use crate::engine::crnn::ModelConfig;
        let path = std::path::Path::new("m.onnx");
        for (bidirectional, pad, stretch, blocks) in [
            (true, 12, 1.4, [0, 0]),
            (false, 0, 1.0, [0, 0]),
            (true, 32, 1.4, [1, 2]),
        ] {
            let config = ModelConfig {
                height: 32,
                channels: [4, 6, 8, 8],
                hidden: 5,
                bidirectional,
                pad,
                stretch,
                blocks,
                norm: false,
            };
            let mut m = Crnn::new(config.clone(), 3);
            // Distinct values everywhere, so a swapped block or transposition shows.
            m.params
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v += i as f32 * 1e-3);
            let json = serde_json::to_string(&config).unwrap();
            let bytes = to_onnx_bytes(&m, &[(CONFIG_KEY, json.clone())]);
            let back = crnn_from_onnx(&bytes, path).unwrap();
            assert_eq!(back.config, config);
            assert_eq!(back.params.len(), m.params.len());
            // A residual block's gate is multiplied into its second convolution at export and
            // imported as 1: the same function, and the same ONNX again bit for bit.
            let again = to_onnx_bytes(&back, &[(CONFIG_KEY, json)]);
            assert_eq!(again, bytes, "blocks {blocks:?}");
            if blocks == [0, 0] {
                assert!(back
                    .params
                    .iter()
                    .zip(&m.params)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            } else {
                let x: Vec<f32> = (0..3 * 32 * 70)
                    .map(|i| (i % 17) as f32 * 0.1 - 0.8)
                    .collect();
                let (a, b) = (
                    crate::engine::crnn::log_probs(&m, &x, 1, 70),
                    crate::engine::crnn::log_probs(&back, &x, 1, 70),
                );
                let d = a
                    .iter()
                    .zip(&b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(d < 1e-4, "max |Δ log p| {d}");
            }
        }
        let e = crnn_from_onnx(b"not onnx", path).unwrap_err().to_string();
        assert!(e.contains("m.onnx"), "{e}");
        let bare = to_onnx_bytes(&Crnn::new(ModelConfig::default(), 1), &[]);
        let e = crnn_from_onnx(&bare, path).unwrap_err().to_string();
        assert!(e.contains(CONFIG_KEY), "{e}");
    }

    /// The shipped reader imports, and exports again to the same weights.
    #[test]
    fn shipped_reader_round_trips() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/housenum.onnx");
        let bytes = std::fs::read(&path).unwrap();
        let m = crnn_from_onnx(&bytes, &path).unwrap();
        let again = to_onnx(&m, &[]);
        let shipped = ModelProto::decode(&bytes[..]).unwrap();
        let inits = |g: &GraphProto| {
            g.initializer
                .iter()
                .map(|t| (t.name.clone(), t.dims.clone(), t.raw_data.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            inits(again.graph.as_ref().unwrap()),
            inits(shipped.graph.as_ref().unwrap())
        );
    }

    #[test]
    fn gate_reorder_table() {
        // Blocks i, f, g, o of size 2 become i, o, f, c(=g).
        let w = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        assert_eq!(
            pytorch_to_onnx_gates(&w, 2),
            vec![1.0, 1.0, 4.0, 4.0, 2.0, 2.0, 3.0, 3.0]
        );
        // With a row length: each block is hidden·k values.
        let w2: Vec<f32> = (0..8 * 3).map(|i| (i / 6) as f32).collect();
        let r = pytorch_to_onnx_gates(&w2, 2);
        let blocks: Vec<f32> = r.chunks(6).map(|c| c[0]).collect();
        assert_eq!(blocks, vec![0.0, 3.0, 1.0, 2.0]);
    }
}
