//! Accounts for the web screens: users and roles, server-side sessions (people and wall displays),
//! sign-in attempts for rate limiting, break-glass grants for 42 CFR Part 2 records, who has a queue
//! row open, and the screen change counter that live updates poll.
//!
//! Every time is Unix epoch milliseconds passed in by the caller, so tests drive the clock. Session
//! tokens and wall enrolment codes never reach the database: callers pass their SHA-256.

use sqlx::FromRow;

use crate::AuditEvent;
use crate::store::{with_read_pool, with_tx};
use crate::{Pools, Store, StoreError, Tx};

/// Run `$body` with `$pool` bound to the writer (the single SQLite writer, or the PostgreSQL pool).
/// Only for single statements: several statements that belong together go through `Store::begin`.
macro_rules! on_write {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { write: $pool, .. } => $body,
            Pools::Postgres($pool) => $body,
        }
    };
}

/// What a person may do. Checked on every route by the web crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Staff,
    Physician,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Staff, Role::Physician, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Physician => "physician",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

#[derive(Debug, Clone, FromRow)]
struct UserRow {
    id: i64,
    username: String,
    display_name: String,
    role: String,
    password_hash: String,
    totp_secret: Option<String>,
    password_changed_at_ms: i64,
    disabled_at_ms: Option<i64>,
}

/// A person who signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// PHC string of the argon2id hash. Never shown, never logged.
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub password_changed_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
}

impl User {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at_ms.is_some()
    }

    /// Initials for the wall display and the "working this row" badge.
    pub fn initials(&self) -> String {
        self.display_name.split_whitespace().filter_map(|part| part.chars().next()).collect::<String>().to_uppercase()
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<User, StoreError> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| StoreError::Corrupt(format!("users.role of user {} is {:?}", row.id, row.role)))?;
        Ok(User {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            role,
            password_hash: row.password_hash,
            totp_secret: row.totp_secret,
            password_changed_at_ms: row.password_changed_at_ms,
            disabled_at_ms: row.disabled_at_ms,
        })
    }
}

/// A user to create; the password is already hashed by the caller (argon2id, off the async executor).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, password_hash, totp_secret, password_changed_at_ms, disabled_at_ms";

/// Create a user, with its `account.created` audit event by `actor`, in one transaction.
///
/// # Errors
/// `Duplicate` when the username is taken.
pub async fn create_user(store: &Store, new: &NewUser, now_ms: i64, actor: &crate::Actor) -> Result<User, StoreError> {
    let sql = format!(
        "INSERT INTO users (username, display_name, role, password_hash, created_at_ms, password_changed_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {USER_COLUMNS}"
    );
    let mut tx = store.begin().await?;
    let row: UserRow = with_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&new.username)
        .bind(&new.display_name)
        .bind(new.role.as_str())
        .bind(&new.password_hash)
        .bind(now_ms)
        .fetch_one(conn)
        .await?);
    let user = User::try_from(row)?;
    let event = AuditEvent::new(actor, "account.created", "user")
        .resource_id(user.id.to_string())
        .after(serde_json::json!({ "role": user.role.as_str() }));
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn find_user_by_username(store: &Store, username: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    let row: Option<UserRow> = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(username).fetch_optional(pool).await?);
    row.map(User::try_from).transpose()
}

pub async fn get_user(store: &Store, user_id: i64) -> Result<User, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row: Option<UserRow> = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(pool).await?);
    row.map(User::try_from).transpose()?.ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))
}

pub async fn list_users(store: &Store) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
    let rows: Vec<UserRow> =
        with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?);
    rows.into_iter().map(User::try_from).collect()
}

/// Replace a user's password hash and end every session of that user (ASVS 7.4.3), with its audit
/// event by `actor`, in one transaction.
pub async fn set_password_hash(
    store: &Store,
    user_id: i64,
    password_hash: &str,
    now_ms: i64,
    actor: &crate::Actor,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let changed = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE users SET password_hash = $1, password_changed_at_ms = $2 WHERE id = $3")
        .bind(password_hash)
        .bind(now_ms)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected());
    if changed == 0 {
        tx.rollback().await?;
        return Err(StoreError::NotFound(format!("user {user_id}")));
    }
    end_user_sessions_in(&mut tx, user_id, now_ms, "password changed").await?;
    let event = AuditEvent::new(actor, "account.password_changed", "user").resource_id(user_id.to_string());
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await
}

/// Store a fresh argon2id hash after sign-in when the stored one used outdated parameters. Unlike a
/// password change this keeps sessions (the password itself did not change).
pub async fn rehash_password(store: &Store, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
    on_write!(store, pool => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// Disable (or re-enable) a user; disabling ends every session of that user (ASVS 7.4.2). Audited as
/// done by `actor`, in the same transaction.
pub async fn set_disabled(
    store: &Store,
    user_id: i64,
    disabled: bool,
    now_ms: i64,
    actor: &crate::Actor,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let disabled_at = disabled.then_some(now_ms);
    let changed = with_tx!(&mut tx, conn => sqlx::query("UPDATE users SET disabled_at_ms = $1 WHERE id = $2")
        .bind(disabled_at)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected());
    if changed == 0 {
        tx.rollback().await?;
        return Err(StoreError::NotFound(format!("user {user_id}")));
    }
    if disabled {
        end_user_sessions_in(&mut tx, user_id, now_ms, "account disabled").await?;
    }
    let action = if disabled { "account.disabled" } else { "account.enabled" };
    store.append_audit(&mut tx, &AuditEvent::new(actor, action, "user").resource_id(user_id.to_string())).await?;
    tx.commit().await
}

/// Change a user's role, ending every session of that user (the next sign-in carries the new role),
/// with its audit event (role before and after) by `actor`, in one transaction.
///
/// # Errors
/// `NotFound` when there is no such user.
pub async fn set_role(
    store: &Store,
    user_id: i64,
    role: Role,
    now_ms: i64,
    actor: &crate::Actor,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let before: Option<String> = with_tx!(&mut tx, conn => sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?);
    let Some(before) = before else {
        tx.rollback().await?;
        return Err(StoreError::NotFound(format!("user {user_id}")));
    };
    with_tx!(&mut tx, conn => sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
        .bind(role.as_str())
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected());
    end_user_sessions_in(&mut tx, user_id, now_ms, "role changed").await?;
    let event = AuditEvent::new(actor, "account.role_changed", "user")
        .resource_id(user_id.to_string())
        .before(serde_json::json!({ "role": before }))
        .after(serde_json::json!({ "role": role.as_str() }));
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await
}

/// Enrol (`Some`) or remove (`None`) a user's TOTP second factor (base32 secret), with its audit event,
/// in one transaction. `actor` is the user themself, or an admin resetting a lost authenticator. The
/// last-used step is cleared with it, so a new enrolment starts clean. The secret itself is never
/// written to the audit trail. When someone else (an admin) removes it, that person's sessions end.
pub async fn set_totp_secret(
    store: &Store,
    user_id: i64,
    secret: Option<&str>,
    actor: &crate::Actor,
    reason: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let changed = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE id = $2")
        .bind(secret)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected());
    if changed == 0 {
        tx.rollback().await?;
        return Err(StoreError::NotFound(format!("user {user_id}")));
    }
    // Someone else removing a person's factor (an admin's reset) ends that person's sessions: a stolen
    // session must not be left to enrol a factor of its own.
    if secret.is_none() && actor.id != format!("user:{user_id}") {
        end_user_sessions_in(&mut tx, user_id, now_ms, "second factor reset").await?;
    }
    let action = if secret.is_some() { "account.second_factor.enrolled" } else { "account.second_factor.removed" };
    let event = AuditEvent::new(actor, action, "user").resource_id(user_id.to_string()).reason(reason);
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await
}

/// Use TOTP step `step` for `user_id`: true when it is later than every step used before (and is now
/// the last used), false for a replay. One conditional update, so two sign-ins racing with the same
/// code cannot both succeed.
pub async fn use_totp_step(store: &Store, user_id: i64, step: i64) -> Result<bool, StoreError> {
    let updated = on_write!(store, pool => sqlx::query(
        "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_secret IS NOT NULL \
         AND (totp_last_step IS NULL OR totp_last_step < $1)")
        .bind(step)
        .bind(user_id)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(updated == 1)
}

async fn end_user_sessions_in(tx: &mut Tx, user_id: i64, now_ms: i64, reason: &str) -> Result<u64, StoreError> {
    let ended = with_tx!(tx, conn => sqlx::query(
        "UPDATE web_sessions SET ended_at_ms = $1, ended_reason = $2 WHERE user_id = $3 AND ended_at_ms IS NULL")
        .bind(now_ms)
        .bind(reason)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected());
    Ok(ended)
}

/// End every open session of a user (admin action, sign-out everywhere).
pub async fn end_user_sessions(store: &Store, user_id: i64, now_ms: i64, reason: &str) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    let ended = end_user_sessions_in(&mut tx, user_id, now_ms, reason).await?;
    tx.commit().await?;
    Ok(ended)
}

/// A person's session or a wall display's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Person,
    Wall,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Person => "person",
            SessionKind::Wall => "wall",
        }
    }
}

/// A session as the web layer checks it on every request.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub token_sha256: String,
    pub kind: SessionKind,
    /// The person signed in (None for a wall display).
    pub user: Option<User>,
    pub label: Option<String>,
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(Debug, FromRow)]
struct SessionRow {
    token_sha256: String,
    kind: String,
    label: Option<String>,
    csrf_token: String,
    created_at_ms: i64,
    last_seen_at_ms: i64,
    expires_at_ms: i64,
    id: Option<i64>,
    username: Option<String>,
    display_name: Option<String>,
    role: Option<String>,
    password_hash: Option<String>,
    totp_secret: Option<String>,
    password_changed_at_ms: Option<i64>,
    disabled_at_ms: Option<i64>,
}

/// A new person session (sign-in). The caller has already ended the pre-sign-in session, if any, so
/// the token changes at sign-in.
pub async fn create_person_session(
    store: &Store,
    token_sha256: &str,
    user_id: i64,
    csrf_token: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    on_write!(store, pool => sqlx::query(
        "INSERT INTO web_sessions (token_sha256, kind, user_id, csrf_token, created_at_ms, last_seen_at_ms, expires_at_ms) \
         VALUES ($1, 'person', $2, $3, $4, $4, $5)")
        .bind(token_sha256)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// The open session with this token hash (not ended; expiry is judged by the caller, which knows the
/// idle limit), with its user.
pub async fn load_session(store: &Store, token_sha256: &str) -> Result<Option<SessionRecord>, StoreError> {
    let row: Option<SessionRow> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT s.token_sha256, s.kind, s.label, s.csrf_token, s.created_at_ms, s.last_seen_at_ms, s.expires_at_ms, \
                u.id, u.username, u.display_name, u.role, u.password_hash, u.totp_secret, \
                u.password_changed_at_ms, u.disabled_at_ms \
         FROM web_sessions s LEFT JOIN users u ON u.id = s.user_id \
         WHERE s.token_sha256 = $1 AND s.ended_at_ms IS NULL")
        .bind(token_sha256)
        .fetch_optional(pool)
        .await?);
    let Some(row) = row else { return Ok(None) };
    let kind = match row.kind.as_str() {
        "person" => SessionKind::Person,
        "wall" => SessionKind::Wall,
        other => return Err(StoreError::Corrupt(format!("web_sessions.kind is {other:?}"))),
    };
    let user = match (row.id, row.username, row.display_name, row.role, row.password_hash) {
        (Some(id), Some(username), Some(display_name), Some(role), Some(password_hash)) => {
            Some(User::try_from(UserRow {
                id,
                username,
                display_name,
                role,
                password_hash,
                totp_secret: row.totp_secret,
                password_changed_at_ms: row.password_changed_at_ms.unwrap_or_default(),
                disabled_at_ms: row.disabled_at_ms,
            })?)
        }
        _ => None,
    };
    Ok(Some(SessionRecord {
        token_sha256: row.token_sha256,
        kind,
        user,
        label: row.label,
        csrf_token: row.csrf_token,
        created_at_ms: row.created_at_ms,
        last_seen_at_ms: row.last_seen_at_ms,
        expires_at_ms: row.expires_at_ms,
    }))
}

/// Record activity on a person's session (the idle clock restarts).
pub async fn touch_session(store: &Store, token_sha256: &str, now_ms: i64) -> Result<(), StoreError> {
    on_write!(store, pool => sqlx::query(
        "UPDATE web_sessions SET last_seen_at_ms = $1 WHERE token_sha256 = $2 AND ended_at_ms IS NULL")
        .bind(now_ms)
        .bind(token_sha256)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

#[derive(FromRow)]
struct EndedSession {
    user_id: Option<i64>,
    role: Option<String>,
}

/// End one session (sign-out, idle or absolute timeout, revocation), with an `auth.session_ended`
/// audit event naming the reason, in one transaction.
pub async fn end_session(store: &Store, token_sha256: &str, now_ms: i64, reason: &str) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let ended = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE web_sessions SET ended_at_ms = $1, ended_reason = $2 WHERE token_sha256 = $3 AND ended_at_ms IS NULL")
        .bind(now_ms)
        .bind(reason)
        .bind(token_sha256)
        .execute(conn)
        .await?
        .rows_affected());
    if ended == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let whose: EndedSession = with_tx!(&mut tx, conn => sqlx::query_as(
        "SELECT s.user_id, u.role FROM web_sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = $1")
        .bind(token_sha256)
        .fetch_one(conn)
        .await?);
    let actor = match (whose.user_id, whose.role) {
        (Some(id), Some(role)) => crate::Actor::new(format!("user:{id}"), role),
        _ => crate::Actor::new("wall", "wall"),
    };
    // The session is named by a prefix of its token's hash, as the admin screen names wall sessions.
    let event = AuditEvent::new(&actor, "auth.session_ended", "session")
        .resource_id(token_sha256.chars().take(16).collect::<String>())
        .reason(reason);
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Issue a one-time enrolment code for a wall display (the monitor redeems it once), with its
/// `wall.code_issued` audit event by `actor`, in one transaction.
pub async fn issue_wall_code(
    store: &Store,
    code_sha256: &str,
    label: &str,
    issued_by: Option<i64>,
    now_ms: i64,
    expires_at_ms: i64,
    actor: &crate::Actor,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO wall_codes (code_sha256, label, issued_by, issued_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(code_sha256)
        .bind(label)
        .bind(issued_by)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(conn)
        .await?
        .rows_affected());
    let event = AuditEvent::new(actor, "wall.code_issued", "wall_code")
        .resource_id(code_sha256.chars().take(16).collect::<String>())
        .detail(serde_json::json!({ "label": label, "expires_at_ms": expires_at_ms }));
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await
}

#[derive(Debug, FromRow)]
struct WallCodeRow {
    label: String,
    issued_by: Option<i64>,
}

/// Redeem an enrolment code: mark it used and open the wall session, in one transaction.
///
/// # Errors
/// `NotFound` when the code is unknown, used or expired.
pub async fn redeem_wall_code(
    store: &Store,
    code_sha256: &str,
    session_token_sha256: &str,
    csrf_token: &str,
    now_ms: i64,
    session_expires_at_ms: i64,
) -> Result<String, StoreError> {
    let mut tx = store.begin().await?;
    let code: Option<WallCodeRow> = with_tx!(&mut tx, conn => sqlx::query_as(
        "UPDATE wall_codes SET used_at_ms = $1 WHERE code_sha256 = $2 AND used_at_ms IS NULL AND expires_at_ms > $1 \
         RETURNING label, issued_by")
        .bind(now_ms)
        .bind(code_sha256)
        .fetch_optional(conn)
        .await?);
    let Some(code) = code else {
        tx.rollback().await?;
        return Err(StoreError::NotFound("wall display code (unknown, used or expired)".into()));
    };
    with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO web_sessions (token_sha256, kind, label, issued_by, csrf_token, created_at_ms, last_seen_at_ms, expires_at_ms) \
         VALUES ($1, 'wall', $2, $3, $4, $5, $5, $6)")
        .bind(session_token_sha256)
        .bind(&code.label)
        .bind(code.issued_by)
        .bind(csrf_token)
        .bind(now_ms)
        .bind(session_expires_at_ms)
        .execute(conn)
        .await?
        .rows_affected());
    let event = AuditEvent::new(&crate::Actor::new("wall", "wall"), "wall.enrolled", "session")
        .resource_id(session_token_sha256.chars().take(16).collect::<String>())
        .detail(serde_json::json!({ "label": code.label, "code": code_sha256.chars().take(16).collect::<String>() }));
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(code.label)
}

/// A wall display's session as the admin screen lists it. `handle` (the first 16 hex digits of the
/// token hash) names it for revocation without exposing anything that would let someone use it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct WallSession {
    pub handle: String,
    pub label: Option<String>,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub expires_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

pub async fn list_wall_sessions(store: &Store) -> Result<Vec<WallSession>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT substr(token_sha256, 1, 16) AS handle, label, created_at_ms, last_seen_at_ms, expires_at_ms, ended_at_ms \
         FROM web_sessions WHERE kind = 'wall' ORDER BY created_at_ms DESC")
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// Revoke a wall display by its handle, audited as done by `actor`. Returns whether a live session was
/// ended.
pub async fn revoke_wall_session(
    store: &Store,
    handle: &str,
    now_ms: i64,
    actor: &crate::Actor,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let ended = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE web_sessions SET ended_at_ms = $1, ended_reason = 'revoked' \
         WHERE kind = 'wall' AND substr(token_sha256, 1, 16) = $2 AND ended_at_ms IS NULL")
        .bind(now_ms)
        .bind(handle)
        .execute(conn)
        .await?
        .rows_affected());
    if ended == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    store.append_audit(&mut tx, &AuditEvent::new(actor, "wall.revoked", "session").resource_id(handle)).await?;
    tx.commit().await?;
    Ok(true)
}

/// How many failed sign-ins one minute (or whatever window the caller counts) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBudget {
    /// Failures for one username from one address.
    pub per_account_and_ip: i64,
    /// Failures on existing accounts from one address (password spraying). Failures on usernames
    /// that do not exist never count here, so made-up names cannot lock a real person out.
    pub per_ip: i64,
}

/// Admit a sign-in attempt against the budget, atomically: the failures since `since_ms` are counted
/// and, when there is room, this attempt is recorded as a failure in the same transaction (the
/// SQLite writer lock, or an advisory lock on the address in PostgreSQL), before any password is
/// checked. Concurrent attempts therefore cannot all pass the count: at most the budget is checked.
/// Returns the attempt's id (for [`finish_login_attempt`]) or `None` when the budget is spent.
pub async fn admit_login_attempt(
    store: &Store,
    username: &str,
    client_ip: &str,
    since_ms: i64,
    now_ms: i64,
    budget: LoginBudget,
) -> Result<Option<i64>, StoreError> {
    let mut tx = store.begin().await?;
    if let Tx::Postgres(conn) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('login:' || $1))")
            .bind(client_ip)
            .execute(&mut **conn)
            .await?;
    }
    let counts: FailureCounts = with_tx!(&mut tx, conn => sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN a.username = $1 THEN 1 ELSE 0 END), 0) AS account_and_ip, \
                COALESCE(SUM(CASE WHEN u.id IS NOT NULL THEN 1 ELSE 0 END), 0) AS known_accounts \
         FROM login_attempts a LEFT JOIN users u ON u.username = a.username \
         WHERE a.client_ip = $2 AND a.attempted_at_ms >= $3 AND a.succeeded = 0")
        .bind(username)
        .bind(client_ip)
        .bind(since_ms)
        .fetch_one(&mut *conn)
        .await?);
    if counts.account_and_ip >= budget.per_account_and_ip || counts.known_accounts >= budget.per_ip {
        tx.rollback().await?;
        return Ok(None);
    }
    let id: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar(
        "INSERT INTO login_attempts (username, client_ip, attempted_at_ms, succeeded) VALUES ($1, $2, $3, 0) RETURNING id")
        .bind(username)
        .bind(client_ip)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?);
    tx.commit().await?;
    Ok(Some(id))
}

#[derive(FromRow)]
struct FailureCounts {
    account_and_ip: i64,
    known_accounts: i64,
}

/// Record how an admitted attempt ended, with its audit event (`auth.sign_in` or
/// `auth.sign_in_failed`), in one transaction. A failure stays counted against the budget.
pub async fn finish_login_attempt(
    store: &Store,
    attempt_id: i64,
    succeeded: bool,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    if succeeded {
        with_tx!(&mut tx, conn => sqlx::query("UPDATE login_attempts SET succeeded = 1 WHERE id = $1")
            .bind(attempt_id)
            .execute(conn)
            .await?
            .rows_affected());
    }
    store.append_audit(&mut tx, event).await?;
    tx.commit().await
}

/// A break-the-glass grant: one user, one patient, a reason, until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct BreakGlassGrant {
    pub id: i64,
    pub user_id: i64,
    pub patient_id: i64,
    pub reason: String,
    pub granted_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Record a grant inside the caller's transaction, so its audit event commits with it.
pub async fn grant_break_glass(
    tx: &mut Tx,
    user_id: i64,
    patient_id: i64,
    reason: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<BreakGlassGrant, StoreError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(StoreError::Corrupt("break-glass reason is empty".into()));
    }
    let grant = with_tx!(tx, conn => sqlx::query_as(
        "INSERT INTO break_glass_grants (user_id, patient_id, reason, granted_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id, user_id, patient_id, reason, granted_at_ms, expires_at_ms")
        .bind(user_id)
        .bind(patient_id)
        .bind(reason)
        .bind(now_ms)
        .bind(expires_at_ms)
        .fetch_one(conn)
        .await?);
    Ok(grant)
}

/// The grant in force for this user and patient, if any.
pub async fn active_break_glass(
    store: &Store,
    user_id: i64,
    patient_id: i64,
    now_ms: i64,
) -> Result<Option<BreakGlassGrant>, StoreError> {
    let grant = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT id, user_id, patient_id, reason, granted_at_ms, expires_at_ms FROM break_glass_grants \
         WHERE user_id = $1 AND patient_id = $2 AND expires_at_ms > $3 ORDER BY expires_at_ms DESC LIMIT 1")
        .bind(user_id)
        .bind(patient_id)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?);
    Ok(grant)
}

/// Grants made in `[from_ms, to_ms)`, for the physician digest and the daily audit review.
pub async fn break_glass_grants_between(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<BreakGlassGrant>, StoreError> {
    let grants = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT id, user_id, patient_id, reason, granted_at_ms, expires_at_ms FROM break_glass_grants \
         WHERE granted_at_ms >= $1 AND granted_at_ms < $2 ORDER BY granted_at_ms")
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await?);
    Ok(grants)
}

/// One change a screen should show.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct ScreenChange {
    pub seq: i64,
    pub patient_id: Option<i64>,
    pub kind: String,
    pub actor: Option<String>,
    pub changed_at_ms: i64,
}

/// Note a change inside the writer's transaction (a staff action, a decision, a pipeline chunk), so
/// screens in every process pick it up. `actor` is a display name, never patient data.
pub async fn record_screen_change(
    tx: &mut Tx,
    patient_id: Option<i64>,
    kind: &str,
    actor: Option<&str>,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let seq: i64 = with_tx!(tx, conn => sqlx::query_scalar(
        "INSERT INTO screen_changes (patient_id, kind, actor, changed_at_ms) VALUES ($1, $2, $3, $4) RETURNING seq")
        .bind(patient_id)
        .bind(kind)
        .bind(actor)
        .bind(now_ms)
        .fetch_one(conn)
        .await?);
    Ok(seq)
}

/// The newest change number (0 before any change).
pub async fn latest_screen_change(store: &Store) -> Result<i64, StoreError> {
    let seq: Option<i64> = with_read_pool!(store, pool => sqlx::query_scalar("SELECT MAX(seq) FROM screen_changes").fetch_one(pool).await?);
    Ok(seq.unwrap_or(0))
}

/// Changes after `after_seq`, oldest first, at most `limit`.
pub async fn screen_changes_after(store: &Store, after_seq: i64, limit: i64) -> Result<Vec<ScreenChange>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT seq, patient_id, kind, actor, changed_at_ms FROM screen_changes WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// What was recorded on one patient since `since_ms` (presence marks left out), newest first, at most
/// `limit`: a desk told that another is on the row also learns what that desk already did.
pub async fn patient_screen_changes(
    store: &Store,
    patient_id: i64,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<ScreenChange>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT seq, patient_id, kind, actor, changed_at_ms FROM screen_changes \
         WHERE patient_id = $1 AND changed_at_ms >= $2 AND kind <> 'presence' ORDER BY seq DESC LIMIT $3")
        .bind(patient_id)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// Mark that a user has a queue row open (the side panel); replaces an older mark by the same user.
pub async fn open_row(store: &Store, patient_id: i64, user_id: i64, now_ms: i64) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    with_tx!(&mut tx, conn => sqlx::query("DELETE FROM row_presence WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected());
    with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO row_presence (patient_id, user_id, opened_at_ms) VALUES ($1, $2, $3)")
        .bind(patient_id)
        .bind(user_id)
        .bind(now_ms)
        .execute(conn)
        .await?
        .rows_affected());
    record_screen_change(&mut tx, Some(patient_id), "presence", None, now_ms).await?;
    tx.commit().await
}

/// The user closed the side panel.
pub async fn close_rows(store: &Store, user_id: i64, now_ms: i64) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let closed: Vec<i64> = with_tx!(&mut tx, conn => sqlx::query_scalar(
        "DELETE FROM row_presence WHERE user_id = $1 RETURNING patient_id")
        .bind(user_id)
        .fetch_all(conn)
        .await?);
    for patient_id in closed {
        record_screen_change(&mut tx, Some(patient_id), "presence", None, now_ms).await?;
    }
    tx.commit().await
}

/// Who has a row open: (patient id, display name), for marks newer than `since_ms`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RowPresence {
    pub patient_id: i64,
    pub user_id: i64,
    pub display_name: String,
}

pub async fn row_presence(store: &Store, since_ms: i64) -> Result<Vec<RowPresence>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT p.patient_id, p.user_id, u.display_name FROM row_presence p JOIN users u ON u.id = p.user_id \
         WHERE p.opened_at_ms >= $1 ORDER BY p.opened_at_ms")
        .bind(since_ms)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}
