//! Short variant of scripts/crash-test-jobs.sh: three real `refill worker` processes on a SQLite file
//! (and on PostgreSQL when reachable) work probe jobs while workers are killed with SIGKILL and
//! restarted at random moments; afterwards every job is completed with exactly one committed effect
//! and none is left available or running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JOBS: u32 = 400;
const KILLS: u32 = 8;

fn refill(config: &Path, url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refill"));
    command.arg("--config").arg(config).arg("--database").arg(url).env("RUST_LOG", "error");
    command
}

fn start_worker(config: &Path, url: &str, id: &str) -> Child {
    refill(config, url)
        .args(["worker", "--id", id, "--lease", "2", "--heartbeat", "0.5", "--concurrency", "2"])
        .args(["--poll-ms", "50", "--no-schedules"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker")
}

fn audit(config: &Path, url: &str) -> (bool, String) {
    let output = refill(config, url).args(["jobs", "audit-probes"]).output().expect("run audit-probes");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn crash_run(url: &str, seed: u64) {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let status = refill(&config, url)
        .args(["jobs", "enqueue-probes", "--count", &JOBS.to_string(), "--work-ms", "20"])
        .status()
        .expect("enqueue probes");
    assert!(status.success());
    let mut workers: Vec<Child> = (1..=3).map(|i| start_worker(&config, url, &format!("w{i}"))).collect();
    // A small deterministic generator: the seed is printed so a failure can be replayed.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(150 + next() % 350));
        let victim = (next() % 3) as usize;
        workers[victim].kill().expect("SIGKILL a worker");
        let _ = workers[victim].wait();
        eprintln!("seed {seed}: kill {kill} hit w{}", victim + 1);
        workers[victim] = start_worker(&config, url, &format!("w{}", victim + 1));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut passed, mut line) = audit(&config, url);
    while !passed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        (passed, line) = audit(&config, url);
    }
    for worker in &mut workers {
        let _ = worker.kill();
        let _ = worker.wait();
    }
    assert!(passed, "seed {seed}: not exactly once: {line}");
    assert!(line.contains(" 0 unfinished"), "{line}");
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
    })
}

#[test]
fn killed_sqlite_workers_leave_every_job_done_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("crash.db").display());
    crash_run(&url, seed());
}

#[test]
fn killed_postgres_workers_leave_every_job_done_exactly_once() {
    let admin = std::env::var("REFILL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let database = format!("refill_jobs_crash_{}", std::process::id());
    let created = Command::new("psql").arg(&admin).args(["-qc", &format!("create database {database}")]).status();
    if !created.is_ok_and(|s| s.success()) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PostgreSQL (psql {admin}) is unreachable and CI=true");
        }
        eprintln!("notice: PostgreSQL unreachable; skipping the PostgreSQL crash test");
        return;
    }
    let url = format!("{}/{database}", admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin));
    let result = std::panic::catch_unwind(|| crash_run(&url, seed()));
    let _ = Command::new("psql")
        .arg(&admin)
        .args(["-qc", &format!("drop database if exists {database} with (force)")])
        .status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
