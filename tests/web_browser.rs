//! End-to-end tests of the web screens in headless Chromium through chromedriver (raw WebDriver over
//! HTTP): a demo clinic is built with `refill demo --no-serve`, accounts are added with `refill user add`,
//! `refill serve` runs on a free loopback port, and two browsers (a staff member and a physician) work
//! the queue and an exception while each sees the other's change arrive without a reload.
//!
//! Skips with a notice when chromium or chromedriver is missing; fails instead when CI=true. With
//! `REFILL_SCREENSHOTS=DIR` it saves the queue, exception review, patient page and dashboard as PNGs
//! there (docs/screenshots is made this way).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A child process killed when the test ends, pass or fail.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(method: &str, port: u16, path: &str, body: Option<&Value>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut chunked = false;
    let mut length: Option<usize> = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok();
        }
    }
    // chromedriver keeps the connection open despite `Connection: close`: read exactly the body.
    let mut raw = Vec::new();
    match length {
        Some(length) if !chunked => {
            raw.resize(length, 0);
            reader.read_exact(&mut raw)?;
        }
        _ => {
            reader.read_to_end(&mut raw)?;
        }
    }
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    out
}

/// A browser session through chromedriver.
struct Browser {
    driver_port: u16,
    session: String,
    base: String,
}

impl Browser {
    fn open(driver_port: u16, base: &str, profile: &Path) -> Browser {
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                "--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ]}
        }}});
        let (status, body) = http("POST", driver_port, "/session", Some(&capabilities)).expect("chromedriver answers");
        assert_eq!(status, 200, "new session: {body}");
        let value: Value = serde_json::from_str(&body).expect("json");
        let session = value["value"]["sessionId"].as_str().expect("session id").to_string();
        Browser { driver_port, session, base: base.to_string() }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, text) = http(method, self.driver_port, &full, body.as_ref()).expect("chromedriver answers");
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{method} {path}: {text}");
        value["value"].clone()
    }

    fn go(&self, path: &str) {
        self.command("POST", "/url", Some(json!({ "url": format!("{}{path}", self.base) })));
    }

    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let full = format!("/session/{}/element", self.session);
            let (status, text) =
                http("POST", self.driver_port, &full, Some(&json!({ "using": "css selector", "value": css })))
                    .expect("answer");
            if status == 200 {
                let value: Value = serde_json::from_str(&text).expect("json");
                if let Some(id) = value["value"][ELEMENT_KEY].as_str() {
                    return id.to_string();
                }
                panic!("element {css}: unexpected answer {text}");
            }
            assert!(Instant::now() < deadline, "no element {css}: {text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    fn script(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    fn sign_in(&self, username: &str, password: &str) {
        self.go("/login");
        self.type_into("#username", username);
        self.type_into("#password", password);
        self.click("#sign-in");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("GET", "/url", None).as_str().unwrap_or_default().ends_with("/login") {
            if Instant::now() > deadline {
                let page = self.script("return document.body.innerText;");
                panic!("sign-in of {username} did not leave the login page: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, dir: Option<&Path>, name: &str) {
        let Some(dir) = dir else { return };
        let data = self.command("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).expect("png");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("write screenshot");
    }

    /// Wait until `script` (returning a boolean) is true.
    fn wait_for(&self, what: &str, script: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.script(script) != Value::Bool(true) {
            if Instant::now() > deadline {
                let page = self.script(
                    "const p = document.querySelector('#panel'); return (p && !p.hidden ? p.innerText : document.body.innerText).slice(0, 3000);",
                );
                panic!("timed out waiting for {what}; the page reads: {page}");
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http("DELETE", self.driver_port, &format!("/session/{}", self.session), None);
    }
}

fn refill(args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refill"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("REFILL_ENV", "test");
    if let Some(password) = password {
        command.env("REFILL_PASSWORD", password);
    }
    command.output().expect("run refill")
}

fn browsers_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "chromium and chromedriver are required in CI");
        eprintln!("notice: {CHROMIUM} or {CHROMEDRIVER} missing; skipping the browser test");
    }
    present
}

/// A demo clinic served by `refill serve`, chromedriver, and sign-ins for a staff member, a physician
/// and an admin (one password).
struct Served {
    dir: tempfile::TempDir,
    base: String,
    driver_port: u16,
    password: &'static str,
    _server: Process,
    _driver: Process,
}

fn serve_demo_clinic(patients: &str) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("clinic.db");
    let url = format!("sqlite:{}", db.display());
    let demo = refill(&["demo", "--patients", patients, "--no-serve", "--db", db.to_str().expect("utf-8 path")], None);
    assert!(demo.status.success(), "refill demo: {}", String::from_utf8_lossy(&demo.stderr));
    let password = "browser-test-password-1";
    for (username, role, name) in
        [("erin", "staff", "Erin Staff"), ("paul", "physician", "Paul Physician"), ("ada", "admin", "Ada Admin")]
    {
        let added =
            refill(&["--database", &url, "user", "add", username, "--role", role, "--name", name], Some(password));
        assert!(added.status.success(), "user add {username}: {}", String::from_utf8_lossy(&added.stderr));
    }
    let port = free_port();
    let server = Process(
        Command::new(env!("CARGO_BIN_EXE_refill"))
            .args(["--database", &url, "serve", "--port", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("REFILL_ENV", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start refill serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http("GET", port, "/healthz", None).map(|(s, _)| s).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "refill serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let driver_port = free_port();
    let driver = Process(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http("GET", driver_port, "/status", None).map(|(s, _)| s).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "chromedriver did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    Served { dir, base: format!("http://127.0.0.1:{port}"), driver_port, password, _server: server, _driver: driver }
}

/// The refill cycle through the screens: staff send a patient whose refill is due to a physician with a
/// note; the physician sees the note on the exception and signs a 14-day bridge with a review-by date;
/// staff see the bridge on the queue and prepare it.
#[test]
fn staff_send_with_a_note_the_physician_bridges_and_staff_prepare_the_bridge() {
    if !browsers_available() {
        return;
    }
    let served = serve_demo_clinic("150");
    let staff = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-staff"));
    staff.sign_in("erin", served.password);
    staff.go("/queue");
    staff.find("tr.row");
    // A patient whose refill is due and approved: nothing for a physician yet.
    let patient = staff
        .script(
            "const row = [...document.querySelectorAll('tr.row.st-approve')].find(r => {                const w = r.querySelector('.window'); return w && w.textContent.startsWith('refill due'); });              return row ? row.dataset.patient : null;",
        )
        .as_str()
        .expect("an approved row whose refill is due")
        .to_string();
    staff.click(&format!("#row-{patient} td:nth-child(3)"));
    staff.find("#panel .panel-inner");
    staff.click("#panel details[data-action='s'] summary");
    staff.type_into(
        "#panel details[data-action='s'] textarea[name=note]",
        "Reports new dizziness since the last refill",
    );
    staff.click("#panel details[data-action='s'] button[type=submit]");
    staff.wait_for(
        "the panel to confirm the referral",
        "const m = document.querySelector('#panel-message'); return !!m && m.textContent.includes('Sent to a physician');",
        Duration::from_secs(10),
    );

    let physician = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-physician"));
    physician.sign_in("paul", served.password);
    physician.go("/exceptions");
    let target = physician
        .script(&format!(
            "const row = document.querySelector('tr.row[data-patient=\"{patient}\"]'); return row ? row.dataset.href : null;"
        ))
        .as_str()
        .expect("the sent patient is on the physician's list")
        .to_string();
    physician.go(&target);
    physician.wait_for(
        "the staff note on the exception",
        "return !!document.querySelector('#staff-notes');",
        Duration::from_secs(10),
    );
    let notes = physician.script("return document.querySelector('#staff-notes').innerText;");
    let notes = notes.as_str().unwrap_or_default();
    assert!(notes.contains("Reports new dizziness since the last refill") && notes.contains("Erin Staff"), "{notes}");
    physician.click("input[name=decision][value=approve_bridge]");
    physician.type_into("#bridge-days", "14");
    physician.type_into("#bridge-quantity", "56");
    physician.type_into("#rationale", "Dizziness likely positional; bridge while we see the patient next week.");
    physician.click("#sign-decision");
    physician.wait_for(
        "the list after signing",
        "return location.pathname === '/exceptions';",
        Duration::from_secs(10),
    );

    // Staff see the physician's bridge on the queue row and in the panel, and prepare it.
    staff.go("/queue");
    staff.wait_for(
        "the queue row to show the bridge",
        &format!(
            "const row = document.querySelector('#row-{patient}');              return !!row && row.textContent.includes('Bridge: 14 days, 56 units') && row.textContent.includes('Paul Physician');"
        ),
        Duration::from_secs(10),
    );
    staff.click(&format!("#row-{patient} td:nth-child(3)"));
    staff.wait_for(
        "the panel with the physician's decision",
        "return !!document.querySelector('#panel-standing');",
        Duration::from_secs(10),
    );
    let standing = staff.script("return document.querySelector('#panel-standing').innerText;");
    assert!(standing.as_str().unwrap_or_default().contains("review by"), "{standing}");
    staff.click("#panel form[data-action='p'] button[type=submit]");
    staff.wait_for(
        "the panel to confirm the bridge was prepared",
        "const m = document.querySelector('#panel-message'); return !!m && m.textContent.includes('Bridge prepared for signature: 14 days');",
        Duration::from_secs(10),
    );
}

#[test]
fn staff_and_physician_work_the_queue_and_see_each_other() {
    if !browsers_available() {
        return;
    }
    let served = serve_demo_clinic("150");
    let (dir, base, driver_port, password) = (&served.dir, &served.base, served.driver_port, served.password);
    let shots: Option<PathBuf> = std::env::var_os("REFILL_SCREENSHOTS").map(PathBuf::from);

    let staff = Browser::open(driver_port, base, &dir.path().join("profile-staff"));
    staff.sign_in("erin", password);
    staff.go("/queue");
    staff.find("tr.row");
    staff.screenshot(shots.as_deref(), "queue");

    let physician = Browser::open(driver_port, base, &dir.path().join("profile-physician"));
    physician.sign_in("paul", password);
    physician.go("/exceptions");
    physician.find("tr.row");

    // Staff work the first row that is waiting for a naloxone offer: open the side panel, record the offer.
    let first = staff
        .script(
            "const row = [...document.querySelectorAll('tr.row')].find(r => r.textContent.includes('Naloxone offer due')); \
             return row ? row.dataset.patient : null;",
        )
        .as_str()
        .expect("a row with a naloxone offer due")
        .to_string();
    assert!(
        physician.script(&format!("return !!document.querySelector('tr.row[data-patient=\"{first}\"]');"))
            == Value::Bool(true),
        "the physician's list has the patient's exception"
    );
    staff.click(&format!("#row-{first} td:nth-child(3)"));
    staff.find("#panel .panel-inner");
    // The naloxone offer is due, so its form is already open; other forms stay folded.
    let open = staff.script(
        "return [...document.querySelectorAll('#panel details')].filter(d => d.open).map(d => d.dataset.action);",
    );
    assert!(open.as_array().is_some_and(|open| open.contains(&json!("n"))), "the due action's form is open: {open}");
    staff.click("#panel details[data-action='n'] button[type=submit]");
    staff.wait_for(
        "the panel to confirm the action",
        "const m = document.querySelector('#panel-message'); return !!m && m.textContent.includes('Naloxone recorded');",
        Duration::from_secs(10),
    );

    // The physician's open list updates without a reload: the naloxone reason is gone from that row.
    physician.wait_for(
        "the physician's list to drop the naloxone reason",
        &format!(
            "const row = document.querySelector('tr.row[data-patient=\"{first}\"]'); \
             return !!row && !row.textContent.includes('Naloxone offer due');"
        ),
        Duration::from_secs(10),
    );

    // The physician signs an approval for that patient; the staff screen's tallies change live.
    staff.script("document.body.dataset.before = document.querySelector('.tallies').textContent;");
    let target = physician
        .script(&format!("return document.querySelector('tr.row[data-patient=\"{first}\"]').dataset.href;"))
        .as_str()
        .expect("exception link")
        .to_string();
    physician.go(&target);
    physician.find("#decide-form");
    physician.screenshot(shots.as_deref(), "exception-review");
    physician.click("input[name=decision][value=approve_refill]");
    physician.type_into("#rationale", "Benefit outweighs risk; PDMP and drug tests reviewed; naloxone offered today.");
    physician.click("#sign-decision");
    physician.wait_for(
        "the list after signing",
        "return location.pathname === '/exceptions';",
        Duration::from_secs(10),
    );
    assert_eq!(
        physician.script(&format!("return !!document.querySelector('tr.row[data-patient=\"{first}\"]');")),
        Value::Bool(false),
        "the signed exception left the list"
    );
    staff.wait_for(
        "the staff screen to show the physician's decision",
        "return document.querySelector('.tallies').textContent !== document.body.dataset.before;",
        Duration::from_secs(15),
    );

    if shots.is_some() {
        staff.go(&format!("/patients/{first}"));
        staff.find(".patient");
        staff.screenshot(shots.as_deref(), "patient");
        physician.go("/dashboard");
        physician.find(".dashboard");
        physician.screenshot(shots.as_deref(), "dashboard");
    }
}
