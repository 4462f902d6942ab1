//! Time-based one-time passwords (RFC 6238) for the second factor of physicians and admins: six digits,
//! 30-second steps, HMAC-SHA1, which is what every common authenticator app implements. Pure: the time
//! is a parameter.
//!
//! A code is accepted for the current step and one step either side (clock drift on phones), and each
//! step is accepted once per user (the store keeps the last step used), so a code seen over a shoulder
//! cannot be replayed.
//!
//! Secrets are sealed at rest ([`seal`], [`open`]): ChaCha20-Poly1305 under a key derived from the
//! configured audit key with its own label, so a copy of the database alone does not yield them.
//! Rotating the audit key therefore voids enrolments (an admin resets them; people enrol again).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use refill_store::AuditKey;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha1::Sha1;
use sha2::Sha256;

/// Seconds per step (RFC 6238 default; authenticator apps assume it).
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const DRIFT_STEPS: i64 = 1;

/// A new random secret: 20 bytes (the HMAC-SHA1 block recommendation of RFC 4226), base32 encoded.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    base32_encode(&bytes)
}

/// The secret offered to the person signed in with the session whose token hashes to `session_sha256`:
/// HMAC-SHA256 of the session under a key derived from the audit key (its own label), first 20 bytes,
/// base32. The server computes it again when the code comes back, so the enrolled secret is always the
/// server's (never one the client posts) and nothing is stored before enrolment. A new session offers
/// a new secret.
pub fn enrolment_secret(key: &AuditKey, session_sha256: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"refill-clinic second-factor enrolment v1\0");
    mac.update(session_sha256.as_bytes());
    let bytes = mac.finalize().into_bytes();
    base32_encode(&bytes[..20])
}

/// The `otpauth://` URI an authenticator app reads (typed or scanned): issuer and account label.
pub fn provisioning_uri(secret: &str, issuer: &str, account: &str) -> String {
    let issuer = crate::percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        crate::percent_encode(account)
    )
}

/// The step of a Unix time in seconds.
pub fn step_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// The code of `step` for a base32 `secret`; `None` when the secret is not valid base32.
pub fn code_at(secret: &str, step: i64) -> Option<u32> {
    let key = base32_decode(secret)?;
    Some(hotp(&key, step as u64, DIGITS))
}

/// The step `code` matches at `unix_seconds` (within the drift window), if any. The caller must still
/// check that the step is later than the last one the user used.
pub fn matching_step(secret: &str, code: &str, unix_seconds: i64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let key = base32_decode(secret)?;
    let now = step_of(unix_seconds);
    (now - DRIFT_STEPS..=now + DRIFT_STEPS).find(|step| *step >= 0 && hotp(&key, *step as u64, DIGITS) == wanted)
}

/// The prefix of a sealed secret (a stored value without it is a plain secret from before sealing).
const SEALED_PREFIX: &str = "v1.";

/// The sealing key: HMAC-SHA256 of a fixed label under the audit key (key separation: the audit chain
/// and the secrets never share a key directly).
fn sealing_key(key: &AuditKey) -> LessSafeKey {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"refill-clinic second-factor secret v1");
    let bytes = mac.finalize().into_bytes();
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("32-byte key"))
}

/// Seal a base32 secret for storage: `v1.` and base64url(nonce ‖ ciphertext ‖ tag).
pub fn seal(key: &AuditKey, secret: &str) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut sealed = secret.as_bytes().to_vec();
    sealing_key(key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(SEALED_PREFIX), &mut sealed)
        .expect("ChaCha20-Poly1305 seals any length");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    format!("{SEALED_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
}

/// The secret of a stored value: unsealed, or as is when stored before sealing; `None` when it does not
/// open under this key (tampered, or sealed under another audit key).
pub fn open(key: &AuditKey, stored: &str) -> Option<String> {
    let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else { return Some(stored.to_string()) };
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let mut ciphertext = bytes.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
    let plain = sealing_key(key).open_in_place(nonce, Aad::from(SEALED_PREFIX), &mut ciphertext).ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// HOTP (RFC 4226 §5.3): HMAC-SHA1 of the counter, dynamic truncation, modulo 10^digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary =
        u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    binary % 10u32.pow(digits)
}

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what authenticator apps expect).
fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32_ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decode base32, ignoring case, spaces and padding (people type secrets in groups).
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = BASE32_ALPHABET.iter().position(|a| char::from(*a) == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the secret is ASCII "12345678901234567890"; the RFC lists eight
    /// digits, six-digit codes are their last six.
    #[test]
    fn reproduces_the_rfc_6238_test_vectors() {
        let secret = base32_encode(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (time, eight_digits) in [
            (59, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(code_at(&secret, step_of(time)), Some(eight_digits % 1_000_000), "t = {time}");
        }
    }

    #[test]
    fn accepts_one_step_of_drift_and_nothing_else() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = |step: i64| format!("{:06}", code_at(&secret, step).unwrap());
        let current = step_of(now);
        assert_eq!(matching_step(&secret, &code(current), now), Some(current));
        assert_eq!(matching_step(&secret, &code(current - 1), now), Some(current - 1));
        assert_eq!(matching_step(&secret, &code(current + 1), now), Some(current + 1));
        // Two steps away: refused (unless it happens to collide with a code in the window).
        let far = code(current - 2);
        if ![current - 1, current, current + 1].iter().any(|s| code(*s) == far) {
            assert_eq!(matching_step(&secret, &far, now), None);
        }
        assert_eq!(matching_step(&secret, "12345", now), None, "too short");
        assert_eq!(matching_step(&secret, "12a456", now), None, "not digits");
    }

    #[test]
    fn base32_round_trips_and_tolerates_how_people_type() {
        let bytes: Vec<u8> = (0u8..=40).collect();
        let text = base32_encode(&bytes);
        assert_eq!(base32_decode(&text).unwrap(), bytes);
        let grouped: String = text
            .to_lowercase()
            .chars()
            .collect::<Vec<_>>()
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(base32_decode(&grouped).unwrap(), bytes);
        assert_eq!(base32_decode("not base32!"), None);
        assert_eq!(new_secret().len(), 32);
    }

    #[test]
    fn sealed_secrets_open_only_under_their_key() {
        let key = AuditKey::new("an-audit-key-of-at-least-32-characters!!");
        let secret = new_secret();
        let sealed = seal(&key, &secret);
        assert!(sealed.starts_with("v1.") && !sealed.contains(&secret), "{sealed}");
        assert_ne!(sealed, seal(&key, &secret), "a fresh nonce each time");
        assert_eq!(open(&key, &sealed).as_deref(), Some(secret.as_str()));
        let other = AuditKey::new("another-audit-key-of-at-least-32-chars!!");
        assert_eq!(open(&other, &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(&key, &String::from_utf8(tampered).unwrap()), None);
        assert_eq!(open(&key, "JBSWY3DPEHPK3PXP").as_deref(), Some("JBSWY3DPEHPK3PXP"), "stored before sealing");
    }

    #[test]
    fn the_provisioning_uri_names_issuer_and_account() {
        let uri = provisioning_uri("ABC", "Northside Care", "dr.okafor");
        assert_eq!(
            uri,
            "otpauth://totp/Northside%20Care:dr.okafor?secret=ABC&issuer=Northside%20Care&algorithm=SHA1&digits=6&period=30"
        );
    }
}
