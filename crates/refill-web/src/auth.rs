//! Who is asking: password hashing (argon2id, off the async executor), session tokens and cookies, and
//! the middleware that turns the session cookie into a `Principal` for every request.
//!
//! Sessions are rows in the store, found by the SHA-256 of the cookie's token. A person's session ends
//! after `idle_timeout` without activity and `absolute_timeout` after sign-in; live-update requests
//! (`/events`, `/api/changes`) never count as activity. Wall displays have their own session kind,
//! exempt from the idle sign-out and limited to the wall view.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use rand::RngCore;
use refill_store::accounts::{self, Role, SessionKind, SessionRecord, User};
use sha2::{Digest, Sha256};

use crate::{AppState, WebError};

/// The signed-in party of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    Person { user: User, session: SessionRecord },
    Wall { session: SessionRecord },
}

impl Principal {
    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::Person { user, .. } => Some(user),
            _ => None,
        }
    }

    pub fn role(&self) -> Option<Role> {
        self.user().map(|user| user.role)
    }

    pub fn session(&self) -> Option<&SessionRecord> {
        match self {
            Principal::Person { session, .. } | Principal::Wall { session } => Some(session),
            Principal::Anonymous => None,
        }
    }

    /// The opaque actor id (and role) the store writes to rows and the audit trail.
    pub fn actor(&self) -> (String, &'static str) {
        match self {
            Principal::Person { user, .. } => (actor_id(user.id), user.role.as_str()),
            Principal::Wall { .. } => ("wall".into(), "wall"),
            Principal::Anonymous => ("anonymous".into(), "anonymous"),
        }
    }

    /// The signed-in person, or `Unauthenticated`.
    pub fn person(&self) -> Result<&User, WebError> {
        self.user().ok_or(WebError::Unauthenticated)
    }
}

/// `user:17`: how users appear in rows (`assigned_to`, `decided_by`) and the audit trail.
pub fn actor_id(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// The user id in an actor id written by `actor_id`.
pub fn parse_actor_id(actor: &str) -> Option<i64> {
    actor.strip_prefix("user:").and_then(|id| id.parse().ok())
}

/// 32 random bytes, URL-safe base64: session tokens, CSRF tokens, wall enrolment codes.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The session cookie's name: `__Host-` prefixed when cookies are `Secure` (the prefix requires it).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-refill_session" } else { "refill_session" }
}

/// `Set-Cookie` value for a session token (`None` clears it).
pub fn session_cookie(secure: bool, token: Option<&str>) -> String {
    let name = session_cookie_name(secure);
    let secure_attr = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict{secure_attr}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure_attr}"),
    }
}

/// The value of cookie `name` in the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Minimum password length (ASVS 6.2.1); no composition rules, no truncation, 64+ allowed.
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The weakest zxcvbn score a new password may have: 3 is "safely unguessable" (about 10^10 guesses),
/// which rules out the breached-password lists, keyboard walks, repeats, sequences and dictionary
/// words with digits on the end.
const MIN_PASSWORD_SCORE: u8 = 3;

/// zxcvbn's cost grows with length; the first 100 characters decide (a longer password is not weak
/// because of its tail).
const SCORED_PREFIX_CHARS: usize = 100;

/// The form a password is hashed and checked in: Unicode NFKC (NIST SP 800-63B 5.1.1.2), so the same
/// password typed on two keyboards (composed or decomposed accents, full-width digits) matches. ASCII
/// is unchanged, so hashes stored before normalisation still verify.
pub fn normalise_password(password: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    password.nfkc().collect()
}

/// Characters that print as nothing: a password of them cannot be typed back reliably and hides a
/// short one in a long one.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}')
}

/// Why a new password is refused, in words for the person choosing it. `context` holds what the
/// person's password must not be built from (username, display name, the clinic's name).
pub fn password_problem(password: &str, context: &[&str]) -> Option<String> {
    let password = normalise_password(password);
    if password.chars().any(is_invisible) {
        return Some("the password contains invisible or control characters".into());
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!("the password must have at least {MIN_PASSWORD_CHARS} characters"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Some(format!("the password must have at most {MAX_PASSWORD_CHARS} characters"));
    }
    if password.trim().is_empty() {
        return Some("the password must not be only spaces".into());
    }
    let scored: String = password.chars().take(SCORED_PREFIX_CHARS).collect();
    let estimate = zxcvbn::zxcvbn(&scored, context);
    if u8::from(estimate.score()) < MIN_PASSWORD_SCORE {
        let why = estimate.feedback().and_then(|feedback| feedback.warning()).map(|warning| warning.to_string());
        return Some(match why {
            Some(why) => {
                format!("that password is easy to guess ({}); try a few unrelated words", why.trim_end_matches('.'))
            }
            None => "that password is easy to guess; try a few unrelated words".into(),
        });
    }
    None
}

/// Hash a password with argon2id (RustCrypto defaults: m=19456 KiB, t=2, p=1) on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, WebError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(normalise_password(&password).as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| WebError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| WebError::Internal(format!("password hashing task failed: {e}")))?
}

/// A valid hash of a random password: verified against when the username is unknown, so the time a
/// failed sign-in takes does not reveal whether the account exists.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default().hash_password(random_token().as_bytes()).map(|hash| hash.to_string()).unwrap_or_default()
});

/// Check a password against a stored hash (or the dummy hash) on a blocking thread.
pub async fn verify_password(password: String, stored_hash: Option<String>) -> Result<bool, WebError> {
    tokio::task::spawn_blocking(move || {
        let hash = stored_hash.unwrap_or_else(|| DUMMY_HASH.clone());
        Ok(Argon2::default().verify_password(normalise_password(&password).as_bytes(), hash.as_str()).is_ok())
    })
    .await
    .map_err(|e| WebError::Internal(format!("password check task failed: {e}")))?
}

/// Paths whose requests are live updates: they never restart a person's idle clock.
pub fn is_live_update_path(path: &str) -> bool {
    path == "/events" || path == "/api/changes"
}

/// How often `last_seen` is written: the idle clock has a one-minute resolution, which keeps reads
/// from turning into writes on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Middleware: resolve the session cookie to a `Principal` (an extension on the request), ending
/// sessions that are idle, expired or belong to a disabled user.
pub async fn load_principal(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let principal = match resolve(&state, request.headers(), request.uri().path()).await {
        Ok(principal) => principal,
        Err(error) => return axum::response::IntoResponse::into_response(error),
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

async fn resolve(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Principal, WebError> {
    let settings = &state.settings;
    let Some(token) = cookie(headers, session_cookie_name(settings.secure_cookies)) else {
        return Ok(Principal::Anonymous);
    };
    let token_hash = sha256_hex(token);
    let Some(session) = accounts::load_session(&state.store, &token_hash).await? else {
        return Ok(Principal::Anonymous);
    };
    let now_ms = state.clock.now_ms();
    if now_ms >= session.expires_at_ms {
        accounts::end_session(&state.store, &token_hash, now_ms, "expired").await?;
        return Ok(Principal::Anonymous);
    }
    match session.kind {
        SessionKind::Wall => Ok(Principal::Wall { session }),
        SessionKind::Person => {
            let Some(user) = session.user.clone() else { return Ok(Principal::Anonymous) };
            if user.is_disabled() {
                accounts::end_session(&state.store, &token_hash, now_ms, "account disabled").await?;
                return Ok(Principal::Anonymous);
            }
            let idle_ms = i64::try_from(settings.idle_timeout.as_millis()).unwrap_or(i64::MAX);
            if now_ms - session.last_seen_at_ms >= idle_ms {
                accounts::end_session(&state.store, &token_hash, now_ms, "idle").await?;
                return Ok(Principal::Anonymous);
            }
            if !is_live_update_path(path) && now_ms - session.last_seen_at_ms >= TOUCH_EVERY_MS {
                accounts::touch_session(&state.store, &token_hash, now_ms).await?;
            }
            Ok(Principal::Person { user, session })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{normalise_password, password_problem};

    #[test]
    fn composed_and_decomposed_accents_are_the_same_password() {
        assert_eq!(normalise_password("caf\u{e9}-lantern-violet"), normalise_password("cafe\u{301}-lantern-violet"));
        assert_eq!(normalise_password("\u{ff21}bc"), "Abc", "full-width letters fold to ASCII");
    }

    #[test]
    fn unrelated_words_pass_and_the_person_s_own_names_do_not() {
        assert_eq!(password_problem("violet-harbour-lantern-9", &[]), None);
        assert!(password_problem("okafor-okafor-2026", &["okafor", "Dr. Okafor"]).is_some());
        assert!(password_problem("pass\u{200b}word-lantern-violet", &[]).is_some(), "invisible characters");
    }
}
