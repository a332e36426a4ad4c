//! The one source of truth for the output alphabet: class 0 is the CTC blank, digit `d` is class `d + 1`.

/// Number of output classes: the blank and the ten digits.
pub const NUM_CLASSES: usize = 11;
/// The class index of the CTC blank.
pub const BLANK: usize = 0;

/// Class index of digit `d` (0..=9).
pub fn class_of_digit(d: u8) -> usize {
    debug_assert!(d < 10);
    d as usize + 1
}

/// Digit of class `c` (1..=10), `None` for the blank or out-of-range classes.
pub fn digit_of_class(c: usize) -> Option<u8> {
    (1..NUM_CLASSES).contains(&c).then(|| (c - 1) as u8)
}

/// Normalise an SVHN label: SVHN writes the digit 0 as label 10. Returns `None` for labels
/// outside 0..=10.
pub fn digit_from_svhn_label(label: f64) -> Option<u8> {
    if !(label.is_finite() && label.fract() == 0.0) {
        return None;
    }
    match label as i64 {
        10 => Some(0),
        l @ 0..=9 => Some(l as u8),
        _ => None,
    }
}

/// Digits as text, e.g. `[1, 0, 3]` → `"103"`.
pub fn digits_to_string(digits: &[u8]) -> String {
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// Text to digits; `None` when a character is not an ASCII digit.
pub fn digits_from_str(s: &str) -> Option<Vec<u8>> {
    s.bytes()
        .map(|b| b.is_ascii_digit().then(|| b - b'0'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svhn_labels_table() {
        let cases = [
            (10.0, Some(0)),
            (1.0, Some(1)),
            (9.0, Some(9)),
            (0.0, Some(0)),
            (11.0, None),
            (-1.0, None),
            (2.5, None),
            (f64::NAN, None),
        ];
        let failures: Vec<_> = cases
            .iter()
            .filter(|(l, want)| digit_from_svhn_label(*l) != *want)
            .collect();
        assert!(failures.is_empty(), "failing cases: {failures:?}");
    }

    #[test]
    fn classes_round_trip() {
        for d in 0..10u8 {
            assert_eq!(digit_of_class(class_of_digit(d)), Some(d));
        }
        assert_eq!(digit_of_class(BLANK), None);
        assert_eq!(digit_of_class(NUM_CLASSES), None);
        assert_eq!(digits_to_string(&[1, 0, 3]), "103");
        assert_eq!(digits_from_str("103"), Some(vec![1, 0, 3]));
        assert_eq!(digits_from_str("1a"), None);
    }
}
