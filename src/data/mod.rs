//! Data sets: the SVHN format-1 reader and writer ([`svhn`]), synthetic house numbers
//! ([`synth`]), numbers recombined from real digit crops ([`recombine`]) and photos framed
//! looser than SVHN's ([`framing`]: the framing benchmark and the localiser's training).

pub mod framing;
pub mod recombine;
pub mod svhn;
pub mod synth;
