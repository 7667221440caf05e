//! The exact text of a decimal value, for the dialects' literals.

/// `unscaled` (an integer's text, maybe negative) with `scale` digits after
/// the point: `("-1234", 2)` is `-12.34`, `("5", 3)` is `0.005`.
pub(crate) fn decimal_text(unscaled: &str, scale: usize) -> String {
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", unscaled),
    };
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (integer, fraction) = padded.split_at(padded.len() - scale);
    if fraction.is_empty() {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    }
}

/// The number of digits of an unscaled integer's text.
pub(crate) fn digit_count(unscaled: &str) -> usize {
    unscaled.trim_start_matches('-').len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_the_point_and_pads_with_zeros() {
        assert_eq!(decimal_text("-1234", 2), "-12.34");
        assert_eq!(decimal_text("5", 3), "0.005");
        assert_eq!(decimal_text("-5", 3), "-0.005");
        assert_eq!(decimal_text("42", 0), "42");
        assert_eq!(digit_count("-1234"), 4);
    }
}
