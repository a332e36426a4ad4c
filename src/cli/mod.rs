//! One module per subcommand.
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
pub mod read;
#[cfg(feature = "train")]
pub mod train;
