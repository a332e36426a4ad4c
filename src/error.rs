//! The library's error type, grouped by who is at fault: the input file, the model, the data set.

use std::path::PathBuf;

/// Everything that can go wrong in the library. Every variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read at all (missing, a directory, permissions).
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not an image we can decode (empty, truncated, wrong format, corrupt).
    #[error("{path}: not a readable image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The image is too large, too small or otherwise outside the limits we accept.
    #[error("{path}: {reason}")]
    Limits {
        /// The file.
        path: PathBuf,
        /// Which limit was broken.
        reason: String,
    },
    /// A `digitStruct.mat` that is not in the official SVHN layout.
    #[error("{path}: not an SVHN digitStruct.mat: {reason}")]
    DigitStruct {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model file that cannot be loaded or does not have the expected inputs and outputs.
    #[error("{path}: not a usable housenum model: {reason}")]
    Model {
        /// The file (or `<embedded>` for the compiled-in model).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The inference runtime failed on an input.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A checkpoint that cannot be read or written.
    #[error("{path}: checkpoint: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Invalid arguments or configuration.
    #[error("{0}")]
    Config(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
