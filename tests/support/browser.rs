//! The browser-test harness shared by the root package's browser tests: headless Chromium through
//! chromedriver (raw WebDriver over HTTP), a demo clinic built with `refill demo --no-serve`, accounts
//! added with `refill user add`, and `refill serve` on a free loopback port.
//!
//! `browsers_available` prints a notice and returns false when chromium or chromedriver is missing, and
//! fails instead when CI=true. `axe_source` does the same for axe-core (the accessibility checker, an
//! npm package installed outside the repository's tracked files: `.ci/run` puts it in `target/axe`).
#![allow(dead_code)] // each test file uses part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A child process killed when the test ends, pass or fail.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub fn http(method: &str, port: u16, path: &str, body: Option<&Value>) -> std::io::Result<(u16, String)> {
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

pub fn dechunk(raw: &[u8]) -> Vec<u8> {
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
pub struct Browser {
    pub driver_port: u16,
    pub session: String,
    pub base: String,
}

impl Browser {
    pub fn open(driver_port: u16, base: &str, profile: &Path) -> Browser {
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                "--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1440,900",
                format!("--user-data-dir={}", profile.display()),
            ]}
        }}});
        let (status, body) = http("POST", driver_port, "/session", Some(&capabilities)).expect("chromedriver answers");
        assert_eq!(status, 200, "new session: {body}");
        let value: Value = serde_json::from_str(&body).expect("json");
        let session = value["value"]["sessionId"].as_str().expect("session id").to_string();
        let browser = Browser { driver_port, session, base: base.to_string() };
        // The page area of a desk's 1440x900 screen exactly (the window size counts the browser's own
        // frame, which headless modes size differently).
        browser.command(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setDeviceMetricsOverride",
                         "params": { "width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": false } })),
        );
        browser
    }

    pub fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, text) = http(method, self.driver_port, &full, body.as_ref()).expect("chromedriver answers");
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{method} {path}: {text}");
        value["value"].clone()
    }

    pub fn go(&self, path: &str) {
        self.command("POST", "/url", Some(json!({ "url": format!("{}{path}", self.base) })));
    }

    pub fn find(&self, css: &str) -> String {
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

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    pub fn script(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Run an asynchronous script: it calls its last argument with the result.
    pub fn script_async(&self, script: &str) -> Value {
        self.command("POST", "/execute/async", Some(json!({ "script": script, "args": [] })))
    }

    /// Run axe-core (`axe`: its source) on the page as it is now and return the problems that fail a
    /// page: any critical violation, any form field or button without a label or name, and colour as
    /// the only signal of a link. Each problem reads "rule (impact): help, N nodes: first node".
    pub fn accessibility_problems(&self, axe: &str) -> Vec<String> {
        // The source runs as the script's body (the page's content security policy does not apply to
        // WebDriver scripts) and leaves `window.axe` behind.
        self.script(&format!("{axe}\n;return typeof window.axe === 'object';"));
        let found = self.script_async(
            "const done = arguments[arguments.length - 1];              axe.run(document, { resultTypes: ['violations'] })                .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact || '', help: v.help,                  nodes: v.nodes.length, first: (v.nodes[0] && v.nodes[0].target || []).join(' ') }))))                .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: 0, first: '' }]));",
        );
        const ALWAYS: [&str; 5] =
            ["label", "select-name", "button-name", "link-in-text-block", "aria-input-field-name"];
        let url = self.command("GET", "/url", None);
        eprintln!("axe on {url}: {found}");
        found
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|v| v["impact"] == "critical" || ALWAYS.iter().any(|id| v["id"] == *id))
            .map(|v| format!("{} ({}): {}, {} nodes: {}", v["id"], v["impact"], v["help"], v["nodes"], v["first"]))
            .collect()
    }

    pub fn sign_in(&self, username: &str, password: &str) {
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

    pub fn screenshot(&self, dir: Option<&Path>, name: &str) {
        let Some(dir) = dir else { return };
        let data = self.command("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).expect("png");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("write screenshot");
    }

    /// Wait until `script` (returning a boolean) is true.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) {
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

pub fn refill(args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refill"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("REFILL_ENV", "test");
    if let Some(password) = password {
        command.env("REFILL_PASSWORD", password);
    }
    command.output().expect("run refill")
}

pub fn browsers_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "chromium and chromedriver are required in CI");
        eprintln!("notice: {CHROMIUM} or {CHROMEDRIVER} missing; skipping the browser test");
    }
    present
}

/// Where `.ci/run` installs axe-core (under the ignored `target/`).
pub const AXE_PATH: &str = "target/axe/node_modules/axe-core/axe.min.js";

/// axe-core's source (`REFILL_AXE_JS` or [`AXE_PATH`]); `None` with a notice when absent, and a failure
/// instead when CI=true.
pub fn axe_source() -> Option<String> {
    let path = std::env::var("REFILL_AXE_JS")
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(AXE_PATH).display().to_string());
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(error) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "axe-core is required in CI ({path}: {error})");
            eprintln!("notice: axe-core missing at {path} ({error}); skipping the accessibility checks");
            None
        }
    }
}

/// A demo clinic served by `refill serve`, chromedriver, and sign-ins for a staff member, a physician
/// and an admin (one password).
pub struct Served {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub driver_port: u16,
    pub password: &'static str,
    pub _server: Process,
    pub _driver: Process,
}

pub fn serve_demo_clinic(patients: &str) -> Served {
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
