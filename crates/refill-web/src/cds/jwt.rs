//! The EHR's bearer JWT on CDS Hooks calls (CDS Hooks specification, "Trusting CDS Clients"):
//! asymmetric signatures only (`none` and HMAC are refused), `kid` and `typ: JWT` required, `iss` one
//! of the configured issuers, verified against that issuer's configured JWKS, `aud` the exact service
//! URL called, `exp`, `iat` and `jti` present, a `jti` never accepted twice while its token is live.
//!
//! Signatures are checked with `ring`, which the tree already builds for TLS: RS256/384/512 and
//! ES256/384 (JWS "fixed" r||s signatures), no JWT crate needed.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde_json::Value;

/// Clock skew allowed on `exp` and `iat`, seconds.
const LEEWAY_SECONDS: i64 = 60;

/// An issuer the clinic trusts, with its public keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedIssuer {
    pub iss: String,
    pub keys: Vec<Jwk>,
}

/// One public key of a JWKS.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwk {
    pub kid: String,
    key: PublicKey,
}

#[derive(Debug, Clone, PartialEq)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`) on P-256 or P-384.
    Ec {
        p384: bool,
        point: Vec<u8>,
    },
}

/// Read a JWKS document (`{"keys": [...]}`); keys of other types or curves are an error naming them.
///
/// # Errors
/// The problem, naming the key's position and field.
pub fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let keys = value.get("keys").and_then(Value::as_array).ok_or("keys: missing or not an array")?;
    keys.iter()
        .enumerate()
        .map(|(at, key)| {
            let field = |name: &str| -> Result<Vec<u8>, String> {
                let text = key.get(name).and_then(Value::as_str).ok_or(format!("keys[{at}].{name}: missing"))?;
                URL_SAFE_NO_PAD.decode(text).map_err(|_| format!("keys[{at}].{name}: not base64url"))
            };
            let kid = key.get("kid").and_then(Value::as_str).ok_or(format!("keys[{at}].kid: missing"))?;
            let parsed = match key.get("kty").and_then(Value::as_str) {
                Some("RSA") => PublicKey::Rsa { n: field("n")?, e: field("e")? },
                Some("EC") => {
                    let (p384, size) = match key.get("crv").and_then(Value::as_str) {
                        Some("P-256") => (false, 32),
                        Some("P-384") => (true, 48),
                        other => return Err(format!("keys[{at}].crv: {other:?} is not P-256 or P-384")),
                    };
                    let (x, y) = (field("x")?, field("y")?);
                    if x.len() != size || y.len() != size {
                        return Err(format!("keys[{at}]: x and y must be {size} bytes each"));
                    }
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    PublicKey::Ec { p384, point }
                }
                other => return Err(format!("keys[{at}].kty: {other:?} is not RSA or EC")),
            };
            Ok(Jwk { kid: kid.to_string(), key: parsed })
        })
        .collect()
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub iss: String,
    pub jti: String,
    pub exp: i64,
}

/// Verify `token` for a call to `audience` at `now` (Unix seconds). The replay check is separate
/// ([`ReplayGuard`]).
///
/// # Errors
/// Why the token is refused (logged; the caller answers 401 without the reason).
pub fn verify(token: &str, issuers: &[TrustedIssuer], audience: &str, now: i64) -> Result<Verified, String> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (three parts)".into());
    };
    let decode = |part: &str, what: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| format!("{what}: not base64url"));
    let header: Value = serde_json::from_slice(&decode(header_b64, "header")?).map_err(|_| "header: not JSON")?;
    let payload: Value = serde_json::from_slice(&decode(payload_b64, "payload")?).map_err(|_| "payload: not JSON")?;
    let signature_bytes = decode(signature_b64, "signature")?;

    let alg = header.get("alg").and_then(Value::as_str).ok_or("header.alg: missing")?;
    if header.get("typ").and_then(Value::as_str) != Some("JWT") {
        return Err("header.typ: must be JWT".into());
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or("header.kid: missing")?;
    let iss = payload.get("iss").and_then(Value::as_str).ok_or("payload.iss: missing")?;
    let issuer = issuers.iter().find(|i| i.iss == iss).ok_or_else(|| format!("payload.iss {iss:?}: not trusted"))?;
    let key = issuer.keys.iter().find(|k| k.kid == kid).ok_or_else(|| format!("header.kid {kid:?}: unknown"))?;
    let message = format!("{header_b64}.{payload_b64}");
    let verified = match (alg, &key.key) {
        ("RS256" | "RS384" | "RS512", PublicKey::Rsa { n, e }) => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n, e }.verify(params, message.as_bytes(), &signature_bytes).is_ok()
        }
        ("ES256", PublicKey::Ec { p384: false, point }) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message.as_bytes(), &signature_bytes)
                .is_ok()
        }
        ("ES384", PublicKey::Ec { p384: true, point }) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(message.as_bytes(), &signature_bytes)
                .is_ok()
        }
        ("none" | "HS256" | "HS384" | "HS512", _) => return Err(format!("header.alg {alg}: not asymmetric")),
        _ => return Err(format!("header.alg {alg}: does not match key {kid:?}")),
    };
    if !verified {
        return Err("signature: does not verify".into());
    }
    let audience_ok = match payload.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(format!("payload.aud: is not {audience:?}"));
    }
    let exp = payload.get("exp").and_then(Value::as_i64).ok_or("payload.exp: missing")?;
    if exp + LEEWAY_SECONDS < now {
        return Err("payload.exp: expired".into());
    }
    let iat = payload.get("iat").and_then(Value::as_i64).ok_or("payload.iat: missing")?;
    if iat - LEEWAY_SECONDS > now {
        return Err("payload.iat: in the future".into());
    }
    let jti = payload.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty()).ok_or("payload.jti: missing")?;
    Ok(Verified { iss: iss.to_string(), jti: jti.to_string(), exp })
}

/// The `jti`s seen, each kept until its token expires: a token is accepted once.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl ReplayGuard {
    /// `true` the first time `(iss, jti)` is seen while live; forgets expired entries as it goes.
    pub fn first_use(&self, verified: &Verified, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > 10_000 {
            seen.retain(|_, exp| *exp + LEEWAY_SECONDS >= now);
        }
        let key = (verified.iss.clone(), verified.jti.clone());
        match seen.get(&key) {
            Some(exp) if *exp + LEEWAY_SECONDS >= now => false,
            _ => {
                seen.insert(key, verified.exp);
                true
            }
        }
    }
}
