//! One module per subcommand.
#[cfg(feature = "train")]
pub mod train;
