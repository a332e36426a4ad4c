//! Data sets: the SVHN format-1 reader and writer ([`svhn`]), synthetic house numbers
//! ([`synth`]) and numbers recombined from real digit crops ([`recombine`]).

pub mod recombine;
pub mod svhn;
pub mod synth;
