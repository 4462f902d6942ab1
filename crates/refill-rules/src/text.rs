//! Text helpers for the per-decision paths, where codes and names are read for every order and result.

use std::borrow::Cow;
use std::hash::{BuildHasherDefault, Hasher};

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

/// The hasher of the tables' lookups. The keys are short codes and names from our own tables (no
/// untrusted key flooding), and the lookups run for every order and result line in every refill
/// decision, where SipHash, and then FNV-1a's byte-at-a-time loop, were a visible share of the time.
/// This one reads the key a word at a time (overlapping reads cover every byte, and the length is
/// mixed in) and multiplies, in the style of rustc's FxHash.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

/// An odd constant with well-spread bits (from FxHash).
const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl WordHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        // The multiplication leaves the low bits weakest; hash tables index by them.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        let half = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes")));
        if len >= 8 {
            let mut at = 0;
            while at + 8 < len {
                self.mix(word(at));
                at += 8;
            }
            self.mix(word(len - 8));
        } else if len >= 4 {
            self.mix(half(0) | (half(len - 4) << 32));
        } else if len > 0 {
            self.mix(u64::from(bytes[0]) | (u64::from(bytes[len / 2]) << 8) | (u64::from(bytes[len - 1]) << 16));
        }
        self.mix(len as u64);
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }
}

pub(crate) type FastHash = BuildHasherDefault<WordHasher>;

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

    #[test]
    fn the_hasher_sees_every_byte() {
        use std::hash::BuildHasher;
        let hash = |text: &str| FastHash::default().hash_one(text);
        let keys = ["", "a", "ab", "ba", "abc", "acb", "opiates", "opiatez", "oxycodone", "oxycodonf", "1049621"];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(hash(a), hash(b), "{a:?} and {b:?}");
            }
        }
        // Every single-byte change of a longer key changes the hash.
        let base = "lc-ms/ms benzoylecgonine";
        for at in 0..base.len() {
            let mut changed = base.as_bytes().to_vec();
            changed[at] ^= 1;
            assert_ne!(hash(base), hash(std::str::from_utf8(&changed).unwrap()), "byte {at}");
        }
    }
}
