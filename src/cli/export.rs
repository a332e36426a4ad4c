//! `housenum export`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use housenum::train::checkpoint::Checkpoint;
use prost::Message;

/// Export a training checkpoint to ONNX (input `strip [N, 3, 32, W]`, output
/// `log_probs [T, N, 11]`), then check that tract loads it and agrees with the checkpoint.
/// Several `--checkpoint`s make one ensemble (output `log_probs [M, T, N, 11]`, metadata
/// `housenum.members`): the reader scores every member's reading of every framing under all of
/// them. Members must read the same strips (equal `--pad` and `--stretch`).
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint written by `housenum train` (e.g. `runs/default/last.safetensors`); repeat it
    /// to export an ensemble of the checkpoints, in the order given.
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// Where to write the `.onnx` file.
    #[arg(long, default_value = "onnx/housenum.onnx")]
    pub out: PathBuf,
    /// Also write the weights alone (safetensors, PyTorch parameter names, no optimiser state),
    /// for the training-side parity tests; an ensemble's member `k` goes to `STEM-k.safetensors`
    /// beside it (e.g. `housenum-0.safetensors`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Print a JSON summary (file, bytes, parameters, tract-vs-engine difference).
    #[arg(long)]
    pub json: bool,
}

/// Where `--weights` puts member `k` of `members`: the path itself for one model, else
/// `STEM-k.EXT` beside it.
fn member_weights_path(path: &Path, k: usize, members: usize) -> PathBuf {
    if members == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{k}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{k}"),
    };
    path.with_file_name(name)
}

/// Run the subcommand.
pub fn run(a: ExportArgs) -> Result<ExitCode> {
    let cks = a
        .checkpoint
        .iter()
        .map(|p| Checkpoint::load(p).with_context(|| format!("loading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let models: Vec<&housenum::engine::crnn::Crnn> = cks.iter().map(|c| &c.model).collect();
    if let Some(why) = housenum::export::ensemble_mismatch(&models) {
        anyhow::bail!("cannot make one ensemble of {:?}: {why}", a.checkpoint);
    }
    let one = cks.len() == 1;
    let json_of = |f: &dyn Fn(&Checkpoint) -> Result<String>| -> Result<String> {
        let parts = cks.iter().map(f).collect::<Result<Vec<_>>>()?;
        Ok(if one {
            parts.concat()
        } else {
            format!("[{}]", parts.join(","))
        })
    };
    let meta = [
        (housenum::export::CONFIG_KEY, json_of(&|c| {
            // As exported: any normalisation is folded into the convolutions.
            let config = housenum::engine::crnn::ModelConfig {
                norm: false,
                ..c.model.config.clone()
            };
            Ok(serde_json::to_string(&config)?)
        })?),
        ("housenum.epochs", json_of(&|c| Ok(c.state.epoch.to_string()))?),
        ("housenum.preprocessing", "RGB/255; crop or full image; antialiased triangle resize to height 32 and width round(w*32*stretch/h) (stretch: housenum.stretch); (x-mean)/max(std,0.01) over the strip; zero-pad to width >= 32 (centred)".to_string()),
        ("housenum.decoding", if one {
            "greedy CTC over log_probs[T, N, 11]; class 0 = blank, class d+1 = digit d".to_string()
        } else {
            "ensemble: log_probs[M, T, N, 11], one [T, N, 11] per member; each member's reading (greedy CTC; class 0 = blank, class d+1 = digit d) is scored by its CTC log-probability summed over every member (and framing); the highest wins".to_string()
        }),
    ];
    let bytes = housenum::export::ensemble_to_onnx(&models, &meta).encode_to_vec();
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(wpath) = &a.weights {
        for (k, ck) in cks.iter().enumerate() {
            let weights_only = Checkpoint {
                model: ck.model.clone(),
                adam_m: Vec::new(),
                adam_v: Vec::new(),
                state: ck.state.clone(),
            };
            let path = member_weights_path(wpath, k, cks.len());
            weights_only
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    // Check: tract on the exported file vs the training-side forward pass on a random strip,
    // member by member.
    let reader = housenum::Reader::from_path(&a.out)?;
    anyhow::ensure!(
        reader.members() == cks.len(),
        "{}: tract sees {} members, not {}",
        a.out.display(),
        reader.members(),
        cks.len()
    );
    let mut rng = housenum::rng::Rng::new(7);
    let w = 97;
    let x: Vec<f32> = (0..3 * 32 * w).map(|_| rng.normal()).collect();
    let (lp, _) = reader.log_probs(&x, 1, w)?;
    let per_member = lp.len() / cks.len();
    let mut diff = 0f32;
    for (k, ck) in cks.iter().enumerate() {
        let want = housenum::engine::crnn::log_probs(&ck.model, &x, 1, w);
        anyhow::ensure!(want.len() == per_member, "member {k}: output size differs");
        diff = lp[k * per_member..][..per_member]
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(diff, f32::max);
    }
    let params: usize = cks.iter().map(|c| c.model.num_params()).sum();
    eprintln!(
        "wrote {} ({} bytes, {} member(s), {params} parameters); tract vs training engine max |Δ log p| = {diff:.2e}",
        a.out.display(),
        bytes.len(),
        cks.len(),
    );
    anyhow::ensure!(
        diff < 1e-3,
        "exported model disagrees with the checkpoint (max diff {diff})"
    );
    if a.json {
        let summary = serde_json::json!({
            "file": a.out,
            "bytes": bytes.len(),
            "members": cks.len(),
            "parameters": params,
            "max_abs_diff_tract_vs_engine": diff,
        });
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_weights_paths_table() {
        // (path, k, members) -> written file
        let cases = [
            (
                "onnx/housenum.safetensors",
                0,
                1,
                "onnx/housenum.safetensors",
            ),
            (
                "onnx/housenum.safetensors",
                0,
                4,
                "onnx/housenum-0.safetensors",
            ),
            (
                "onnx/housenum.safetensors",
                3,
                4,
                "onnx/housenum-3.safetensors",
            ),
            ("w", 1, 2, "w-1"),
        ];
        for (path, k, m, want) in cases {
            assert_eq!(
                member_weights_path(Path::new(path), k, m),
                PathBuf::from(want),
                "{path} {k}/{m}"
            );
        }
    }
}
