//! 42 CFR Part 2 masking in one place. Whether a person may see a patient's Part 2 records right now is
//! one typed value, [`Part2Access`], decided by [`Part2Access::for_patient`] (a physician with an
//! active break-the-glass grant to that patient; nobody else, and never on the queue); and every screen
//! masks a restricted piece of text through one function, [`Part2Access::show`]. The words that replace
//! it say who acts and nothing of what the record holds.

use refill_store::accounts::Role;

use crate::auth::Principal;
use crate::{AppState, WebError};

/// What replaces a restricted fact in full text (a reason, a timeline entry, a rationale).
pub const RESTRICTED: &str = "restricted information: physician review required";

/// What replaces a restricted fact where one short line is shown (a queue row, a task that is due):
/// a "Confirmatory test" or "Naloxone offer" due would itself say what the record holds.
pub const RESTRICTED_HEADLINE: &str = "Physician follow-up";

/// Whether the viewer sees a patient's Part 2 records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Part2Access {
    /// Restricted facts are replaced by neutral words (everyone by default, and everyone on the queue).
    #[default]
    Masked,
    /// A physician with an active break-the-glass grant to this patient.
    Open,
}

impl Part2Access {
    /// The access `principal` has to `patient_id`'s Part 2 records now.
    pub async fn for_patient(state: &AppState, principal: &Principal, patient_id: i64) -> Result<Self, WebError> {
        let Some(user) = principal.user() else { return Ok(Part2Access::Masked) };
        if user.role != Role::Physician {
            return Ok(Part2Access::Masked);
        }
        let grant =
            refill_store::accounts::active_break_glass(&state.store, user.id, patient_id, state.clock.now_ms()).await?;
        Ok(if grant.is_some() { Part2Access::Open } else { Part2Access::Masked })
    }

    pub fn is_open(self) -> bool {
        self == Part2Access::Open
    }

    /// Whether a fact that is `restricted` is hidden from this viewer.
    pub fn hides(self, restricted: bool) -> bool {
        restricted && !self.is_open()
    }

    /// The one masking function: `text()` when the viewer may see it (or it is not restricted), the
    /// neutral words otherwise. `text` is only built when shown.
    pub fn show(self, restricted: bool, text: impl FnOnce() -> String) -> String {
        if self.hides(restricted) { RESTRICTED.to_string() } else { text() }
    }
}

/// Callers that hold the grant as a flag (`true`: open).
impl From<bool> for Part2Access {
    fn from(open: bool) -> Self {
        if open { Part2Access::Open } else { Part2Access::Masked }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_text_is_shown_only_with_open_access() {
        let secret = || "buprenorphine from another source".to_string();
        assert_eq!(Part2Access::Masked.show(true, secret), RESTRICTED);
        assert_eq!(Part2Access::Open.show(true, secret), "buprenorphine from another source");
        assert_eq!(Part2Access::Masked.show(false, secret), "buprenorphine from another source");
        assert_eq!(Part2Access::default(), Part2Access::Masked, "masked unless granted");
        assert_eq!(Part2Access::from(true), Part2Access::Open);
    }
}
