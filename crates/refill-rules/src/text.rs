//! Text helpers for the per-decision paths, where codes and names are read for every order and result.

use std::borrow::Cow;

/// `str::trim`, returning at once when neither end can be whitespace (an ASCII graphic character at both
/// ends), which is how codes and names usually arrive. The full trim checks every Unicode whitespace.
pub(crate) fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// `text.to_lowercase()`, borrowing `text` when lower-casing would not change it (ASCII without capitals).
pub(crate) fn lower_case(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_exactly_like_str_trim() {
        for text in ["", " ", "a", " a", "a ", "\ta\n", "1049621", "\u{a0}x\u{2003}", "é", "x\u{85}", " \u{3000} "] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn lower_cases_exactly_like_to_lowercase_and_borrows_when_it_can() {
        for text in ["", "lorazepam 1 MG", "ΣΑΣ", "İx", "\u{212a}elvin", "already lower", "MiXeD-Case 2"] {
            assert_eq!(lower_case(text), text.to_lowercase(), "{text:?}");
        }
        assert!(matches!(lower_case("lorazepam 1 mg oral tablet"), Cow::Borrowed(_)));
    }
}
