//! The findings of the security probe (issue 17), one test each, through the router on a real SQLite
//! file with a settable clock: Part 2 codes through the JSON API, the sign-in budget under concurrency
//! and behind a proxy, the message oracle, security events in the audit trail, break-glass reasons,
//! second-factor enrolment, weak passwords, page numbers, and what a wall display may read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Utc};
use refill_rules::{PatientId, ReasonCode};
use refill_store::accounts::{self, Role};
use refill_store::{Actor, AuditKey, PatientDetails, Store, StoreSettings};
use refill_web::auth::{random_token, sha256_hex};
use refill_web::{AppState, Clock, WebSettings, app};
use serde_json::json;
use tower::ServiceExt;

mod support;
use support::{Person, call, escalation, record_today};

const KEY: &[u8] = b"security-findings-key-security-key";
const PASSWORD: &str = "violet-harbour-lantern-9";

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
    now_ms: Arc<AtomicI64>,
}

impl Harness {
    async fn new() -> Harness {
        Harness::with_settings(WebSettings { secure_cookies: false, ..WebSettings::default() }).await
    }

    async fn with_settings(settings: WebSettings) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("security.db").display());
        let store = Store::connect(&StoreSettings::new(url, AuditKey::new(KEY))).await.expect("store");
        store.migrate().await.expect("migrate");
        let now_ms = Arc::new(AtomicI64::new(Utc::now().timestamp_millis()));
        let clock_ms = now_ms.clone();
        let clock = Clock::from_fn(move || {
            DateTime::from_timestamp_millis(clock_ms.load(Ordering::SeqCst)).unwrap_or_default()
        });
        let state =
            AppState::new(store, settings, refill_rules::policy::Policy::default(), "test".into()).with_clock(clock);
        Harness { _dir: dir, state, now_ms }
    }

    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    async fn send(&self, request: Request<Body>) -> axum::response::Response {
        app(self.state.clone()).oneshot(request).await.expect("router answers")
    }

    /// An account with `PASSWORD`, created the way the admin page creates one.
    async fn account(&self, username: &str, role: Role) -> accounts::User {
        refill_web::pages::admin::create_account(&self.state, username, "Test Person", role, PASSWORD, &Actor::system())
            .await
            .expect("account")
    }

    /// A session for `user`, made in the store (as if signed in now).
    async fn session_for(&self, user_id: i64) -> Person {
        let (token, csrf) = (random_token(), random_token());
        let now = self.now_ms();
        accounts::create_person_session(&self.state.store, &sha256_hex(&token), user_id, &csrf, now, now + 3_600_000)
            .await
            .expect("session");
        Person { cookie: format!("refill_session={token}"), csrf }
    }

    /// Sign in through the form from `peer` (with `extra` headers), as a browser does.
    async fn login_from(
        &self,
        peer: &str,
        extra: &[(&str, &str)],
        username: &str,
        password: &str,
        code: &str,
    ) -> axum::response::Response {
        let page = self.send(get("/login", None)).await;
        let set_cookie =
            page.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("login cookie").to_string();
        let token = set_cookie.split(';').next().and_then(|p| p.split_once('=')).map(|(_, v)| v.to_string());
        let token = token.expect("token");
        let body = format!(
            "username={}&password={}&code={code}&csrf={token}",
            support::urlencode(username),
            support::urlencode(password)
        );
        let mut builder = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::HOST, "localhost")
            .header(header::COOKIE, format!("refill_login_csrf={token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Body::from(body)).expect("request");
        let peer: SocketAddr = format!("{peer}:40000").parse().expect("peer address");
        request.extensions_mut().insert(ConnectInfo(peer));
        self.send(request).await
    }

    async fn login(&self, username: &str, password: &str, code: &str) -> axum::response::Response {
        self.login_from("10.0.0.7", &[], username, password, code).await
    }

    /// The audit actions recorded so far, oldest first.
    async fn audit_actions(&self) -> Vec<String> {
        let head = self.state.store.audit_head().await.expect("head");
        self.state.store.audit_events(1, head.seq).await.expect("events").into_iter().map(|e| e.action).collect()
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().uri(path).header(header::HOST, "localhost");
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::empty()).expect("request")
}

fn form_post(path: &str, who: &Person, fields: &[(&str, &str)]) -> Request<Body> {
    let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", support::urlencode(v))).collect();
    body.push(format!("csrf={}", who.csrf));
    Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.join("&")))
        .expect("request")
}

async fn body_text(response: axum::response::Response) -> String {
    String::from_utf8_lossy(&axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body")).to_string()
}

/// The notice a sign-in page shows.
fn notice(html: &str) -> String {
    html.split("role=\"alert\">").nth(1).and_then(|rest| rest.split('<').next()).unwrap_or_default().to_string()
}

/// Finding 1: the code of a restricted reason names the restricted fact, so it is masked with the words
/// in every JSON output (staff always; physicians until they break the glass).
#[tokio::test]
async fn part2_reason_codes_never_leave_through_the_json_api() {
    let harness = Harness::new().await;
    let store = harness.state.store.clone();
    let today = harness.state.today();
    let mut tx = store.begin().await.expect("begin");
    let mut details = PatientDetails::new("s-1", "Rosa", "Quill");
    details.part2 = true;
    let patient = tx.insert_patient(&details, &Actor::system()).await.expect("patient");
    let decision = escalation(
        ReasonCode::OudMedicationFromOtherSource,
        ("medication", "methadone from an opioid treatment program"),
        true,
        45.0,
    );
    record_today(&store, &mut tx, patient, today, &decision).await;
    tx.commit().await.expect("commit");
    let PatientId(pid) = patient;
    let staff = harness.account("dana", Role::Staff).await;
    let staff = harness.session_for(staff.id).await;
    let doc = harness.account("lind", Role::Physician).await;
    let doc = harness.session_for(doc.id).await;
    let code = "oud_medication_from_other_source";

    for path in ["/api/queue".to_string(), format!("/api/queue/{pid}"), format!("/api/patients/{pid}")] {
        let (status, body) = call(&harness.state, &staff, "GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.to_string().contains(code), "{path} names the restricted fact: {body}");
    }
    let (status, list) = call(&harness.state, &doc, "GET", "/api/exceptions", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(!list.to_string().contains(code), "the exception list names the restricted fact: {list}");
    let exception_id = list[0]["id"].as_i64().expect("an open exception");
    let (_, detail) = call(&harness.state, &doc, "GET", &format!("/api/exceptions/{exception_id}"), None).await;
    assert!(!detail.to_string().contains(code), "before the glass is broken: {detail}");
    // After breaking the glass the physician reads the reason, code included.
    let reason = json!({ "reason": "deciding today's refill safely" });
    let (granted, _) =
        call(&harness.state, &doc, "POST", &format!("/api/patients/{pid}/break-glass"), Some(reason)).await;
    assert_eq!(granted, StatusCode::OK);
    let (_, detail) = call(&harness.state, &doc, "GET", &format!("/api/exceptions/{exception_id}"), None).await;
    assert!(detail["exception"]["reasons"].to_string().contains(code), "{detail}");
    // Finding 6: the grant enqueued the privacy officer's alert in its transaction.
    let queued = refill_store::jobs::list_jobs(&harness.state.store, refill_store::jobs::JobState::Available, 100)
        .await
        .expect("jobs");
    assert_eq!(queued.iter().filter(|job| job.kind == "break_glass_alert").count(), 1, "{queued:?}");
}

/// Finding 2: concurrent wrong passwords for one account from one address are checked at most as often
/// as the budget allows (the check and the count are one atomic step).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_are_checked_at_most_the_budget() {
    let harness = Arc::new(Harness::new().await);
    harness.account("okafor", Role::Physician).await;
    let budget = harness.state.settings.login_failures_per_account_per_minute;
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..40 {
        let harness = harness.clone();
        attempts.spawn(async move { harness.login("okafor", &format!("wrong-password-{n}"), "").await.status() });
    }
    let mut checked = 0;
    let mut limited = 0;
    while let Some(status) = attempts.join_next().await {
        match status.expect("task") {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(checked <= budget, "{checked} wrong passwords were checked against a budget of {budget}");
    assert_eq!(checked + limited, 40);
}

/// Finding 3: failures on made-up usernames from one address (everyone, behind a proxy) do not lock out
/// a known account's correct password.
#[tokio::test]
async fn failures_on_made_up_names_do_not_lock_out_a_known_account() {
    let harness = Harness::new().await;
    harness.account("okafor", Role::Physician).await;
    for n in 0..35 {
        let response = harness.login(&format!("nobody{n}"), "some-password-here", "").await;
        assert!(
            matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS),
            "{}",
            response.status()
        );
    }
    let real = harness.login("okafor", PASSWORD, "").await;
    assert_eq!(real.status(), StatusCode::SEE_OTHER, "the physician's correct password still signs in");
}

/// Finding 3, behind a proxy: the configured header gives the client's address only when the request
/// comes from a configured proxy, so one client's failures do not spend everyone's budget, and a
/// forged header from anyone else changes nothing.
#[tokio::test]
async fn the_client_address_comes_from_the_trusted_proxy_header_only() {
    let settings = WebSettings {
        secure_cookies: false,
        client_address_header: Some("x-forwarded-for".into()),
        trusted_proxies: vec!["10.0.0.1".parse().expect("address")],
        ..WebSettings::default()
    };
    let harness = Harness::with_settings(settings).await;
    harness.account("okafor", Role::Physician).await;
    let budget = harness.state.settings.login_failures_per_account_per_minute;
    // An attacker behind the proxy spends the budget of their own address.
    for _ in 0..budget {
        let response = harness
            .login_from("10.0.0.1", &[("x-forwarded-for", "203.0.113.9")], "okafor", "wrong-password-x", "")
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let attacker = harness.login_from("10.0.0.1", &[("x-forwarded-for", "203.0.113.9")], "okafor", PASSWORD, "").await;
    assert_eq!(attacker.status(), StatusCode::TOO_MANY_REQUESTS);
    // The physician behind the same proxy signs in; a proxy appending to a client-sent list is read
    // from its last entry.
    let physician = harness
        .login_from("10.0.0.1", &[("x-forwarded-for", "203.0.113.9, 198.51.100.4")], "okafor", PASSWORD, "")
        .await;
    assert_eq!(physician.status(), StatusCode::SEE_OTHER);
    // A direct client forging the header is counted by its own address.
    for _ in 0..budget {
        let forged = harness
            .login_from("192.0.2.50", &[("x-forwarded-for", "198.51.100.77")], "okafor", "wrong-pass-y", "")
            .await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    }
    let forged_again =
        harness.login_from("192.0.2.50", &[("x-forwarded-for", "198.51.100.78")], "okafor", PASSWORD, "").await;
    assert_eq!(forged_again.status(), StatusCode::TOO_MANY_REQUESTS, "a new forged address does not reset it");
    let head = harness.state.store.audit_head().await.expect("head");
    let events = harness.state.store.audit_events(1, head.seq).await.expect("events");
    assert!(events.iter().any(|e| e.client_addr.as_deref() == Some("198.51.100.4")), "the audit has the client");
}

/// Finding 4: with a second factor enrolled, a right password without a code gets the same answer as a
/// wrong password.
#[tokio::test]
async fn the_answer_is_the_same_until_password_and_code_are_both_checked() {
    let harness = Harness::new().await;
    let doc = harness.account("okafor", Role::Physician).await;
    let secret = refill_web::totp::new_secret();
    let sealed = refill_web::totp::seal(&harness.state.store.audit_key, &secret);
    let by = Actor::new(format!("user:{}", doc.id), "physician");
    accounts::set_totp_secret(&harness.state.store, doc.id, Some(&sealed), &by, "test", harness.now_ms())
        .await
        .expect("enrol");
    let right = harness.login("okafor", PASSWORD, "").await;
    let right_status = right.status();
    let right_notice = notice(&body_text(right).await);
    let wrong = harness.login("okafor", "not-the-password-at-all", "").await;
    let wrong_status = wrong.status();
    let wrong_notice = notice(&body_text(wrong).await);
    assert_eq!(right_status, wrong_status);
    assert_eq!(right_notice, wrong_notice, "the message must not confirm the password");
    let wrong_code = harness.login("okafor", PASSWORD, "123456").await;
    assert_eq!(notice(&body_text(wrong_code).await), wrong_notice, "a wrong code reads the same");
}

/// Finding 5: account creation, sign-in success and failure, sign-out, wall codes and refusals are in
/// the tamper-evident audit trail.
#[tokio::test]
async fn security_events_are_in_the_audit_trail() {
    let harness = Harness::new().await;
    let admin = harness.account("root", Role::Admin).await;
    let admin = harness.session_for(admin.id).await;
    let created = harness
        .send(form_post(
            "/admin/users",
            &admin,
            &[("username", "dana"), ("display_name", "Dana W"), ("role", "staff"), ("password", PASSWORD)],
        ))
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(harness.login("dana", "not-the-password-at-all", "").await.status(), StatusCode::UNAUTHORIZED);
    let ok = harness.login("dana", PASSWORD, "").await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = ok.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("cookie");
    let dana = Person { cookie: cookie.split(';').next().expect("pair").to_string(), csrf: String::new() };
    assert_eq!(harness.send(get("/admin", Some(&dana.cookie))).await.status(), StatusCode::FORBIDDEN);
    let issued = harness.send(form_post("/admin/wall-codes", &admin, &[("label", "front desk")])).await;
    assert_eq!(issued.status(), StatusCode::OK);
    let (_, me) = call(&harness.state, &dana, "GET", "/api/session", None).await;
    let dana = Person { csrf: me["csrf_token"].as_str().expect("csrf").to_string(), ..dana };
    assert_eq!(harness.send(form_post("/logout", &dana, &[])).await.status(), StatusCode::SEE_OTHER);
    let actions = harness.audit_actions().await;
    for expected in [
        "account.created",
        "auth.sign_in_failed",
        "auth.sign_in",
        "access.refused",
        "wall.code_issued",
        "auth.session_ended",
    ] {
        assert!(actions.iter().any(|a| a == expected), "no {expected} event in {actions:?}");
    }
    let head = harness.state.store.audit_head().await.expect("head");
    let events = harness.state.store.audit_events(1, head.seq).await.expect("events");
    let ended = events.iter().find(|e| e.action == "auth.session_ended").expect("sign-out");
    assert_eq!(ended.reason.as_deref(), Some("signed out"));
    let failed = events.iter().find(|e| e.action == "auth.sign_in_failed").expect("failure");
    assert_eq!(failed.client_addr.as_deref(), Some("10.0.0.7"), "the address is recorded");
    assert!(events.iter().all(|e| !format!("{e:?}").contains(PASSWORD)), "no password in the trail");
    let verification = harness.state.store.verify_audit_chain(None).await.expect("verify");
    assert!(verification.is_intact(), "{verification:?}");
}

/// Finding 6: a break-glass reason must be a reason, not ten identical characters.
#[tokio::test]
async fn a_break_glass_reason_must_be_a_reason() {
    let harness = Harness::new().await;
    let mut tx = harness.state.store.begin().await.expect("begin");
    let mut details = PatientDetails::new("s-2", "Ada", "Birch");
    details.part2 = true;
    let PatientId(pid) = tx.insert_patient(&details, &Actor::system()).await.expect("patient");
    tx.commit().await.expect("commit");
    let doc = harness.account("lind", Role::Physician).await;
    let doc = harness.session_for(doc.id).await;
    for reason in ["aaaaaaaaaa", "..........", "1234567890", "          x"] {
        let (status, body) = call(
            &harness.state,
            &doc,
            "POST",
            &format!("/api/patients/{pid}/break-glass"),
            Some(json!({ "reason": reason })),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reason:?}: {body}");
    }
}

/// Finding 8: enrolling a second factor needs the password, and the secret is the server's, never the
/// client's; an admin's reset ends the person's other sessions; staff may enrol too.
#[tokio::test]
async fn second_factor_enrolment_needs_the_password_and_a_server_secret() {
    let harness = Harness::new().await;
    let doc = harness.account("okafor", Role::Physician).await;
    let session = harness.session_for(doc.id).await;
    // A 1-byte key chosen by the client, with its valid code and no password.
    let chosen = "AE";
    let code = format!(
        "{:06}",
        refill_web::totp::code_at(chosen, refill_web::totp::step_of(harness.now_ms() / 1000)).expect("code")
    );
    let response =
        harness.send(form_post("/account/second-factor", &session, &[("secret", chosen), ("code", &code)])).await;
    assert_ne!(response.status(), StatusCode::SEE_OTHER, "a client-chosen secret must not enrol");
    let stored = accounts::get_user(&harness.state.store, doc.id).await.expect("user");
    assert_eq!(stored.totp_secret, None);

    // An admin reset ends the physician's open sessions (a stolen session cannot enrol a new secret).
    let admin = harness.account("root", Role::Admin).await;
    let admin = harness.session_for(admin.id).await;
    let reset = harness.send(form_post(&format!("/admin/users/{}/second-factor/reset", doc.id), &admin, &[])).await;
    assert_eq!(reset.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        harness.send(get("/api/session", Some(&session.cookie))).await.status(),
        StatusCode::UNAUTHORIZED,
        "the reset ends the sessions of the person reset"
    );

    // Staff are offered the second factor too.
    let staff = harness.account("dana", Role::Staff).await;
    let staff = harness.session_for(staff.id).await;
    assert_eq!(harness.send(get("/account/second-factor", Some(&staff.cookie))).await.status(), StatusCode::OK);
}

/// Finding 9: passwords from breached-password lists, repeated or sequential characters, blanks and
/// invisible characters are refused.
#[tokio::test]
async fn weak_passwords_are_refused() {
    let harness = Harness::new().await;
    let weak = [
        "aaaaaaaaaaaa",
        "            ",
        "\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}\u{200b}",
        "password12345",
        "abcdefghijkl",
        "qwertyuiop123",
    ];
    for (n, password) in weak.iter().enumerate() {
        let result = refill_web::pages::admin::create_account(
            &harness.state,
            &format!("weak{n}"),
            "W",
            Role::Staff,
            password,
            &Actor::system(),
        )
        .await;
        assert!(result.is_err(), "{password:?} was accepted");
    }
}

/// Finding 10 (web part): a page number that would overflow is refused with the parameter named.
#[tokio::test]
async fn page_numbers_that_overflow_are_refused() {
    let harness = Harness::new().await;
    let staff = harness.account("dana", Role::Staff).await;
    let staff = harness.session_for(staff.id).await;
    let (status, body) = call(&harness.state, &staff, "GET", "/api/queue?page=9223372036854775807", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("page"), "{body}");
}

/// Finding 10 (web part): a drug-test entry of fifty thousand analytes in a 100 KB request is refused
/// with the field named, and nothing is written.
#[tokio::test]
async fn a_drug_test_entry_is_bounded_where_it_enters() {
    let harness = Harness::new().await;
    let store = harness.state.store.clone();
    let today = harness.state.today();
    let mut tx = store.begin().await.expect("begin");
    let patient = tx.insert_patient(&PatientDetails::new("s-3", "Ida", "Moss"), &Actor::system()).await.expect("p");
    let decision = refill_rules::Decision::from_reasons(Vec::new(), None, Some(30.0), "test");
    record_today(&store, &mut tx, patient, today, &decision).await;
    tx.commit().await.expect("commit");
    let PatientId(pid) = patient;
    let staff = harness.account("dana", Role::Staff).await;
    let staff = harness.session_for(staff.id).await;
    let (_, item) = call(&harness.state, &staff, "GET", &format!("/api/queue/{pid}"), None).await;
    let version = item["version"].as_i64().expect("version");
    let before = harness.state.store.audit_head().await.expect("head").seq;
    let analytes = "a,".repeat(50_000);
    let action = json!({ "action": "uds", "version": version, "detected": analytes });
    let (status, body) = call(&harness.state, &staff, "POST", &format!("/api/queue/{pid}/action"), Some(action)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", body.to_string().chars().take(300).collect::<String>());
    assert!(body.to_string().contains("detected"), "{body}");
    let nul = json!({ "action": "contacted", "version": version, "note": "left a message\u{0}" });
    let (status, _) = call(&harness.state, &staff, "POST", &format!("/api/queue/{pid}/action"), Some(nul)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a NUL in a note");
    let after = harness.state.store.audit_head().await.expect("head").seq;
    assert_eq!(after, before, "nothing was written");
}

/// Finding 11: a wall display reads changes without the names of the staff who made them.
#[tokio::test]
async fn a_wall_display_never_reads_staff_names() {
    let harness = Harness::new().await;
    let mut tx = harness.state.store.begin().await.expect("begin");
    accounts::record_screen_change(&mut tx, Some(1), "queue.action", Some("Dana Whitfield"), harness.now_ms())
        .await
        .expect("change");
    tx.commit().await.expect("commit");
    let code = random_token();
    let now = harness.now_ms();
    accounts::issue_wall_code(
        &harness.state.store,
        &sha256_hex(&code),
        "wall",
        None,
        now,
        now + 60_000,
        &Actor::system(),
    )
    .await
    .expect("code");
    let entered = harness.send(get(&format!("/wall/enter?code={code}"), None)).await;
    let cookie = entered.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("cookie");
    let wall = cookie.split(';').next().expect("pair").to_string();
    let response = harness.send(get("/api/changes", Some(&wall))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_text(response).await;
    assert!(body.contains("queue.action"), "{body}");
    assert!(!body.contains("Dana"), "the wall reads a staff name: {body}");
}
