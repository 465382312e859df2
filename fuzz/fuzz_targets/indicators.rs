#![no_main]
// Indicator normalization on arbitrary strings (values added through the API and every field
// the parsers read): never panics, and its output is a fixed point.
use calseta::domain::indicator::{normalize, IndicatorType};


libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let kind = IndicatorType::ALL[selector as usize % IndicatorType::ALL.len()];
    if let Ok(values) = normalize(kind, text) {
        for (t, v) in values {
            let again = normalize(t, &v).expect("normalized value re-normalizes");
            assert_eq!(again, vec![(t, v.clone())], "not a fixed point: {kind:?} {text:?}");
        }
    }
});
