//! A real SMTP server over TCP for tests: scripts/flaky_smtp.py (aiosmtpd) started on a free loopback
//! port, recording every accepted message. Missing python3/aiosmtpd: a notice and a skip, but a
//! failure when CI=true. Shared by the notify and jobs tests (`#[path]` include).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One message as the peer received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: Option<String>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
}

impl Received {
    /// The value of a header (unfolded), first occurrence.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(current) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    current.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_string());
            }
        }
        value
    }

    /// Header names in order.
    pub fn header_names(&self) -> Vec<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
            .collect()
    }
}

/// Options of the peer.
#[derive(Debug, Clone, Default)]
pub struct PeerOptions {
    /// Probability of aborting after the final dot without replying.
    pub drop: f64,
    /// Reply to every DATA with this instead of accepting (e.g. "550 5.7.1 refused").
    pub reply: Option<String>,
    /// (certificate, key) PEM files: offer and require STARTTLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With `tls`: TLS from the first byte (SMTPS) instead of STARTTLS.
    pub implicit_tls: bool,
    pub seed: Option<u64>,
}

pub struct SmtpPeer {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    options: PeerOptions,
}

/// Whether a missing part is a skip (locally) or a failure (CI).
pub fn missing(part: &str) -> Option<SmtpPeer> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{part} is required when CI=true");
    }
    eprintln!("NOTICE: {part} is missing; skipping this test (install python3 and aiosmtpd)");
    None
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/flaky_smtp.py")
}

/// A free loopback port (bound, then released for the peer).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl SmtpPeer {
    /// Start on a free port; `None` (after a notice) when python3 or aiosmtpd is missing.
    pub fn start(dir: &Path, options: PeerOptions) -> Option<SmtpPeer> {
        SmtpPeer::start_on(dir, free_port(), options)
    }

    pub fn start_on(dir: &Path, port: u16, options: PeerOptions) -> Option<SmtpPeer> {
        let log = dir.join(format!("received-{port}.jsonl"));
        let mut command = Command::new("python3");
        command.arg(script()).arg("--port").arg(port.to_string()).arg("--log").arg(&log);
        command.arg("--drop").arg(options.drop.to_string());
        if let Some(reply) = &options.reply {
            command.arg("--reply").arg(reply);
        }
        if let Some(seed) = options.seed {
            command.arg("--seed").arg(seed.to_string());
        }
        if let Some((cert, key)) = &options.tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            if options.implicit_tls {
                command.arg("--implicit-tls");
            }
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(_) => return missing("python3"),
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if !line.starts_with("READY") {
            let status = child.wait().ok().and_then(|s| s.code());
            if status == Some(3) {
                return missing("aiosmtpd");
            }
            panic!("the SMTP peer did not start (exit {status:?})");
        }
        Some(SmtpPeer { child, port, log, options })
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        read_log(&self.log)
    }

    /// Wait until at least `count` messages arrived (or the timeout passes).
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count || std::time::Instant::now() > deadline {
                return received;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (by its own pid) and wait for it; the port becomes free.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port with the same options and log.
    pub fn restart(&mut self, dir: &Path) {
        self.stop();
        let mut again = SmtpPeer::start_on(dir, self.port, self.options.clone()).expect("peer restarts");
        std::mem::swap(&mut self.child, &mut again.child);
        // `again` now holds the stopped process; dropping it kills nothing alive.
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn read_log(log: &Path) -> Vec<Received> {
    let Ok(text) = std::fs::read_to_string(log) else { return Vec::new() };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("peer log line is JSON");
            Received {
                message_id: value["message_id"].as_str().map(str::to_string),
                mail_from: value["mail_from"].as_str().unwrap_or("").to_string(),
                rcpt_tos: value["rcpt_tos"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                data: value["data"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// A throw-away certificate authority and a server certificate for 127.0.0.1/localhost signed by it,
/// made with the openssl CLI: (ca, cert, key). The test trusts only the CA. `None` after a notice when
/// openssl is missing (a failure when CI=true).
pub fn test_certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca-key.pem");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let key = dir.join("server-key.pem");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    let steps: [Vec<&std::ffi::OsStr>; 3] = [
        vec![
            "req".as_ref(),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "rsa:2048".as_ref(),
            "-nodes".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-subj".as_ref(),
            "/CN=Refill test CA".as_ref(),
            "-keyout".as_ref(),
            ca_key.as_os_str(),
            "-out".as_ref(),
            ca.as_os_str(),
        ],
        vec![
            "req".as_ref(),
            "-newkey".as_ref(),
            "rsa:2048".as_ref(),
            "-nodes".as_ref(),
            "-subj".as_ref(),
            "/CN=127.0.0.1".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
        ],
        vec![
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            ca.as_os_str(),
            "-CAkey".as_ref(),
            ca_key.as_os_str(),
            "-CAcreateserial".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ],
    ];
    for args in steps {
        let status = Command::new("openssl").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !matches!(status, Ok(s) if s.success()) {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("openssl is required when CI=true");
            }
            eprintln!("NOTICE: openssl is missing or failed; skipping this test");
            return None;
        }
    }
    Some((ca, cert, key))
}
