//! Small shared types of the store: who acts (`Actor`), row id newtypes, and the current time as the
//! store records it.

use chrono::{DateTime, SubsecRound, Utc};

/// Who performs a change or a view: a user id (opaque, e.g. `user:17`) and their role, or the system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    /// Opaque identifier written to rows and the audit trail (never a name or an email address).
    pub id: String,
    /// `staff`, `physician`, `admin`, `system`, ...
    pub role: String,
}

impl Actor {
    pub fn new(id: impl Into<String>, role: impl Into<String>) -> Actor {
        Actor { id: id.into(), role: role.into() }
    }

    /// The daily pipeline, jobs and imports.
    pub fn system() -> Actor {
        Actor::new("system", "system")
    }
}

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

row_id!(
    /// A row of `decisions`.
    DecisionId
);
row_id!(
    /// A row of `exceptions`.
    ExceptionId
);
row_id!(
    /// A row of `daily_queue`.
    QueueItemId
);
row_id!(
    /// A row of `refill_requests`.
    RefillRequestId
);
row_id!(
    /// A row of `taper_plans`.
    TaperPlanId
);

/// Now, truncated to microseconds: both backends keep exactly this precision, so a value read back
/// equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
