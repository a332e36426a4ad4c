//! The contract of the exported ONNX files: graph input and output names, and the
//! `metadata_props` keys that tell a runtime how to preprocess and decode. `onnx/read.py` reads
//! the same keys.

/// Name of the graph input.
pub const INPUT_NAME: &str = "strip";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "log_probs";
/// Metadata key holding [`crate::engine::crnn::ModelConfig::pad`]: the zero columns the graph adds
/// on each side of the strip, which map time steps back to strip columns.
pub const PAD_KEY: &str = "housenum.pad";
/// Metadata key holding [`crate::engine::crnn::ModelConfig::stretch`]: the horizontal stretch that
/// preprocessing must apply to the strips this model reads (`onnx/read.py` and
/// [`crate::read::reader::Reader`] read it; absent means 1).
pub const STRETCH_KEY: &str = "housenum.stretch";

/// Metadata key holding [`crate::engine::crnn::ModelConfig::window`], the width in pixels of the
/// windows whose embeddings are the time steps (written when it is not
/// [`crate::read::window::WINDOW`], by readers with residual blocks; absent means that).
pub const WINDOW_KEY: &str = "housenum.window";

/// Metadata key of an ensemble's member count (absent for a single model).
pub const MEMBERS_KEY: &str = "housenum.members";

/// Name of the localiser graph's input.
pub const LOC_INPUT_NAME: &str = "image";
/// Name of the localiser graph's output (a box head).
pub const LOC_OUTPUT_NAME: &str = "box";
/// Name of the localiser graph's output when it predicts profiles
/// ([`crate::engine::localiser::LocaliserConfig::bins`]).
pub const LOC_PROFILE_NAME: &str = "profile";
/// Metadata key marking a localiser (value: its input `HEIGHTxWIDTH`).
pub const LOC_KEY: &str = "housenum.localiser";
/// Metadata key of a profile localiser's bands (value: `BXxBY`); absent for a box head.
pub const LOC_BINS_KEY: &str = "housenum.localiser.bins";
/// Metadata key of a profile localiser's band threshold (value: a number between 0 and 1, e.g.
/// `0.4`): a band belongs to the number where its profile reaches it. Absent: ½
/// ([`crate::read::locate::THRESHOLD`]). See [`crate::read::locate::profile_span`].
pub const LOC_THRESHOLD_KEY: &str = "housenum.localiser.threshold";

/// Metadata key of a localiser read coarse to fine (value `AxB`: the second pass looks at the
/// first box grown A times in width and B in height; absent: one pass). See
/// [`crate::read::locate::Locator::locate_refined`].
pub const LOC_REFINE_KEY: &str = "housenum.localiser.refine";

/// Name of the detector graph's input: a photo `[1, 3, 8a + 46, 8b + 46]`, values
/// `(v − 0.5) / 0.25`, with 23 px of zeros on each side.
pub const DET_INPUT_NAME: &str = "photo";
/// Name of the detector graph's output: `[1, 1, a, b]`, each cell's share of a number.
pub const DET_OUTPUT_NAME: &str = "cells";
/// Metadata key marking a detector (value: its cell size and padding in pixels, `8,23`).
pub const DET_KEY: &str = "housenum.detector";

/// Metadata key of a localiser ensemble: how many localisers it averages.
pub const LOC_MEMBERS_KEY: &str = "housenum.localiser.members";
/// Metadata key of a localiser ensemble that also reads the mirrored image (value `1`).
pub const LOC_MIRROR_KEY: &str = "housenum.localiser.mirror";

/// ONNX `metadata_props` key of the calibration.
pub const CALIBRATION_KEY: &str = "housenum.calibration";

/// The error for the model file `source`: `reason` why it cannot be used.
pub fn model_error(source: &std::path::Path, reason: String) -> crate::Error {
    crate::Error::Model {
        path: source.to_path_buf(),
        reason,
    }
}

/// ONNX `bytes` parsed for tract; `source` names the file in errors (an empty file, or bytes
/// that are not ONNX). What the reader, the localiser and the detector load.
pub fn parse_model(
    bytes: &[u8],
    source: &std::path::Path,
) -> crate::Result<tract_onnx::prelude::InferenceModel> {
    use tract_onnx::prelude::Framework;
    if bytes.is_empty() {
        return Err(model_error(source, "empty file".into()));
    }
    let mut onnx = tract_onnx::onnx();
    super::lstm::register(&mut onnx);
    onnx.model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| model_error(source, format!("cannot parse ONNX: {e}")))
}

/// The `metadata_props` value of `key` in `model`: `None` when absent, an error naming `source`
/// when it is not a string.
pub fn metadata(
    model: &tract_onnx::prelude::InferenceModel,
    key: &str,
    source: &std::path::Path,
) -> crate::Result<Option<String>> {
    let Some(t) = model.properties.get(&format!("onnx.metadata_props.{key}")) else {
        return Ok(None);
    };
    let view = t
        .to_plain_array_view::<String>()
        .map_err(|e| model_error(source, format!("{key}: {e}")))?;
    let text = view
        .iter()
        .next()
        .ok_or_else(|| model_error(source, format!("{key}: empty")))?;
    Ok(Some(text.clone()))
}
