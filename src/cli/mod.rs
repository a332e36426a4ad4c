//! One module per subcommand.
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
pub mod read;
pub mod synth;
#[cfg(feature = "train")]
pub mod train;
