//! Router tests with `tower::ServiceExt::oneshot` on a real SQLite file: every route with every role,
//! CSRF, security headers, sign-in with rate limiting, idle sign-out, wall sessions, break-glass.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Utc};
use refill_store::accounts::{self, Role};
use refill_store::{Actor, AuditKey, Store, StoreSettings};
use refill_web::access::{Access, ROUTES, allows};
use refill_web::auth::{Principal, random_token, sha256_hex};
use refill_web::{AppState, Clock, WebSettings, app};
use tower::ServiceExt;

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
        let url = format!("sqlite:{}", dir.path().join("web.db").display());
        let store = Store::connect(&StoreSettings::new(url, AuditKey::new(b"router-test-key-router-test-key-0123")))
            .await
            .expect("open store");
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

    fn router(&self) -> Router {
        app(self.state.clone())
    }

    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// A user of `role` with an open session: (cookie header value, csrf token).
    async fn session(&self, role: Role) -> (String, String) {
        let username = format!("{}-{}", role.as_str(), &random_token()[..6]).to_lowercase();
        let user = accounts::create_user(
            &self.state.store,
            &accounts::NewUser {
                username,
                display_name: format!("Test {}", role.as_str()),
                role,
                // Not a usable hash: these users never sign in with a password.
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            },
            self.now_ms(),
            &Actor::system(),
        )
        .await
        .expect("create user");
        let token = random_token();
        let csrf = random_token();
        accounts::create_person_session(
            &self.state.store,
            &sha256_hex(&token),
            user.id,
            &csrf,
            self.now_ms(),
            self.now_ms() + 3_600_000,
        )
        .await
        .expect("session");
        (format!("refill_session={token}"), csrf)
    }

    /// `session` for an account with a real password (for what asks for it again).
    async fn session_with_password(&self, role: Role, password: &str) -> (String, String) {
        let username = format!("{}-{}", role.as_str(), &random_token()[..6]).to_lowercase();
        let user = refill_web::pages::admin::create_account(
            &self.state,
            &username,
            "Test Person",
            role,
            password,
            &Actor::system(),
        )
        .await
        .expect("account");
        let (token, csrf) = (random_token(), random_token());
        let now = self.now_ms();
        accounts::create_person_session(&self.state.store, &sha256_hex(&token), user.id, &csrf, now, now + 3_600_000)
            .await
            .expect("session");
        (format!("refill_session={token}"), csrf)
    }

    async fn wall_session(&self) -> (String, String) {
        let code = random_token();
        accounts::issue_wall_code(
            &self.state.store,
            &sha256_hex(&code),
            "test wall",
            None,
            self.now_ms(),
            self.now_ms() + 60_000,
            &Actor::system(),
        )
        .await
        .expect("code");
        let token = random_token();
        let csrf = random_token();
        accounts::redeem_wall_code(
            &self.state.store,
            &sha256_hex(&code),
            &sha256_hex(&token),
            &csrf,
            self.now_ms(),
            self.now_ms() + 3_600_000,
        )
        .await
        .expect("redeem");
        (format!("refill_session={token}"), csrf)
    }

    async fn send(&self, request: Request<Body>) -> axum::response::Response {
        self.router().oneshot(request).await.expect("router answers")
    }
}

/// Who walks the routes: a name, a session (cookie, CSRF token) and a role.
type Party = (&'static str, Option<(String, String)>, Option<Role>);

fn concrete(path: &str) -> String {
    path.replace("{patient_id}", "1")
        .replace("{exception_id}", "1")
        .replace("{handle}", "0000000000000000")
        .replace("{user_id}", "999999")
}

fn request(method: &str, path: &str, cookie: Option<&str>, csrf: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path).header(header::HOST, "localhost");
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    if let Some(csrf) = csrf {
        builder = builder.header("x-csrf-token", csrf);
    }
    let body = if method == "POST" {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    builder.body(body).expect("request")
}

#[tokio::test]
async fn every_route_with_every_role_is_allowed_or_refused_as_the_table_says() {
    let harness = Harness::new().await;
    let mut parties: Vec<Party> = vec![("anonymous", None, None)];
    for role in Role::ALL {
        parties.push((role.as_str(), Some(harness.session(role).await), Some(role)));
    }
    parties.push(("wall", Some(harness.wall_session().await), None));
    let mut checked = 0;
    // Signing out ends the session, so it is walked last.
    let ordered = ROUTES.iter().filter(|s| s.path != "/logout").chain(ROUTES.iter().filter(|s| s.path == "/logout"));
    for spec in ordered {
        // The live stream never ends; its access is checked through /api/changes, which shares the rule.
        if spec.path == "/events" {
            continue;
        }
        for (name, credentials, role) in &parties {
            let path = concrete(spec.path);
            let (cookie, csrf) = match credentials {
                Some((cookie, csrf)) => (Some(cookie.as_str()), Some(csrf.as_str())),
                None => (None, None),
            };
            let response = harness.send(request(spec.method, &path, cookie, csrf)).await;
            let status = response.status();
            let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            let expected_allowed = match (spec.access, name) {
                (Access::Public, _) => true,
                // The CDS Hooks routes answer without a session; JWT verification is off in tests.
                (Access::Ehr, _) => true,
                (Access::Roles(roles), _) => role.is_some_and(|r| roles.contains(&r)),
                // Without `display=wall` the queue is refused to a wall display.
                (Access::RolesOrWall(_), &"wall") => spec.path != "/queue",
                (Access::RolesOrWall(roles), _) => role.is_some_and(|r| roles.contains(&r)),
            };
            // POST /login without the sign-in form's token is refused by the form itself, not the table.
            if spec.path == "/login" && spec.method == "POST" {
                continue;
            }
            assert_eq!(
                !refused,
                expected_allowed,
                "{} {} as {name}: status {status}, expected {}",
                spec.method,
                path,
                if expected_allowed { "allowed" } else { "refused" }
            );
            checked += 1;
        }
    }
    assert!(checked > 150, "walked {checked} route/role pairs");
    // The wall display may read the wall form of the queue, and nothing else of it.
    let (wall_cookie, _) = &parties.last().expect("wall").1.clone().expect("wall session");
    let wall = harness.send(request("GET", "/queue?display=wall", Some(wall_cookie), None)).await;
    assert_eq!(wall.status(), StatusCode::OK);
    let body = axum::body::to_bytes(wall.into_body(), 1 << 20).await.expect("body");
    assert!(String::from_utf8_lossy(&body).contains("wall-rows"));
}

#[tokio::test]
async fn access_rule_for_wall_needs_the_wall_display_parameter() {
    let wall = Principal::Wall {
        session: accounts::SessionRecord {
            token_sha256: "x".into(),
            kind: accounts::SessionKind::Wall,
            user: None,
            label: None,
            csrf_token: "t".into(),
            created_at_ms: 0,
            last_seen_at_ms: 0,
            expires_at_ms: 1,
        },
    };
    let rule = Access::RolesOrWall(&[Role::Staff]);
    assert!(allows(rule, &wall, "/queue", Some("display=wall")));
    assert!(!allows(rule, &wall, "/queue", None));
    assert!(!allows(rule, &wall, "/queue", Some("display=wallx")));
    assert!(!allows(Access::Roles(&[Role::Staff]), &wall, "/patients/1", None));
}

#[tokio::test]
async fn state_changes_need_the_session_csrf_token_and_same_origin() {
    let harness = Harness::new().await;
    let (cookie, csrf) = harness.session(Role::Staff).await;
    let missing = harness.send(request("POST", "/queue/close", Some(&cookie), None)).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let wrong = harness.send(request("POST", "/queue/close", Some(&cookie), Some("not-the-token"))).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let right = harness.send(request("POST", "/queue/close", Some(&cookie), Some(&csrf))).await;
    assert_eq!(right.status(), StatusCode::NO_CONTENT);
    let mut cross = request("POST", "/queue/close", Some(&cookie), Some(&csrf));
    cross.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().expect("origin"));
    assert_eq!(harness.send(cross).await.status(), StatusCode::FORBIDDEN);
    let mut fetch_site = request("POST", "/queue/close", Some(&cookie), Some(&csrf));
    fetch_site.headers_mut().insert("sec-fetch-site", "cross-site".parse().expect("header"));
    assert_eq!(harness.send(fetch_site).await.status(), StatusCode::FORBIDDEN);
    // A form post carries the token as a field.
    let form = Request::builder()
        .method("POST")
        .uri("/queue/close")
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .expect("request");
    assert_eq!(harness.send(form).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let harness = Harness::new().await;
    let (cookie, _) = harness.session(Role::Physician).await;
    for (path, cookie) in [
        ("/login", None),
        ("/static/app.css", None),
        ("/nowhere", None),
        ("/dashboard", Some(cookie.as_str())),
        ("/api/session", None),
    ] {
        let response = harness.send(request("GET", path, cookie, None)).await;
        let headers = response.headers();
        let csp = headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("object-src 'none'")
                && csp.contains("base-uri 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(headers.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"), "{path}");
        assert_eq!(headers.get("referrer-policy").and_then(|v| v.to_str().ok()), Some("same-origin"), "{path}");
        assert!(headers.get("strict-transport-security").is_some(), "{path}");
        if !path.starts_with("/static/") {
            assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{path}");
        }
    }
}

/// Sign in through the form, as a browser does (an empty code field for a user without a second
/// factor).
async fn login_form(harness: &Harness, username: &str, password: &str) -> axum::response::Response {
    login_with_code(harness, username, password, "").await
}

#[tokio::test]
async fn sign_in_issues_a_new_session_and_rate_limits_failures() {
    let harness = Harness::new().await;
    refill_web::pages::admin::create_account(
        &harness.state,
        "dana",
        "Dana Whitfield",
        Role::Staff,
        "correct horse battery",
        &Actor::system(),
    )
    .await
    .expect("account");
    let stored = accounts::find_user_by_username(&harness.state.store, "dana").await.expect("read").expect("user");
    assert!(stored.password_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", stored.password_hash);
    let ok = login_form(&harness, "dana", "correct+horse+battery").await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie =
        ok.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("session cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().expect("pair").to_string();
    let me = harness.send(request("GET", "/api/session", Some(&session), None)).await;
    assert_eq!(me.status(), StatusCode::OK);
    for _ in 0..5 {
        let bad = login_form(&harness, "dana", "wrong-password-here").await;
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = login_form(&harness, "dana", "correct+horse+battery").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "the budget holds even for the right password");
    harness.now_ms.fetch_add(61_000, Ordering::SeqCst);
    let again = login_form(&harness, "dana", "correct+horse+battery").await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER, "the budget refills after a minute");
    // Unknown users get the same answer as wrong passwords.
    let unknown = login_form(&harness, "nobody", "whatever-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn idle_sessions_end_and_live_updates_do_not_count_as_activity() {
    let harness = Harness::new().await;
    let (cookie, _) = harness.session(Role::Staff).await;
    harness.now_ms.fetch_add(10 * 60_000, Ordering::SeqCst);
    // Live-update polling for ten more minutes does not keep the session alive.
    assert_eq!(harness.send(request("GET", "/api/changes", Some(&cookie), None)).await.status(), StatusCode::OK);
    harness.now_ms.fetch_add(5 * 60_000 + 1_000, Ordering::SeqCst);
    assert_eq!(
        harness.send(request("GET", "/api/session", Some(&cookie), None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A page view does count.
    let (cookie, _) = harness.session(Role::Staff).await;
    harness.now_ms.fetch_add(10 * 60_000, Ordering::SeqCst);
    assert_eq!(harness.send(request("GET", "/api/session", Some(&cookie), None)).await.status(), StatusCode::OK);
    harness.now_ms.fetch_add(10 * 60_000, Ordering::SeqCst);
    assert_eq!(harness.send(request("GET", "/api/session", Some(&cookie), None)).await.status(), StatusCode::OK);
    // The wall display is exempt from the idle sign-out.
    let (wall, _) = harness.wall_session().await;
    harness.now_ms.fetch_add(30 * 60_000, Ordering::SeqCst);
    assert_eq!(harness.send(request("GET", "/api/changes", Some(&wall), None)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoked_wall_sessions_stop_working() {
    let harness = Harness::new().await;
    let (wall, _) = harness.wall_session().await;
    assert_eq!(harness.send(request("GET", "/queue?display=wall", Some(&wall), None)).await.status(), StatusCode::OK);
    let handle = accounts::list_wall_sessions(&harness.state.store).await.expect("list")[0].handle.clone();
    assert!(
        accounts::revoke_wall_session(&harness.state.store, &handle, harness.now_ms(), &Actor::system())
            .await
            .expect("revoke")
    );
    assert_eq!(
        harness.send(request("GET", "/queue?display=wall", Some(&wall), None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A POST of an urlencoded form with a session cookie and its CSRF token.
/// A response body as text.
async fn body_text(response: axum::response::Response) -> String {
    String::from_utf8_lossy(&axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body")).to_string()
}

/// The TOTP secret the enrolment page offers (in its provisioning URI).
fn enrolment_secret(html: &str) -> String {
    html.split("?secret=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("the page carries the secret")
        .to_string()
}

fn form_post(path: &str, cookie: &str, csrf: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", v.replace(' ', "+"))).collect();
    body.push(format!("csrf={csrf}"));
    Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.join("&")))
        .expect("request")
}

async fn login_with_code(harness: &Harness, username: &str, password: &str, code: &str) -> axum::response::Response {
    let form_page = harness.send(request("GET", "/login", None, None)).await;
    let set_cookie =
        form_page.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).expect("login cookie").to_string();
    let token =
        set_cookie.split(';').next().and_then(|pair| pair.split_once('=')).map(|(_, v)| v.to_string()).expect("token");
    let post = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::HOST, "localhost")
        .header(header::COOKIE, format!("refill_login_csrf={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username={username}&password={password}&code={code}&csrf={token}")))
        .expect("request");
    harness.send(post).await
}

#[tokio::test]
async fn a_physician_enrols_a_second_factor_and_sign_in_then_needs_a_fresh_code() {
    use refill_web::totp;
    let harness = Harness::new().await;
    let user = refill_web::pages::admin::create_account(
        &harness.state,
        "okafor",
        "Dr. Okafor",
        Role::Physician,
        "correct horse battery",
        &Actor::system(),
    )
    .await
    .expect("account");
    let token = random_token();
    let csrf = random_token();
    let now = harness.now_ms();
    accounts::create_person_session(&harness.state.store, &sha256_hex(&token), user.id, &csrf, now, now + 3_600_000)
        .await
        .expect("session");
    let cookie = format!("refill_session={token}");

    // The page offers a fresh secret; a wrong code enrols nothing.
    let page = harness.send(request("GET", "/account/second-factor", Some(&cookie), None)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = body_text(page).await;
    let qr = html.split(r#"<svg role="img" aria-label="Setup QR code""#).nth(1).expect("a QR code to scan");
    assert!(qr.contains("<path") && !html.contains("<?xml"), "an inline SVG with its modules");
    let secret = enrolment_secret(&html);
    let wrong = harness
        .send(form_post(
            "/account/second-factor",
            &cookie,
            &csrf,
            &[("password", "correct horse battery"), ("code", "000000")],
        ))
        .await;
    assert_eq!(wrong.status(), StatusCode::OK, "the page again, with the problem");
    let stored = accounts::find_user_by_username(&harness.state.store, "okafor").await.unwrap().unwrap();
    assert_eq!(stored.totp_secret, None, "a wrong code enrols nothing");

    let step = totp::step_of(harness.now_ms() / 1000);
    let code_at = |step: i64| format!("{:06}", totp::code_at(&secret, step).expect("valid secret"));
    let enrol = harness
        .send(form_post(
            "/account/second-factor",
            &cookie,
            &csrf,
            &[("password", "correct horse battery"), ("code", &code_at(step))],
        ))
        .await;
    assert_eq!(enrol.status(), StatusCode::SEE_OTHER);
    let stored = accounts::find_user_by_username(&harness.state.store, "okafor").await.unwrap().unwrap();
    let sealed = stored.totp_secret.expect("enrolled");
    assert!(!sealed.contains(&secret), "the secret is sealed at rest: {sealed}");
    assert_eq!(totp::open(&harness.state.store.audit_key, &sealed).as_deref(), Some(secret.as_str()));

    // Password alone no longer signs in; the enrolment code cannot be replayed; the next step's code can.
    let password = "correct+horse+battery";
    assert_eq!(login_with_code(&harness, "okafor", password, "").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login_with_code(&harness, "okafor", password, &code_at(step)).await.status(), StatusCode::UNAUTHORIZED);
    harness.now_ms.fetch_add(30_000, Ordering::SeqCst);
    let next = code_at(step + 1);
    assert_eq!(login_with_code(&harness, "okafor", password, &next).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(login_with_code(&harness, "okafor", password, &next).await.status(), StatusCode::UNAUTHORIZED, "replay");

    // An admin resets it (a lost phone): the password signs in again. Both changes are audited.
    harness.now_ms.fetch_add(61_000, Ordering::SeqCst);
    let (admin_cookie, admin_csrf) = harness.session(Role::Admin).await;
    let reset = harness
        .send(form_post(&format!("/admin/users/{}/second-factor/reset", user.id), &admin_cookie, &admin_csrf, &[]))
        .await;
    assert_eq!(reset.status(), StatusCode::SEE_OTHER);
    assert_eq!(login_with_code(&harness, "okafor", password, "").await.status(), StatusCode::SEE_OTHER);
    let events = harness.state.store.audit_events(1, 1000).await.expect("audit");
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).filter(|a| a.contains("second_factor")).collect();
    assert_eq!(actions, vec!["account.second_factor.enrolled", "account.second_factor.removed"]);
    assert!(events.iter().all(|e| !format!("{e:?}").contains(&secret)), "the secret is never audited");
}

/// With `require_second_factor`, a physician or admin without one reaches only the enrolment page (and
/// sign-out): pages redirect there, the API refuses in words; staff are unaffected. Once enrolled, the
/// physician works as usual and cannot remove the factor (an admin resets it).
#[tokio::test]
async fn a_required_second_factor_gates_physicians_and_admins_until_they_enrol() {
    use refill_web::totp;
    let settings = WebSettings { secure_cookies: false, require_second_factor: true, ..WebSettings::default() };
    let harness = Harness::with_settings(settings).await;
    let html_get = |path: &str, cookie: &str| {
        Request::builder()
            .uri(path)
            .header(header::HOST, "localhost")
            .header(header::ACCEPT, "text/html")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .expect("request")
    };
    let location = |response: &axum::response::Response| {
        response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };

    let (staff, _) = harness.session(Role::Staff).await;
    assert_eq!(harness.send(request("GET", "/api/queue", Some(&staff), None)).await.status(), StatusCode::OK);

    let (admin, _) = harness.session(Role::Admin).await;
    let page = harness.send(html_get("/admin", &admin)).await;
    assert_eq!((page.status(), location(&page)), (StatusCode::SEE_OTHER, "/account/second-factor".to_string()));

    let (doc, doc_csrf) = harness.session_with_password(Role::Physician, "correct horse battery").await;
    let page = harness.send(html_get("/exceptions", &doc)).await;
    assert_eq!((page.status(), location(&page)), (StatusCode::SEE_OTHER, "/account/second-factor".to_string()));
    let api = harness.send(request("GET", "/api/exceptions", Some(&doc), None)).await;
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    let body = body_text(api).await;
    assert!(body.contains("enrol a second factor first"), "{body}");
    let enrol_page = harness.send(html_get("/account/second-factor", &doc)).await;
    assert_eq!(enrol_page.status(), StatusCode::OK);
    let html = body_text(enrol_page).await;
    assert!(html.contains("requires a second factor"), "the page says why");
    let secret = enrolment_secret(&html);
    let step = totp::step_of(harness.now_ms() / 1000);
    let code_at = |step: i64| format!("{:06}", totp::code_at(&secret, step).expect("valid secret"));
    let enrol = harness
        .send(form_post(
            "/account/second-factor",
            &doc,
            &doc_csrf,
            &[("password", "correct horse battery"), ("code", &code_at(step))],
        ))
        .await;
    assert_eq!(enrol.status(), StatusCode::SEE_OTHER);

    assert_eq!(harness.send(request("GET", "/api/exceptions", Some(&doc), None)).await.status(), StatusCode::OK);
    harness.now_ms.fetch_add(30_000, Ordering::SeqCst);
    let remove = harness
        .send(form_post("/account/second-factor/remove", &doc, &doc_csrf, &[("code", &code_at(step + 1))]))
        .await;
    assert_eq!(remove.status(), StatusCode::OK);
    let html = body_text(remove).await;
    assert!(html.contains("ask an admin to reset it"), "the refusal says what to do");
    let users = accounts::list_users(&harness.state.store).await.expect("users");
    assert!(users.iter().any(|u| u.role == Role::Physician && u.totp_secret.is_some()), "still enrolled");
}

/// The dashboard's numbers link to the lists behind them for a physician (not for an admin, who may not
/// open patient records); a list names a bad filter and is one audit event per view.
#[tokio::test]
async fn dashboard_numbers_link_to_their_lists() {
    let harness = Harness::new().await;
    let (doc, _) = harness.session(Role::Physician).await;
    let (admin, _) = harness.session(Role::Admin).await;
    let for_doc = body_text(harness.send(request("GET", "/dashboard", Some(&doc), None)).await).await;
    assert!(for_doc.contains("href=\"/patients?band=50-89\"") && for_doc.contains("href=\"/patients?band=%3C50\""));
    assert!(for_doc.contains("href=\"/patients?overdue=uds_overdue\""), "overdue counts link too");
    let for_admin = body_text(harness.send(request("GET", "/dashboard", Some(&admin), None)).await).await;
    assert!(!for_admin.contains("/patients?"), "no patient lists for an admin");
    assert_eq!(
        harness.send(request("GET", "/patients?band=50-89", Some(&admin), None)).await.status(),
        StatusCode::FORBIDDEN
    );

    let list = harness.send(request("GET", "/patients?band=%3C50", Some(&doc), None)).await;
    assert_eq!(list.status(), StatusCode::OK);
    let list = body_text(list).await;
    assert!(list.contains("Patients at &#60;50 MME/day"), "the title names the band (escaped): {list}");
    let bad = harness.send(request("GET", "/patients?band=lots", Some(&doc), None)).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(bad).await.contains("band: no MME band"), "the problem names the parameter");
    let events = harness.state.store.audit_events(1, 1000).await.expect("audit");
    assert_eq!(events.iter().filter(|e| e.action == "patients.list.view").count(), 1, "one event per list view");
}
