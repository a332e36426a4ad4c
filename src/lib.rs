//! # housenum
//!
//! Reads house numbers from street photos. A strip of the image, scaled to 32 pixels high, is cut
//! into overlapping windows (26 px wide, stride 4); one small CNN embeds every window, a
//! bidirectional LSTM reads the windows left to right and back, and a CTC head turns the
//! per-window class scores into digits — of any count.
//!
//! ```no_run
//! use housenum::Reader;
//! let reader = Reader::embedded()?;
//! let read = reader.read_file(std::path::Path::new("data/samples/sample-1.png"))?;
//! println!("{} ({:.3})", read.text(), read.confidence);
//! # Ok::<(), housenum::Error>(())
//! ```
#![warn(missing_docs)]

pub mod alphabet;
#[cfg(feature = "train")]
pub mod augment;
pub mod calibrate;
#[cfg(feature = "train")]
pub mod checkpoint;
pub mod ctc;
pub mod error;
pub mod eval;
pub mod explain;
pub mod export;
pub mod infer;
pub mod localiser;
#[cfg(feature = "train")]
pub mod localiser_train;
pub mod locate;
pub mod model;
pub mod nn;
#[cfg(feature = "train")]
pub mod plot;
pub mod preprocess;
pub mod progress;
pub mod recombine;
pub mod report;
pub mod rng;
pub mod search;
pub mod svhn;
pub mod synth;
#[cfg(feature = "train")]
pub mod train;
pub mod views;
pub mod window;

pub use ctc::Decoded;
pub use error::{Error, Result};
pub use infer::Reader;
pub use preprocess::Protocol;

/// The README's code examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
