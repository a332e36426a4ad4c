//! Evaluation: exact-reading metrics over a labelled folder ([`metrics`]), HTML reports
//! ([`report`]) and calibration error ([`calibration`]).

pub mod calibration;
pub mod metrics;
pub mod report;

pub use metrics::*;
