//! CDS Hooks advice: the refill rules' decision for the patient an EHR is ordering for or viewing, as
//! cards, so the EHR and the clinic never disagree.
//!
//! One code path: an enrolled patient's facts are loaded by the store's `load_patient_facts` (the
//! queries the daily run and decide-and-record use), the draft order is merged into the regimen, and
//! the decision comes from [`crate::decide::evaluate`], the function decide-and-record uses. Nothing
//! is recorded but the audit event of the view: the card shows what the queue shows for the same facts. A patient the clinic
//! has not enrolled is decided on what the EHR sent (`HookCall::ehr_facts`) by the same rules, and
//! only the guideline checks of the hook are shown (MME, naloxone, concurrent benzodiazepine, PDMP,
//! drug tests), not the clinic's refill protocol, which does not apply to them.
//!
//! Cards never advise stopping therapy: a high dose asks for a benefit-risk review and, if a taper is
//! chosen, a gradual one with the patient; an unexpected drug test asks for confirmation and a talk.

use chrono::NaiveDate;
use refill_rules::{
    ClinicFacts, Decision, EvidenceValue, MedicationOrder, OtherMedication, Outcome, PatientFacts, PatientId, Reason,
    ReasonCode, TaperState,
};
use refill_store::{Actor, AuditEvent, ExceptionStatus};

use crate::{App, AppError};

/// The hooks the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    PatientView,
    OrderSelect,
    OrderSign,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::PatientView, Hook::OrderSelect, Hook::OrderSign];

    /// The CDS Hooks name of the hook.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::PatientView => "patient-view",
            Hook::OrderSelect => "order-select",
            Hook::OrderSign => "order-sign",
        }
    }

    pub fn parse(text: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|hook| hook.as_str() == text)
    }
}

/// One hook call, as typed facts (the web maps the request's FHIR through `refill-fhir`).
#[derive(Debug, Clone)]
pub struct HookCall {
    pub hook: Hook,
    /// The EHR's patient id (`context.patientId` without `Patient/`): an enrolled patient's external id.
    pub ehr_patient_id: String,
    /// Opioid orders in `draftOrders` (the order being selected or signed).
    pub draft_orders: Vec<MedicationOrder>,
    /// Benzodiazepine and opioid-use-disorder orders in `draftOrders`.
    pub draft_other: Vec<OtherMedication>,
    /// Everything else the EHR sent, as facts (draft orders left out: they are merged like an enrolled
    /// patient's): what a patient who is not enrolled is decided on.
    pub ehr_facts: PatientFacts,
}

/// How urgent a card is (CDS Hooks `indicator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Indicator {
    Info,
    Warning,
    Critical,
}

impl Indicator {
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::Info => "info",
            Indicator::Warning => "warning",
            Indicator::Critical => "critical",
        }
    }
}

/// What a card is about; stable names (`kind`) the feedback and the tests refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardKind {
    RefillDecision,
    HighMme,
    MmeUndetermined,
    Naloxone,
    ConcurrentBenzodiazepine,
    PdmpReview,
    DrugTestDue,
    DrugTestResult,
    TaperInProgress,
    OpenException,
    /// A card resting on a 42 CFR Part 2 record: the EHR user is not known to have access.
    Restricted,
}

impl CardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CardKind::RefillDecision => "refill-decision",
            CardKind::HighMme => "high-mme",
            CardKind::MmeUndetermined => "mme-undetermined",
            CardKind::Naloxone => "naloxone",
            CardKind::ConcurrentBenzodiazepine => "concurrent-benzodiazepine",
            CardKind::PdmpReview => "pdmp-review",
            CardKind::DrugTestDue => "drug-test-due",
            CardKind::DrugTestResult => "drug-test-result",
            CardKind::TaperInProgress => "taper-in-progress",
            CardKind::OpenException => "open-exception",
            CardKind::Restricted => "restricted",
        }
    }

    /// The CDC 2022 recommendation(s) the card follows, for its source.
    pub fn guideline(self) -> &'static str {
        match self {
            CardKind::HighMme | CardKind::MmeUndetermined => "CDC 2022 Recommendations 4 and 5",
            CardKind::Naloxone => "CDC 2022 Recommendation 8",
            CardKind::PdmpReview => "CDC 2022 Recommendation 9",
            CardKind::DrugTestDue | CardKind::DrugTestResult => "CDC 2022 Recommendation 10",
            CardKind::ConcurrentBenzodiazepine => "CDC 2022 Recommendation 11",
            CardKind::RefillDecision | CardKind::TaperInProgress | CardKind::OpenException | CardKind::Restricted => {
                "Refill clinic protocol (CDC 2022 Recommendations 1-12)"
            }
        }
    }
}

/// An order the card offers to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suggestion {
    OrderNaloxone,
    OrderDrugTest,
}

/// One card as data: the web writes it as CDS Hooks JSON (and the reasons in words, masked).
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub kind: CardKind,
    pub indicator: Indicator,
    /// One sentence, under 140 characters.
    pub summary: String,
    /// What the card says beyond the summary (the reasons follow it, in words).
    pub detail: String,
    /// The reasons of the decision the card rests on.
    pub reasons: Vec<Reason>,
    pub suggestions: Vec<Suggestion>,
    /// The decision's outcome, on the refill-decision card.
    pub outcome: Option<Outcome>,
}

/// The advice for one hook call.
#[derive(Debug, Clone)]
pub struct Advice {
    /// The clinic's patient, when the EHR's patient is enrolled.
    pub enrolled: Option<PatientId>,
    /// The decision the cards come from (for an enrolled patient, the queue's decision for the facts).
    pub decision: Decision,
    pub cards: Vec<Card>,
    /// The audit event of viewing an enrolled patient's record, for the adapter to record.
    pub view_event: Option<AuditEvent>,
}

/// The most a summary may say (CDS Hooks: "less than 140 characters").
pub const SUMMARY_MAX_CHARS: usize = 139;

/// Advise on one hook call. Reads only, through the store's read pool (as the queue screens do), so
/// concurrent EHR calls never wait for the writer; for an enrolled patient the returned
/// `Advice::view_event` is the audit event of the view, which the adapter records (group-committed
/// with the other views).
///
/// # Errors
/// Store errors.
pub async fn advise(
    app: &App,
    clinic: &ClinicFacts,
    call: &HookCall,
    today: NaiveDate,
    actor: &Actor,
) -> Result<Advice, AppError> {
    let enrolled = app.store.patient_by_external_id(&call.ehr_patient_id).await?.map(|record| record.id);
    let Some(patient) = enrolled else {
        let mut facts = call.ehr_facts.clone();
        merge_drafts(&mut facts, call);
        let decision = crate::decide::evaluate(app, &facts, clinic, today);
        let cards = guideline_cards(call, &facts, &decision, false);
        return Ok(Advice { enrolled: None, decision, cards, view_event: None });
    };
    let mut facts = app.store.load_patient_facts(patient, today).await?;
    merge_drafts(&mut facts, call);
    let decision = crate::decide::evaluate(app, &facts, clinic, today);
    let mut cards = vec![decision_card(&decision)];
    cards.extend(guideline_cards(call, &facts, &decision, true));
    if call.hook == Hook::PatientView {
        cards.extend(taper_card(&facts));
        let open = app
            .store
            .exceptions_for_patient(patient)
            .await?
            .into_iter()
            .filter(|exception| exception.status == ExceptionStatus::Open)
            .map(|exception| exception.clinic_date)
            .min();
        if let Some(since) = open {
            cards.push(Card {
                kind: CardKind::OpenException,
                indicator: Indicator::Warning,
                summary: format!("A physician review is open at the refill clinic since {since}"),
                detail: "The refill waits for a physician's signed decision; the clinic acts before the supply \
                         runs out (a bridge is offered when needed)."
                    .into(),
                reasons: Vec::new(),
                suggestions: Vec::new(),
                outcome: None,
            });
        }
    }
    let event = AuditEvent::new(actor, "cds.advise", "patient")
        .patient(patient)
        .resource_id(patient.0.to_string())
        .detail(serde_json::json!({"hook": call.hook.as_str(), "outcome": decision.outcome.as_str()}));
    Ok(Advice { enrolled: Some(patient), decision, cards, view_event: Some(event) })
}

/// The draft order joins the regimen of record: the same product at the same dose is the refill of the
/// order on record (nothing changes); the same product at another dose replaces it (a dose change the
/// rules then see); a new product is added. Draft benzodiazepines and treatment orders join the other
/// medications.
pub fn merge_drafts(facts: &mut PatientFacts, call: &HookCall) {
    for draft in &call.draft_orders {
        match facts.regimen.iter_mut().find(|order| same_product(order, draft)) {
            Some(order) if order.dose == draft.dose && order.doses_per_day == draft.doses_per_day => {}
            Some(order) => *order = draft.clone(),
            None => facts.regimen.push(draft.clone()),
        }
    }
    for draft in &call.draft_other {
        let known = facts.other_medications.iter().any(|m| m.active && m.class == draft.class && m.text == draft.text);
        if !known {
            facts.other_medications.push(draft.clone());
        }
    }
}

fn same_product(a: &MedicationOrder, b: &MedicationOrder) -> bool {
    match (&a.rxcui, &b.rxcui) {
        (Some(x), Some(y)) => x == y,
        _ => match (&a.text, &b.text) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        },
    }
}

/// The refill protocol's decision for an enrolled patient.
fn decision_card(decision: &Decision) -> Card {
    let due = decision.tasks.len();
    let (indicator, summary) = match decision.outcome {
        Outcome::Approve => (Indicator::Info, "Refill clinic protocol: the refill can be approved".to_string()),
        Outcome::ApproveWithTasks => (
            Indicator::Info,
            format!("Refill clinic protocol: approve, with {due} task{} due", if due == 1 { "" } else { "s" }),
        ),
        Outcome::Hold => {
            (Indicator::Warning, "Refill clinic protocol: hold the refill until what is due is done".to_string())
        }
        Outcome::Escalate => {
            (Indicator::Warning, "Refill clinic protocol: a physician reviews this refill before it is released".into())
        }
        Outcome::EscalateUrgent => (
            Indicator::Critical,
            "Refill clinic protocol: urgent physician review; a bridge is offered so the supply does not run out"
                .into(),
        ),
    };
    let detail = format!(
        "The clinic's queue shows the same decision for these facts (policy {}). Only a physician changes \
         therapy, and never abruptly.",
        decision.policy_version
    );
    Card {
        kind: CardKind::RefillDecision,
        indicator,
        summary,
        detail,
        reasons: decision.reasons.clone(),
        suggestions: Vec::new(),
        outcome: Some(decision.outcome),
    }
}

/// The guideline checks the hook makes, from the decision's reasons. Only for a patient on an opioid
/// (or being prescribed one): the checks concern opioid therapy. A patient outside the guideline's
/// scope (cancer, sickle cell, palliative or end-of-life care, a minor) who is not enrolled gets none.
fn guideline_cards(call: &HookCall, facts: &PatientFacts, decision: &Decision, enrolled: bool) -> Vec<Card> {
    let on_opioid = !facts.regimen.is_empty();
    if !on_opioid || (!enrolled && decision.reasons.iter().any(|r| r.code == ReasonCode::OutsideScope)) {
        return Vec::new();
    }
    let reasons = |codes: &[ReasonCode]| -> Vec<Reason> {
        decision.reasons.iter().filter(|r| codes.contains(&r.code)).cloned().collect()
    };
    let wanted: &[CardKind] = match call.hook {
        // Early and incomplete order data: only what the drug's identity (and dose, when given) shows.
        Hook::OrderSelect => &[CardKind::HighMme, CardKind::MmeUndetermined, CardKind::ConcurrentBenzodiazepine],
        Hook::OrderSign => &[
            CardKind::HighMme,
            CardKind::MmeUndetermined,
            CardKind::Naloxone,
            CardKind::ConcurrentBenzodiazepine,
            CardKind::PdmpReview,
            CardKind::DrugTestDue,
            CardKind::DrugTestResult,
        ],
        Hook::PatientView => &[
            CardKind::HighMme,
            CardKind::Naloxone,
            CardKind::ConcurrentBenzodiazepine,
            CardKind::PdmpReview,
            CardKind::DrugTestDue,
            CardKind::DrugTestResult,
        ],
    };
    let mut cards = Vec::new();
    for kind in wanted {
        let card = match kind {
            CardKind::HighMme => high_mme_card(reasons(&[
                ReasonCode::HighMmeReviewOverdue,
                ReasonCode::HighMmeReviewed,
                ReasonCode::MmeCrossedThreshold,
            ])),
            CardKind::MmeUndetermined => simple_card(
                *kind,
                Indicator::Warning,
                "The total daily MME could not be determined: check the dose and timing of the opioid orders",
                "An order whose dose cannot be read is never counted as zero.",
                reasons(&[ReasonCode::MmeUndetermined]),
                &[],
            ),
            CardKind::Naloxone => simple_card(
                *kind,
                Indicator::Warning,
                "Offer naloxone: factors that increase the risk of opioid overdose are present",
                "Consider offering naloxone given the risk factors below.",
                reasons(&[ReasonCode::NaloxoneOfferDue]),
                &[Suggestion::OrderNaloxone],
            ),
            CardKind::ConcurrentBenzodiazepine => {
                benzodiazepine_card(call, reasons(&[ReasonCode::BenzodiazepineUnacknowledged]))
            }
            CardKind::PdmpReview => simple_card(
                *kind,
                Indicator::Warning,
                "Review the PDMP before prescribing: no review on record within the policy interval",
                "Check the state prescription drug monitoring program for other controlled substances.",
                reasons(&[ReasonCode::PdmpReviewOverdue, ReasonCode::PdmpOutsidePrescriber]),
                &[],
            ),
            CardKind::DrugTestDue => simple_card(
                *kind,
                Indicator::Warning,
                "Urine drug test due: none on record within the testing interval",
                "Patients on long-term opioid therapy should have a urine drug test at least every 12 months.",
                reasons(&[ReasonCode::UdsOverdue]),
                &[Suggestion::OrderDrugTest],
            ),
            CardKind::DrugTestResult => simple_card(
                *kind,
                Indicator::Warning,
                "Unexpected urine drug test result: confirm it and discuss it with the patient",
                "An unexpected result is confirmed and discussed; it is never a reason to dismiss the patient \
                 or stop therapy abruptly.",
                reasons(&[
                    ReasonCode::UdsUnexpectedResult,
                    ReasonCode::UdsPrescribedNotTested,
                    ReasonCode::UdsSpecimenInvalid,
                ]),
                &[Suggestion::OrderDrugTest],
            ),
            _ => None,
        };
        cards.extend(card.map(mask_restricted));
    }
    cards
}

fn simple_card(
    kind: CardKind,
    indicator: Indicator,
    summary: &str,
    detail: &str,
    reasons: Vec<Reason>,
    suggestions: &[Suggestion],
) -> Option<Card> {
    if reasons.is_empty() {
        return None;
    }
    Some(Card {
        kind,
        indicator,
        summary: summary.to_string(),
        detail: detail.to_string(),
        reasons,
        suggestions: suggestions.to_vec(),
        outcome: None,
    })
}

fn number(reason: &Reason, name: &str) -> Option<f64> {
    reason.evidence.iter().find(|e| e.name == name).and_then(|e| match e.value {
        EvidenceValue::Number(value) => Some(value),
        EvidenceValue::Integer(value) => Some(value as f64),
        _ => None,
    })
}

fn high_mme_card(reasons: Vec<Reason>) -> Option<Card> {
    let first = reasons.first()?;
    let total = number(first, "total_daily_mme");
    let reviewed = reasons.iter().all(|r| r.code == ReasonCode::HighMmeReviewed);
    let summary = match total {
        Some(total) if reviewed => format!("High opioid dose ({total:.0} MME/day), benefit-risk review current"),
        Some(total) => format!("High opioid dose: {total:.0} MME/day; reassess benefits and risks with the patient"),
        None => "High opioid dose: reassess benefits and risks with the patient".to_string(),
    };
    Some(Card {
        kind: CardKind::HighMme,
        indicator: if reviewed { Indicator::Info } else { Indicator::Warning },
        summary,
        detail: "Avoid increasing the dose; if the benefits no longer outweigh the risks, consider a gradual \
                 taper agreed with the patient. Never stop opioids abruptly."
            .into(),
        reasons,
        suggestions: Vec::new(),
        outcome: None,
    })
}

fn benzodiazepine_card(call: &HookCall, reasons: Vec<Reason>) -> Option<Card> {
    if reasons.is_empty() {
        return None;
    }
    let detail = if !call.draft_other.is_empty() {
        "The benzodiazepine prescription request is concurrent with an active opioid prescription."
    } else if !call.draft_orders.is_empty() {
        "The opioid prescription request is concurrent with an active benzodiazepine prescription."
    } else {
        "An opioid and a benzodiazepine are prescribed concurrently."
    };
    Some(Card {
        kind: CardKind::ConcurrentBenzodiazepine,
        indicator: Indicator::Warning,
        summary: "Avoid prescribing opioid pain medication and benzodiazepine concurrently whenever possible.".into(),
        detail: format!("{detail} Do not stop either abruptly."),
        reasons,
        suggestions: Vec::new(),
        outcome: None,
    })
}

/// A card resting on a Part 2 record says only that: its subject would reveal the record.
fn mask_restricted(card: Card) -> Card {
    if !card.reasons.iter().any(|r| r.restricted) {
        return card;
    }
    Card {
        kind: CardKind::Restricted,
        indicator: card.indicator,
        summary: "Restricted information: physician review required".into(),
        detail: "This check rests on a record protected by 42 CFR Part 2.".into(),
        reasons: card.reasons,
        suggestions: Vec::new(),
        outcome: card.outcome,
    }
}

/// A taper in progress, for the patient's chart.
fn taper_card(facts: &PatientFacts) -> Option<Card> {
    let taper = facts.taper.as_ref()?;
    let summary = match taper.state {
        TaperState::Active => {
            format!("Taper in progress at the refill clinic: current step since {}", taper.step_started_on)
        }
        TaperState::Paused => {
            format!("Taper paused at the refill clinic: the step since {} holds", taper.step_started_on)
        }
        TaperState::Completed => return None,
    };
    Some(Card {
        kind: CardKind::TaperInProgress,
        indicator: Indicator::Info,
        summary,
        detail: "The clinic dispenses only the step the physician signed, one step at a time, each after a check-in."
            .into(),
        reasons: Vec::new(),
        suggestions: Vec::new(),
        outcome: None,
    })
}
