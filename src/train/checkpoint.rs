//! Checkpoints: the model's parameters (under their PyTorch names), the Adam moments and the
//! training state in one safetensors file, written atomically (temporary file + rename) so a
//! kill at any moment leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::engine::crnn::{Crnn, ModelConfig};
use crate::error::{Error, Result};
use crate::train::optim::Adam;

/// Training state saved with the weights.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// One entry per completed epoch.
    pub history: Vec<EpochLog>,
    /// Training seconds so far (wall clock, summed over resumed runs).
    pub seconds: f64,
    /// The training configuration, as JSON.
    pub train_config: serde_json::Value,
}

/// One epoch's numbers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training CTC loss.
    pub loss: f32,
    /// Steps whose loss or gradient was not finite and that were skipped.
    pub skipped_steps: usize,
    /// Validation sequence accuracy, crop protocol.
    pub val_crop: f64,
    /// Validation sequence accuracy, full protocol.
    pub val_full: f64,
    /// Wall seconds of this epoch.
    pub seconds: f64,
    /// Online runs: unlabelled images the teacher read this epoch, and how many of them it was
    /// sure enough of to train on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<(usize, usize)>,
}

/// What a checkpoint holds.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model.
    pub model: Crnn,
    /// Adam first moments (same layout as the parameters), empty for weights-only files.
    pub adam_m: Vec<f32>,
    /// Adam second moments.
    pub adam_v: Vec<f32>,
    /// Training state.
    pub state: TrainState,
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The error for the checkpoint at `path`.
pub(crate) fn ck_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Checkpoint {
    /// Write atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let specs = self.model.config.param_specs();
        let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (idx, (name, shape)) in specs.iter().enumerate() {
            let r = self.model.param_range(idx);
            buffers.push((
                name.clone(),
                shape.clone(),
                bytes_of(&self.model.params[r.clone()]),
            ));
            if !self.adam_m.is_empty() {
                buffers.push((
                    format!("adam_m.{name}"),
                    shape.clone(),
                    bytes_of(&self.adam_m[r.clone()]),
                ));
                buffers.push((
                    format!("adam_v.{name}"),
                    shape.clone(),
                    bytes_of(&self.adam_v[r]),
                ));
            }
        }
        let views: Vec<(String, TensorView)> = buffers
            .iter()
            .map(|(n, s, b)| {
                Ok((
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| ck_err(path, e))?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut meta = HashMap::new();
        meta.insert(
            "config".to_string(),
            serde_json::to_string(&self.model.config).expect("config serialises"),
        );
        meta.insert(
            "state".to_string(),
            serde_json::to_string(&self.state).expect("state serialises"),
        );
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| ck_err(path, e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    /// Read a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| ck_err(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ck_err(path, e))?;
        let meta = meta
            .metadata()
            .clone()
            .ok_or_else(|| ck_err(path, "no metadata"))?;
        let config: ModelConfig = serde_json::from_str(
            meta.get("config")
                .ok_or_else(|| ck_err(path, "no config"))?,
        )
        .map_err(|e| ck_err(path, e))?;
        let state: TrainState = match meta.get("state") {
            Some(s) => serde_json::from_str(s).map_err(|e| ck_err(path, e))?,
            None => TrainState::default(),
        };
        let read = |name: &str, shape: &[usize]| -> Result<Option<Vec<f32>>> {
            let Ok(t) = st.tensor(name) else {
                return Ok(None);
            };
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(ck_err(
                    path,
                    format!(
                        "{name}: expected f32 {shape:?}, found {:?} {:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            Ok(Some(
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ))
        };
        let (mut params, mut m, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let mut has_adam = true;
        for (name, shape) in config.param_specs() {
            params.extend(
                read(&name, &shape)?
                    .ok_or_else(|| ck_err(path, format!("missing tensor {name}")))?,
            );
            match (
                read(&format!("adam_m.{name}"), &shape)?,
                read(&format!("adam_v.{name}"), &shape)?,
            ) {
                (Some(a), Some(b)) => {
                    m.extend(a);
                    v.extend(b);
                }
                _ => has_adam = false,
            }
        }
        if !has_adam {
            m.clear();
            v.clear();
        }
        let model = Crnn::from_params(config, params)
            .ok_or_else(|| ck_err(path, "parameter sizes do not match the config"))?;
        Ok(Checkpoint {
            model,
            adam_m: m,
            adam_v: v,
            state,
        })
    }
}

/// Write a flat-buffer checkpoint atomically, as the localiser's and the detector's are: the
/// tensors `params`, `adam_m` and `adam_v` (f32, one dimension), `meta` and Adam's step count
/// (`adam_t`) as metadata.
pub fn save_flat(
    path: &Path,
    params: &[f32],
    adam: &Adam,
    mut meta: HashMap<String, String>,
) -> Result<()> {
    let bufs = [
        ("params", bytes_of(params)),
        ("adam_m", bytes_of(&adam.m)),
        ("adam_v", bytes_of(&adam.v)),
    ];
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, b)| {
            Ok((
                n.to_string(),
                TensorView::new(Dtype::F32, vec![b.len() / 4], b).map_err(|e| ck_err(path, e))?,
            ))
        })
        .collect::<Result<_>>()?;
    meta.insert("adam_t".into(), adam.t.to_string());
    let out = safetensors::serialize(views, Some(meta)).map_err(|e| ck_err(path, e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Read a checkpoint written by [`save_flat`]: its metadata (without `adam_t`), parameters and
/// Adam state, whose moments must be as long as the parameters.
pub fn load_flat(path: &Path) -> Result<(HashMap<String, String>, Vec<f32>, Adam)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| ck_err(path, e))?;
    let mut meta = meta.metadata().clone().unwrap_or_default();
    let t: u64 = meta
        .remove("adam_t")
        .ok_or_else(|| ck_err(path, "no adam_t"))?
        .parse()
        .map_err(|e| ck_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| ck_err(path, e))?;
    let read = |name: &str| -> Result<Vec<f32>> {
        let v = st.tensor(name).map_err(|e| ck_err(path, e))?;
        if v.dtype() != Dtype::F32 {
            return Err(ck_err(path, format!("{name} is not f32")));
        }
        Ok(v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let (params, m, v) = (read("params")?, read("adam_m")?, read("adam_v")?);
    if m.len() != params.len() || v.len() != params.len() {
        return Err(ck_err(path, "Adam state does not match the parameters"));
    }
    Ok((meta, params, Adam { m, v, t }))
}

/// The JSON value of `key` in a checkpoint's metadata ([`load_flat`]), parsed; an error naming
/// `path` when it is absent or does not parse.
pub(crate) fn meta_json<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    key: &str,
    path: &Path,
) -> Result<T> {
    let text = meta
        .get(key)
        .ok_or_else(|| ck_err(path, format!("no {key}")))?;
    serde_json::from_str(text).map_err(|e| ck_err(path, e))
}

/// Write a run's epochs to `out/history.json` (pretty JSON), after each epoch.
pub(crate) fn write_history<T: serde::Serialize>(out: &Path, history: &[T]) -> Result<()> {
    let hist = out.join("history.json");
    std::fs::write(
        &hist,
        serde_json::to_string_pretty(history).expect("history serialises"),
    )
    .map_err(|e| Error::io(&hist, e))
}
