//! The calibration stored in a model's metadata is what `Reader` applies; bad metadata is an
//! error naming the file.

use std::path::Path;

use housenum::export::with_metadata;
use housenum::read::calibration::Calibration;
use housenum::read::metadata::CALIBRATION_KEY;
use housenum::read::reader::EMBEDDED_MODEL;
use housenum::{Error, Reader};

fn sample(n: usize) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("data/samples/sample-{n}.png"))
}

#[test]
fn reader_applies_the_calibration_in_the_metadata() {
    // Every framing read by both: the early exit decides on calibrated confidences, so two
    // calibrations may read a photo under different framings.
    let mut raw = Reader::embedded().unwrap();
    raw.set_calibration(Calibration::IDENTITY);
    raw.set_early_exit(None);
    let cal = Calibration { a: 0.5, b: 1.25 };
    let bytes = with_metadata(
        EMBEDDED_MODEL,
        CALIBRATION_KEY,
        &serde_json::to_string(&cal).unwrap(),
    )
    .unwrap();
    let mut calibrated = Reader::from_bytes(&bytes, Path::new("cal.onnx")).unwrap();
    calibrated.set_early_exit(None);
    assert_eq!(calibrated.calibration(), cal);
    let mut changed = 0;
    for n in 1..=6 {
        let (r, c) = (
            raw.read_file(&sample(n)).unwrap(),
            calibrated.read_file(&sample(n)).unwrap(),
        );
        assert_eq!(r.digits, c.digits);
        assert_eq!(r.log_prob, c.log_prob, "the raw score is never calibrated");
        assert!((c.confidence - cal.apply(r.log_prob)).abs() < 1e-6);
        // Readings the model is all but certain of stay at 1 under any such map.
        changed += usize::from((c.confidence - r.confidence).abs() > 1e-3);
    }
    assert!(changed > 0, "the map must change some confidences");
    // Writing the key again replaces it.
    let again = with_metadata(&bytes, CALIBRATION_KEY, r#"{"a":1.0,"b":0.0}"#).unwrap();
    let r2 = Reader::from_bytes(&again, Path::new("cal2.onnx")).unwrap();
    assert_eq!(r2.calibration(), Calibration::IDENTITY);
}

#[test]
fn malformed_calibration_metadata_is_an_error_naming_the_model() {
    let bytes = with_metadata(EMBEDDED_MODEL, CALIBRATION_KEY, "not json").unwrap();
    let err = Reader::from_bytes(&bytes, Path::new("bad-cal.onnx")).unwrap_err();
    assert!(matches!(err, Error::Model { .. }), "{err}");
    assert!(err.to_string().contains("bad-cal.onnx"), "{err}");
    assert!(with_metadata(b"garbage", CALIBRATION_KEY, "{}").is_err());
}
