//! Issue 17, operations, through the binary: `refill` runs from a folder without `config/` (built-in
//! configuration and policy, checks before writing), names a missing configuration folder, and
//! `refill backup` / `refill restore` round-trip a SQLite database with every table and the audit chain
//! checked; a tampered backup is refused and the database it would replace is left alone.

use std::path::Path;
use std::process::{Command, Output};

use refill_store::{AuditKey, Store, StoreSettings};

/// Run the binary in `dir` without any configuration from the environment.
fn refill(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refill"))
        .args(args)
        .current_dir(dir)
        .env_remove("REFILL_CONFIG_DIR")
        .env_remove("REFILL_ENV")
        .env("REFILL_PASSWORD", "violet-harbour-lantern-9")
        .output()
        .expect("the binary runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

async fn open(path: &Path) -> Store {
    // Outside production the built-in configuration uses the development audit key.
    let key = AuditKey::new(refill_clinic::context::DEVELOPMENT_AUDIT_KEY.as_bytes());
    Store::connect(&StoreSettings::new(format!("sqlite:{}", path.display()), key)).await.expect("open")
}

#[test]
fn the_binary_runs_from_a_folder_without_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    let version = refill(dir.path(), &["--version"]);
    assert!(version.status.success() && text(&version).starts_with("refill "), "{}", text(&version));

    let completions = refill(dir.path(), &["completions", "bash"]);
    assert!(completions.status.success() && text(&completions).contains("_refill()"), "{}", text(&completions));

    let demo = refill(dir.path(), &["demo", "--no-serve", "--patients", "25", "--db", "demo.db"]);
    assert!(demo.status.success(), "{}", text(&demo));
    assert!(dir.path().join("demo.db").exists());

    let missing = refill(dir.path(), &["--config", "/nonexistent-config", "check-config"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("/nonexistent-config"), "the folder is named: {}", text(&missing));

    let nowhere = refill(dir.path(), &["demo", "--no-serve", "--patients", "5", "--db", "no-such-folder/demo.db"]);
    assert!(!nowhere.status.success());
    assert_eq!(text(&nowhere).matches("no-such-folder").count(), 1, "named once: {}", text(&nowhere));
    assert!(!dir.path().join("no-such-folder").exists(), "nothing written");
}

#[tokio::test]
async fn backup_and_restore_round_trip_every_table_and_the_audit_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path();
    let demo = refill(path, &["demo", "--no-serve", "--patients", "40", "--db", "live.db"]);
    assert!(demo.status.success(), "{}", text(&demo));
    let live = ["--database", "sqlite:live.db"];
    let checkpoint = refill(path, &[&live[..], &["audit", "checkpoint", "--checkpoint-file", "cp.log"]].concat());
    assert!(checkpoint.status.success(), "{}", text(&checkpoint));
    let backup = refill(path, &[&live[..], &["backup", "backup.db"]].concat());
    assert!(backup.status.success(), "{}", text(&backup));
    let again = refill(path, &[&live[..], &["backup", "backup.db"]].concat());
    assert!(!again.status.success() && text(&again).contains("never overwrites"), "{}", text(&again));
    // The clinic carries on after the backup: the backup is the state of its instant.
    let later =
        refill(path, &[&live[..], &["user", "add", "later", "--role", "staff", "--name", "Later Person"]].concat());
    assert!(later.status.success(), "{}", text(&later));

    let restored_args = ["--database", "sqlite:restored.db"];
    let restore = refill(path, &[&restored_args[..], &["restore", "backup.db"]].concat());
    assert!(restore.status.success(), "{}", text(&restore));
    let restored = open(&path.join("restored.db")).await;
    let differences = restored.sqlite_differences(&path.join("backup.db")).await.expect("compare");
    assert!(differences.is_empty(), "every table as in the backup: {differences:?}");
    assert!(restored.sqlite_tables().await.expect("tables").len() > 20);
    assert!(restored.verify_audit_chain(None).await.expect("chain").is_intact());
    assert!(restored.verify_state().await.expect("state").is_intact());
    let versus_live = restored.sqlite_differences(&path.join("live.db")).await.expect("compare");
    assert!(versus_live.iter().any(|d| d.table == "users" && d.only_there == 1), "{versus_live:?}");
    restored.close().await;
    let verify = refill(path, &[&restored_args[..], &["audit", "verify", "--checkpoint-file", "cp.log"]].concat());
    assert!(verify.status.success(), "{}", text(&verify));

    // A backup edited behind the audit trail is refused, and the database stays as it was.
    std::fs::copy(path.join("backup.db"), path.join("edited.db")).expect("copy");
    let edited = open(&path.join("edited.db")).await;
    if let refill_store::Pools::Sqlite { write, .. } = &edited.pools {
        sqlx::query("UPDATE patients SET part2 = 1 - part2 WHERE id = (SELECT min(id) FROM patients)")
            .execute(write)
            .await
            .expect("edit");
    }
    edited.close().await;
    let before = std::fs::read(path.join("restored.db")).expect("read");
    let refused = refill(path, &[&restored_args[..], &["restore", "--force", "edited.db"]].concat());
    assert!(!refused.status.success());
    assert!(text(&refused).contains("do not match their seal"), "{}", text(&refused));
    assert_eq!(std::fs::read(path.join("restored.db")).expect("read"), before, "left alone");
}

/// CLI errors that help: a bad date names the format, a database in a missing folder names the folder
/// once, `import --help` lists every file kind, a bad hand-written file names the line and the key.
#[test]
fn command_line_errors_name_what_to_fix() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path();
    let date = refill(path, &["--database", "sqlite:x.db", "jobs", "run-daily", "--date", "tomorrow"]);
    assert!(!date.status.success() && text(&date).contains("YYYY-MM-DD"), "{}", text(&date));
    let folder = refill(path, &["--database", "sqlite:missing-folder/x.db", "migrate"]);
    assert!(!folder.status.success());
    assert_eq!(text(&folder).matches("missing-folder").count(), 1, "{}", text(&folder));
    let help = text(&refill(path, &["import", "--help"]));
    for kind in refill_import::CsvKind::ALL {
        assert!(help.contains(&format!("{}.csv", kind.file_prefix())), "{} missing from\n{help}", kind.file_prefix());
    }
    let request = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/taper/va-slower.toml"))
        .expect("example");
    std::fs::write(path.join("bad.toml"), request.replace("start_on = \"2026-01-05\"", "start_on = \"soon\""))
        .expect("write");
    let taper = refill(path, &["taper", "plan", "bad.toml"]);
    assert!(text(&taper).contains("bad.toml line 3, key start_on"), "{}", text(&taper));
}
