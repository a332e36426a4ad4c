//! One module per subcommand.
#[cfg(feature = "train")]
pub mod bench;
pub mod calibrate;
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
#[cfg(feature = "train")]
pub mod export_localiser;
pub mod label;
pub mod read;
pub mod strips;
pub mod synth;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "train")]
pub mod train_detector;
#[cfg(feature = "train")]
pub mod train_localiser;

/// A share in [0, 1]: `train --loose`, `--lowres`, `--cutout`, `--synth-typeset`, `synth
/// --typeset`.
pub fn parse_share(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}
