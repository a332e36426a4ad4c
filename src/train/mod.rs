//! Training (feature `train`): augmentation, the training loops of the reader and the
//! localiser, the optimiser, checkpoints and loss plots.

pub mod augment;
pub mod checkpoint;
pub mod detector;
pub mod localiser;
pub mod optim;
pub mod plot;
pub mod reader;
