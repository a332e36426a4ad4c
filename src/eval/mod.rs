//! Evaluation: exact-reading metrics over a labelled folder ([`metrics`]), HTML reports
//! ([`report`]), calibration error ([`calibration`]) and loosely framed photos for the framing
//! benchmark ([`framing`]).

pub mod calibration;
pub mod framing;
pub mod metrics;
pub mod report;

pub use metrics::*;
