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

/// A share in [0, 1]: the options that replace or change a share of the training samples
/// (`train --synth`, `--empty`, `train-localiser --zoom-out`, …) and `synth --typeset`.
pub fn parse_share(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_share;

    #[test]
    fn shares_lie_between_0_and_1() {
        // (argument, parsed share or None for an error)
        let cases = [
            ("0", Some(0.0)),
            ("0.25", Some(0.25)),
            ("1", Some(1.0)),
            ("1.5", None),
            ("-0.1", None),
            ("NaN", None),
            ("half", None),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_share(arg).ok(), want, "{arg:?}");
        }
    }
}
