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
pub mod train_localiser;
