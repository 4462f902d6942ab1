//! `refill user`: manage accounts and wall-display sessions from the command line (the first admin
//! account is made here). Passwords are read from the `REFILL_PASSWORD` environment variable or a line
//! on standard input, never from a flag (flags show up in process lists and shell history).

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context as _;
use refill_store::accounts::{self, Role};

use crate::context::Context;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an account (password from REFILL_PASSWORD or standard input).
    Add {
        username: String,
        /// staff, physician or admin.
        #[arg(long)]
        role: String,
        /// The name shown on screens.
        #[arg(long)]
        name: String,
    },
    /// Set a new password (ends every session of the user).
    Passwd { username: String },
    /// Disable an account (ends its sessions) or enable it again.
    Disable {
        username: String,
        #[arg(long)]
        enable: bool,
    },
    /// List accounts.
    List,
    /// Wall-display sessions.
    #[command(subcommand)]
    WallSession(WallCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum WallCommand {
    /// Print a one-time enrolment URL path for a wall monitor (valid 24 hours).
    Issue {
        #[arg(long, default_value = "wall display")]
        label: String,
    },
    /// List wall sessions.
    List,
    /// Revoke a wall session by its handle (from `list`).
    Revoke { handle: String },
}

/// Who the audit trail names for changes made here: the operating-system account running the command
/// (the operator, not a clinic user).
fn operator() -> refill_store::Actor {
    let login = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    refill_store::Actor::new(format!("cli:{login}"), "operator")
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("REFILL_PASSWORD") {
        return Ok(password);
    }
    eprintln!("password (one line on standard input):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("could not read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn run(command: Command, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let store = context.open_store(&config).await?;
    let state = crate::cmd::serve::app_state(&config, store.clone(), true)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    match command {
        Command::Add { username, role, name } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("--role must be staff, physician or admin"))?;
            let password = read_password()?;
            let user = refill_web::pages::admin::create_account(&state, &username, &name, role, &password, &operator())
                .await
                .map_err(|e| anyhow::anyhow!("could not create {username}: {}", e.public_message()))?;
            println!("created {} ({}) id {}", user.username, user.role.as_str(), user.id);
        }
        Command::Passwd { username } => {
            let user = accounts::find_user_by_username(&store, &username.to_lowercase())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {username}"))?;
            let password = read_password()?;
            if let Some(problem) = refill_web::auth::password_problem(&password, &[&user.username, &user.display_name])
            {
                anyhow::bail!("password: {problem}");
            }
            let hash = refill_web::auth::hash_password(password).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            accounts::set_password_hash(&store, user.id, &hash, now_ms, &operator()).await?;
            println!("password changed for {}; their sessions ended", user.username);
        }
        Command::Disable { username, enable } => {
            let user = accounts::find_user_by_username(&store, &username.to_lowercase())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {username}"))?;
            accounts::set_disabled(&store, user.id, !enable, now_ms, &operator()).await?;
            println!("{} {}", user.username, if enable { "enabled" } else { "disabled; sessions ended" });
        }
        Command::List => {
            for user in accounts::list_users(&store).await? {
                let state = if user.is_disabled() { "disabled" } else { "active" };
                println!("{:<20} {:<10} {:<8} {}", user.username, user.role.as_str(), state, user.display_name);
            }
        }
        Command::WallSession(WallCommand::Issue { label }) => {
            let code = refill_web::pages::admin::issue_code(&state, &label, None, &operator())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.public_message()))?;
            println!("open once on the wall monitor: /wall/enter?code={code}");
        }
        Command::WallSession(WallCommand::List) => {
            for wall in accounts::list_wall_sessions(&store).await? {
                let state = if wall.ended_at_ms.is_some() { "ended" } else { "live" };
                println!("{}  {:<6} {}", wall.handle, state, wall.label.unwrap_or_default());
            }
        }
        Command::WallSession(WallCommand::Revoke { handle }) => {
            if accounts::revoke_wall_session(&store, &handle, now_ms, &operator()).await? {
                println!("revoked {handle}");
            } else {
                anyhow::bail!("no live wall session {handle}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
