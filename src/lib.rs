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
pub mod data;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod progress;
pub mod read;
pub mod rng;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
pub use read::{Decoded, DigitBox, Locator, Protocol, Reader, Region};

/// The README's code examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
