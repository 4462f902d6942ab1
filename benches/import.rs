//! Import benchmark: a synthetic clinic of 100,000 patients (`refill-demo`, seed 2026) written as the
//! documented CSV files, then imported by the real `refill import` binary into a fresh SQLite file and
//! a fresh PostgreSQL database, each timed and measured with `/usr/bin/time -v` (wall time and peak
//! resident memory of the import process alone). A second import of the same files measures the
//! idempotent path (everything compared, nothing written).
//!
//! Run: `cargo bench --bench import` (optionally `REFILL_BENCH_PATIENTS=20000`,
//! `REFILL_TEST_POSTGRES_URL=postgres://...`). Not a test: it prints its method and figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::NaiveDate;
use sqlx::Connection;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Measured {
    wall_seconds: f64,
    peak_rss_mib: f64,
    summary: String,
}

fn main() {
    let patients: usize = std::env::var("REFILL_BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let work = tempfile::tempdir().expect("temporary folder");
    let csv_dir = work.path().join("csv");
    std::fs::create_dir_all(&csv_dir).unwrap();

    let started = Instant::now();
    let clinic = refill_demo::generate(&refill_demo::DemoSettings {
        patients,
        seed: 2026,
        today: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    });
    let mut files = Vec::new();
    let mut bytes = 0usize;
    for (name, contents) in clinic.csv_files() {
        let rows = contents.lines().count() - 1;
        bytes += contents.len();
        println!("  {name:<16} {rows:>9} rows {:>8.1} MiB", contents.len() as f64 / 1_048_576.0);
        let path = csv_dir.join(&name);
        std::fs::write(&path, contents).unwrap();
        files.push(path);
    }
    drop(clinic);
    println!(
        "generated {patients} patients as {} CSV files ({:.1} MiB) in {:.1} s",
        files.len(),
        bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    );

    let sqlite_url = format!("sqlite:{}", work.path().join("bench.db").display());
    report("SQLite", &sqlite_url, &files);

    let admin_url = std::env::var("REFILL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let database = format!("refill_bench_{}", std::process::id());
    let created = runtime.block_on(async {
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{database}\""))).execute(&mut admin).await.ok()
    });
    if created.is_none() {
        println!("PostgreSQL at {admin_url} is unreachable: PostgreSQL part skipped");
        return;
    }
    let pg_url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => admin_url.clone(),
    };
    report("PostgreSQL", &pg_url, &files);
    runtime.block_on(async {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
            let sql = format!("drop database if exists \"{database}\" with (force)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
        }
    });
}

fn report(backend: &str, url: &str, files: &[PathBuf]) {
    let first = import(url, files);
    println!(
        "{backend}: first import {:.1} s wall, peak RSS {:.0} MiB\n{}",
        first.wall_seconds, first.peak_rss_mib, first.summary
    );
    let again = import(url, files);
    println!(
        "{backend}: re-import (nothing changes) {:.1} s wall, peak RSS {:.0} MiB",
        again.wall_seconds, again.peak_rss_mib
    );
}

/// Run `refill import` under `/usr/bin/time -v`; the figures are the child's alone.
fn import(url: &str, files: &[PathBuf]) -> Measured {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_refill"))
        .args(["--database", url, "import"])
        .args(files)
        .current_dir(root)
        .output()
        .expect("run /usr/bin/time (Debian package `time`)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "import failed:\n{stdout}\n{stderr}");
    let field = |label: &str| {
        stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix(label).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let peak_kib: f64 = field("Maximum resident set size (kbytes):").parse().unwrap_or(0.0);
    Measured {
        wall_seconds: parse_elapsed(&field("Elapsed (wall clock) time (h:mm:ss or m:ss):")),
        peak_rss_mib: peak_kib / 1024.0,
        summary: stdout.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"),
    }
}

/// `m:ss.cc` or `h:mm:ss` as seconds.
fn parse_elapsed(text: &str) -> f64 {
    text.split(':').fold(0.0, |total, part| total * 60.0 + part.parse::<f64>().unwrap_or(0.0))
}
