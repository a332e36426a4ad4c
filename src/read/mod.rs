//! Reading a photo, stage by stage. Data flows one way:
//!
//! 1. [`decode`]: the file decoded to RGB floats, with limits against huge images.
//! 2. [`locate`]: the localiser finds the number's box in the whole photo.
//! 3. [`framings`]: that box grown and shifted several ways ([`region`] holds the pixel
//!    rectangles and the protocols; [`search`] the localiser-free fallback).
//! 4. [`strip`]: each framing resized to a 32-pixel-high, normalised strip.
//! 5. [`reader`]: the tract plan of the exported model: the window CNN over the strip's
//!    overlapping [`window`]s, the BiLSTM and the per-step class log-probabilities. [`plan`]
//!    and [`lstm`] put our own [`conv`], LSTM and [`softmax`] operators in tract's plan where
//!    its own are slow for these shapes or depend on where a strip lies in a batch.
//! 6. [`ctc`]: decoding into digits with a confidence, [`calibration`] mapping it to a
//!    probability; [`framings::combine`] picks the answer among the framings.
//! 7. Where the answer is unsure and small in the photo, or the photo is phone-size, the
//!    [`detect`] detector's candidates are read too and [`verify`] chooses the answer.
//!
//! [`explain`] draws what a reading saw; [`metadata`] is the contract of the ONNX files.
//! Nothing here depends on the training engine.

pub mod calibration;
pub mod conv;
pub mod ctc;
pub mod decode;
pub mod detect;
pub mod explain;
pub mod framings;
pub mod locate;
pub mod lstm;
pub mod metadata;
pub mod plan;
pub mod reader;
pub mod region;
pub mod search;
mod simd;
pub mod softmax;
pub mod strip;
pub mod verify;
pub mod window;

pub use ctc::Decoded;
pub use decode::*;
pub use locate::Locator;
pub use reader::Reader;
pub use region::*;
pub use strip::*;
