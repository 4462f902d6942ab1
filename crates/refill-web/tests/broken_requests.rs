//! Property test of broken requests (issue 17): random JSON bodies, form bodies and query strings sent
//! to the state-changing and paged routes by a signed-in person never get a 5xx and never change the
//! audit chain's integrity; a refused request writes nothing.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use proptest::prelude::*;
use refill_rules::{Decision, PatientId};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::{AppState, WebSettings, app};
use tower::ServiceExt;

mod support;
use support::{Person, person, record_today, sqlite_app, urlencode};

struct World {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    staff: Person,
    doc: Person,
    patient: i64,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let (state, staff, doc, patient) = runtime.block_on(async {
        let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
        let state = sqlite_app(dir.path(), "broken.db", b"broken-requests-key-broken-requests", settings).await;
        let store = state.store.clone();
        let mut tx = store.begin().await.expect("begin");
        let mut details = PatientDetails::new("b-1", "Ida", "Moss");
        details.part2 = true;
        let patient = tx.insert_patient(&details, &Actor::system()).await.expect("patient");
        let decision = Decision::from_reasons(Vec::new(), None, Some(30.0), "test");
        record_today(&store, &mut tx, patient, state.today(), &decision).await;
        tx.commit().await.expect("commit");
        let staff = person(&state, "dana", "Dana Whitfield", Role::Staff).await;
        let doc = person(&state, "lind", "Dr Lind", Role::Physician).await;
        let PatientId(id) = patient;
        (state, staff, doc, id)
    });
    World { runtime, state, staff, doc, patient, _dir: dir }
}

fn send(world: &World, who: &Person, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("request");
    world.runtime.block_on(async { app(world.state.clone()).oneshot(request).await.expect("response").status() })
}

fn json_body() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,300}".prop_map(serde_json::Value::String),
        any::<bool>().prop_map(serde_json::Value::Bool),
    ];
    let keys = prop_oneof![
        Just("action".to_string()),
        Just("version".to_string()),
        Just("note".to_string()),
        Just("detected".to_string()),
        Just("not_detected".to_string()),
        Just("findings".to_string()),
        Just("naloxone".to_string()),
        Just("reason".to_string()),
        Just("decision".to_string()),
        Just("rationale".to_string()),
        "[a-z_]{1,12}",
    ];
    proptest::collection::btree_map(keys, leaf, 0..8)
        .prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn broken_requests_never_get_a_server_error(
        body in json_body(),
        raw in proptest::collection::vec(any::<u8>(), 0..400),
        page in ".{0,24}",
        target in 0usize..6,
    ) {
        let world = WORLD.with(|w| w.clone());
        let world = world.as_ref();
        let pid = world.patient;
        let (who, method, path, content_type, bytes) = match target {
            0 => (&world.staff, "POST", format!("/api/queue/{pid}/action"), "application/json", body.to_string().into_bytes()),
            1 => (&world.staff, "POST", format!("/queue/{pid}/action"), "application/x-www-form-urlencoded", raw.clone()),
            2 => (&world.doc, "POST", format!("/api/patients/{pid}/break-glass"), "application/json", body.to_string().into_bytes()),
            3 => (&world.doc, "POST", "/api/exceptions/1/decide".to_string(), "application/json", body.to_string().into_bytes()),
            4 => (&world.staff, "GET", format!("/api/queue?page={}&filter={}", urlencode(&page), urlencode(&page)), "text/plain", Vec::new()),
            _ => (&world.staff, "POST", format!("/api/queue/{pid}/action"), "application/json", raw.clone()),
        };
        let status = send(world, who, method, &path, content_type, bytes);
        prop_assert!(!status.is_server_error(), "{method} {path}: {status}");
    }
}

thread_local! {
    static WORLD: std::rc::Rc<World> = std::rc::Rc::new(world());
}

#[test]
fn the_audit_chain_is_intact_after_the_broken_requests() {
    let world = world();
    for body in [
        "{",
        "[]",
        "{\"action\":\"uds\",\"version\":\"x\"}",
        "{\"action\":\"contacted\",\"version\":1,\"note\":\"\\u0000\"}",
    ] {
        let status = send(
            &world,
            &world.staff,
            "POST",
            &format!("/api/queue/{}/action", world.patient),
            "application/json",
            body.as_bytes().to_vec(),
        );
        assert!(status.is_client_error(), "{body}: {status}");
    }
    let intact = world.runtime.block_on(world.state.store.verify_audit_chain(None)).expect("verify");
    assert!(intact.is_intact());
}
