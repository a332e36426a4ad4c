//! The training engine: forward and backward passes on CPU, written for this model.
//!
//! - [`amx`]: bfloat16 GEMM on AMX tiles, for `train --bf16`;
//! - [`layers`]: GEMM convolutions, max-pooling, the fused LSTM, log-softmax;
//! - [`crnn`]: the reader (window CNN + BiLSTM + linear head) with its loss and gradient;
//! - [`ctc_loss`]: the CTC loss and its gradient;
//! - [`localiser`]: the network that finds the number's box;
//! - [`detector`]: the fully convolutional network that marks where numbers are, at any size.
//!
//! Inference does not use this module: [`crate::read`] runs the exported ONNX graphs under tract.

pub mod amx;
pub mod crnn;
pub mod ctc_loss;
pub mod detector;
pub mod layers;
pub mod localiser;
