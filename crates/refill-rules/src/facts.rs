//! The facts the rules read: one patient's regimen, fills, monitoring history and flags, the clinic's
//! roster, and the refill request being decided. Plain values, built by the shell from the store, FHIR
//! bundles, CSV or scenario files.

use chrono::NaiveDate;

/// How a patient prefers to be contacted (email only with consent; see the notifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContactPreference {
    Email,
    Phone,
    Portal,
    #[default]
    None,
}

impl ContactPreference {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactPreference::Email => "email",
            ContactPreference::Phone => "phone",
            ContactPreference::Portal => "portal",
            ContactPreference::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<ContactPreference> {
        [ContactPreference::Email, ContactPreference::Phone, ContactPreference::Portal, ContactPreference::None]
            .into_iter()
            .find(|preference| preference.as_str() == text)
    }
}

/// Internal patient id: an integer so the daily pipeline can split patients into id ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatientId(pub i64);

/// A prescriber (physician or other clinician), by an opaque stable identifier such as an NPI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrescriberId(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

/// Whether a fact is a 42 CFR Part 2 record (substance-use-disorder treatment from a Part 2 program).
/// The rules see every fact; reasons that rest on a Part 2 fact are marked `restricted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Confidentiality {
    #[default]
    Normal,
    Part2,
}

impl Confidentiality {
    pub fn is_restricted(self) -> bool {
        self == Confidentiality::Part2
    }
}

/// ORT-derived risk tier, possibly raised by a physician.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskTier {
    Low,
    Moderate,
    High,
}

/// The unit of a dose per administration, as normalised from the order.
#[derive(Debug, Clone, PartialEq)]
pub enum DoseUnit {
    /// Milligrams of the opioid ingredient (the product strength is then ignored).
    Milligram,
    /// Micrograms of the opioid ingredient.
    Microgram,
    /// Millilitres of an oral solution (multiplied by the product's mg/mL strength).
    Milliliter,
    /// Countable dose-form units: tablets, capsules, patches, films, sprays.
    DoseFormUnit,
    /// A unit the engine cannot use (for example a bare `1` with no unit): MME is undetermined.
    Unusable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DoseQuantity {
    pub value: f64,
    pub unit: DoseUnit,
}

/// Why a medication was ordered: opioid products given for opioid use disorder are not counted in MME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OrderPurpose {
    #[default]
    Pain,
    OpioidUseDisorder,
}

/// One active medication order (prescription), normalised from FHIR, CSV or the store.
#[derive(Debug, Clone, PartialEq)]
pub struct MedicationOrder {
    /// The source's id, e.g. `MedicationRequest/abc`, kept for display and tracing back.
    pub id: String,
    /// RxNorm concept id of the product, when coded.
    pub rxcui: Option<String>,
    /// The product's text (RxNorm-style name or free text).
    pub text: Option<String>,
    /// Maximum dose per administration (the high end of a range).
    pub dose: Option<DoseQuantity>,
    /// Maximum administrations per day (frequencyMax over the shortest period); `None` if no timing.
    pub doses_per_day: Option<f64>,
    /// Days of supply on the order (for transdermal systems the dose value is the patches worn at once).
    pub days_supply: Option<u32>,
    pub dispense_quantity: Option<f64>,
    pub prescriber: Option<PrescriberId>,
    pub purpose: OrderPurpose,
    pub confidentiality: Confidentiality,
}

impl MedicationOrder {
    /// The label screens and JSON use: the text, else `RxNorm <code>`, else the id.
    pub fn label(&self) -> String {
        match (&self.text, &self.rxcui) {
            (Some(text), _) => text.clone(),
            (None, Some(code)) => format!("RxNorm {code}"),
            (None, None) => self.id.clone(),
        }
    }
}

/// A fill: when the supply was handed over (dispense date, else the prescription's fill date).
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub filled_on: NaiveDate,
    pub days_supply: u32,
    pub order_id: Option<String>,
    pub quantity: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdsKind {
    Scheduled,
    ForCause,
}

/// One analyte (or assay channel) in a urine drug test result.
#[derive(Debug, Clone, PartialEq)]
pub struct UdsAnalyteResult {
    /// The assay that produced it: an immunoassay name (`opiates`, `oxycodone`, `fentanyl`, ...) or
    /// `lcms` / `gcms` for confirmatory testing.
    pub assay: String,
    /// The analyte reported, lower case (`morphine`, `oxymorphone`, `6-acetylmorphine`, `cocaine`);
    /// for a class immunoassay this may equal the assay name.
    pub analyte: String,
    pub detected: bool,
}

/// Specimen validity as the laboratory reported it (creatinine, specific gravity, temperature,
/// adulterant and oxidant flags). An invalid or adulterated specimen shows nothing about what was
/// taken: its result is not read, and a recollection is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpecimenValidity {
    /// Validity was not reported (point-of-care cups without validity strips, older imports).
    #[default]
    NotReported,
    /// Creatinine, specific gravity, temperature and adulterant checks passed.
    Valid,
    /// Dilute (creatinine 2-20 mg/dL with low specific gravity): negatives are weak evidence.
    Dilute,
    /// Substituted, adulterated, or out of the physiological range (creatinine < 2 mg/dL, specific
    /// gravity <= 1.0010 or >= 1.0200 with that creatinine, temperature outside 32-38 C, an oxidant or
    /// pH flag).
    Invalid,
}

impl SpecimenValidity {
    pub const ALL: [SpecimenValidity; 4] =
        [SpecimenValidity::NotReported, SpecimenValidity::Valid, SpecimenValidity::Dilute, SpecimenValidity::Invalid];

    /// The stable wire name (scenario files, CSV, the store's `specimen_validity` column).
    pub fn as_str(self) -> &'static str {
        match self {
            SpecimenValidity::NotReported => "not_reported",
            SpecimenValidity::Valid => "valid",
            SpecimenValidity::Dilute => "dilute",
            SpecimenValidity::Invalid => "invalid",
        }
    }

    pub fn parse(text: &str) -> Option<SpecimenValidity> {
        SpecimenValidity::ALL.into_iter().find(|validity| validity.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UdsResult {
    pub collected_on: NaiveDate,
    pub kind: UdsKind,
    /// Confirmatory (GC/LC-MS) rather than presumptive (immunoassay).
    pub confirmatory: bool,
    pub analytes: Vec<UdsAnalyteResult>,
    /// Date a physician reviewed this result; a reviewed result no longer escalates.
    pub physician_reviewed_on: Option<NaiveDate>,
    pub confidentiality: Confidentiality,
    /// What the laboratory said about the specimen itself.
    pub specimen_validity: SpecimenValidity,
}

/// Urine drug screening state: the date the scheduler drew, any for-cause order, the results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UdsFacts {
    /// The randomly drawn date of the next scheduled test (see `uds::draw_next_date`).
    pub scheduled_due: Option<NaiveDate>,
    /// A for-cause test ordered and not yet collected.
    pub for_cause_due: Option<NaiveDate>,
    pub results: Vec<UdsResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrugClass {
    Opioid,
    Benzodiazepine,
    OtherControlled,
    /// Buprenorphine or methadone dispensed for opioid use disorder.
    OudTreatment,
}

impl DrugClass {
    pub const ALL: [DrugClass; 4] =
        [DrugClass::Opioid, DrugClass::Benzodiazepine, DrugClass::OtherControlled, DrugClass::OudTreatment];

    /// The stable wire name (scenario files, the store's PDMP findings, acknowledgements).
    pub fn as_str(self) -> &'static str {
        match self {
            DrugClass::Opioid => "opioid",
            DrugClass::Benzodiazepine => "benzodiazepine",
            DrugClass::OtherControlled => "other_controlled",
            DrugClass::OudTreatment => "oud_treatment",
        }
    }

    pub fn parse(text: &str) -> Option<DrugClass> {
        DrugClass::ALL.into_iter().find(|class| class.as_str() == text)
    }
}

/// A prescription seen in the state PDMP.
#[derive(Debug, Clone, PartialEq)]
pub struct PdmpFinding {
    pub prescriber: PrescriberId,
    pub drug_class: DrugClass,
    pub filled_on: NaiveDate,
    /// The product dispensed (RxNorm-style text), when the PDMP report gives it.
    pub product: Option<String>,
    /// Its RxNorm code, when known.
    pub rxcui: Option<String>,
    /// Units dispensed (tablets, patches, mL).
    pub quantity: Option<f64>,
    pub days_supply: Option<u32>,
}

impl PdmpFinding {
    /// A finding with only the prescriber, class and fill date (what older PDMP imports carry).
    pub fn new(prescriber: PrescriberId, drug_class: DrugClass, filled_on: NaiveDate) -> PdmpFinding {
        PdmpFinding { prescriber, drug_class, filled_on, product: None, rxcui: None, quantity: None, days_supply: None }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PdmpReview {
    pub reviewed_on: NaiveDate,
    pub findings: Vec<PdmpFinding>,
}

/// The signed patient agreement (treatment agreement or informed consent).
#[derive(Debug, Clone, PartialEq)]
pub struct AgreementFacts {
    pub signed_on: NaiveDate,
    pub prescriber_of_record: PrescriberId,
    pub text_version: String,
    pub elements: Vec<String>,
    /// Set when the agreement was voided explicitly (besides the implicit void on prescriber change).
    pub voided_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReviewKind {
    /// The periodic physician benefit-risk review (CDC 2022 Rec 7).
    BenefitRisk,
    /// A physician acknowledged concurrent benzodiazepine use.
    BenzodiazepineAcknowledged,
    /// A physician acknowledged a controlled-substance prescriber outside the roster.
    OutsidePrescriberAcknowledged(PrescriberId),
    /// A physician acknowledged one outside prescriber's prescribing of one class: for a
    /// benzodiazepine, this one decision also acknowledges the concurrent benzodiazepine it prescribes.
    OutsidePrescriberClassAcknowledged(PrescriberId, DrugClass),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhysicianReview {
    pub reviewed_on: NaiveDate,
    pub physician: PrescriberId,
    pub kind: ReviewKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NaloxoneEventKind {
    Offered,
    Declined,
    Dispensed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NaloxoneEvent {
    pub on: NaiveDate,
    pub kind: NaloxoneEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClinicalFlagKind {
    OverdoseHistory,
    SubstanceUseDisorderHistory,
    SleepDisorderedBreathing,
    Cancer,
    SickleCell,
    Palliative,
    EndOfLife,
    /// A current overdose or sedation signal (ED visit, naloxone use, reported sedation).
    OverdoseOrSedationSignal,
}

impl ClinicalFlagKind {
    /// Overdose and substance-use-disorder history: it stays history when the source marks the
    /// condition resolved, unlike an exclusion (a cancer in remission) or a comorbidity.
    pub fn is_history(self) -> bool {
        matches!(self, ClinicalFlagKind::OverdoseHistory | ClinicalFlagKind::SubstanceUseDisorderHistory)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClinicalFlag {
    pub kind: ClinicalFlagKind,
    pub recorded_on: NaiveDate,
    pub confidentiality: Confidentiality,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtherMedicationClass {
    Benzodiazepine,
    /// Methadone or buprenorphine for opioid use disorder from another source (e.g. an OTP).
    OudTreatment,
}

/// A non-opioid-analgesic medication that matters to the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherMedication {
    pub class: OtherMedicationClass,
    pub text: String,
    pub started_on: Option<NaiveDate>,
    pub active: bool,
    pub confidentiality: Confidentiality,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaperState {
    Active,
    Paused,
    Completed,
}

/// The taper step in force, as far as the refill rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperInForce {
    pub plan_id: i64,
    pub state: TaperState,
    pub started_on: NaiveDate,
    /// The regimen of the step in force today.
    pub step_regimen: Vec<MedicationOrder>,
    pub step_started_on: NaiveDate,
    /// The next signed step, when there is one: a refill whose supply starts on or after its date is
    /// decided against it (an on-time refill for the next step is not a regimen change).
    pub next_step: Option<TaperStepAhead>,
}

/// A signed taper step that has not started yet.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperStepAhead {
    pub starts_on: NaiveDate,
    pub regimen: Vec<MedicationOrder>,
}

/// The previous decision, for "MME crossed 50 or 90 since the last decision".
#[derive(Debug, Clone, PartialEq)]
pub struct PriorDecision {
    pub decided_on: NaiveDate,
    pub total_daily_mme: Option<f64>,
}

/// Something the patient said that bears on a decision ("I stopped taking it", "my pills were
/// stolen"): recorded by staff or a physician and shown with the reasons of every decision inside the
/// policy's lookback, so the physician reads the result and the explanation together.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientStatement {
    pub recorded_on: NaiveDate,
    /// The patient's words as recorded.
    pub text: String,
    pub confidentiality: Confidentiality,
}

/// Everything the refill policy reads about one patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientFacts {
    pub patient_id: PatientId,
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    pub risk_tier: RiskTier,
    /// The prescriber of record now; an agreement signed with another one is void.
    pub prescriber_of_record: Option<PrescriberId>,
    /// Current active opioid orders (the regimen of record).
    pub regimen: Vec<MedicationOrder>,
    pub fills: Vec<Fill>,
    pub uds: UdsFacts,
    pub pdmp_reviews: Vec<PdmpReview>,
    pub agreement: Option<AgreementFacts>,
    pub physician_reviews: Vec<PhysicianReview>,
    pub naloxone_events: Vec<NaloxoneEvent>,
    pub flags: Vec<ClinicalFlag>,
    pub other_medications: Vec<OtherMedication>,
    pub taper: Option<TaperInForce>,
    pub last_decision: Option<PriorDecision>,
    /// The refill request recorded for the current cycle and not yet answered by a dispense (the latest
    /// one, when several were recorded).
    pub open_request: Option<RecordedRequest>,
    /// The physician decision that stands for this cycle, if any (see `cycle::standing_applies`).
    pub standing: Option<StandingDecision>,
    /// The prescriber the patient came from (a new or transferred patient): recorded as such, never an
    /// outside prescriber.
    pub previous_prescriber: Option<PrescriberId>,
    /// The clinic date staff last prepared a refill that no dispense has answered yet.
    pub refill_prepared_on: Option<NaiveDate>,
    /// Opioid orders no longer active, with their fills (linked by `Fill::order_id`): a drug test is
    /// read against what was prescribed in the 31 days before it was collected, not only today's regimen.
    pub past_orders: Vec<MedicationOrder>,
    /// Dates the patient reported a supply lost or stolen (the requests store fills this).
    pub lost_or_stolen_reports: Vec<NaiveDate>,
    /// Dates of refill requests made before the refill window opened (the requests store fills this).
    pub early_requests: Vec<NaiveDate>,
    pub patient_statements: Vec<PatientStatement>,
}

impl PatientFacts {
    /// A patient with nothing recorded yet: the starting point for builders and tests.
    pub fn empty(patient_id: PatientId) -> PatientFacts {
        PatientFacts {
            patient_id,
            birth_date: None,
            sex: Sex::Unknown,
            risk_tier: RiskTier::Moderate,
            prescriber_of_record: None,
            regimen: Vec::new(),
            fills: Vec::new(),
            uds: UdsFacts::default(),
            pdmp_reviews: Vec::new(),
            agreement: None,
            physician_reviews: Vec::new(),
            naloxone_events: Vec::new(),
            flags: Vec::new(),
            other_medications: Vec::new(),
            taper: None,
            last_decision: None,
            open_request: None,
            standing: None,
            previous_prescriber: None,
            refill_prepared_on: None,
            past_orders: Vec::new(),
            lost_or_stolen_reports: Vec::new(),
            early_requests: Vec::new(),
            patient_statements: Vec::new(),
        }
    }
}

/// Facts about the clinic that apply to every patient.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClinicFacts {
    /// Physicians and prescribers on the clinic's roster: never "outside prescribers".
    pub roster: Vec<PrescriberId>,
}

/// What a recorded refill request asks for (refill-cycle.md, "Requests are events").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RequestKind {
    /// The next supply, when it is due.
    #[default]
    Routine,
    /// Replacement of a supply reported lost or stolen.
    LostOrStolenReplacement,
    /// The next supply, asked for before the refill is due (travel, a pharmacy closing): decided as of
    /// the day it was asked for, so the timing rules say whether it is early.
    Early,
    /// A different dose or product asked for: a physician decides.
    DoseChange,
}

impl RequestKind {
    pub const ALL: [RequestKind; 4] =
        [RequestKind::Routine, RequestKind::Early, RequestKind::LostOrStolenReplacement, RequestKind::DoseChange];

    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Routine => "routine",
            RequestKind::LostOrStolenReplacement => "lost_or_stolen_replacement",
            RequestKind::Early => "early",
            RequestKind::DoseChange => "dose_change",
        }
    }

    pub fn parse(text: &str) -> Option<RequestKind> {
        RequestKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether the request wants its supply now rather than on the eligible date (an early request, a
    /// replacement for a lost supply); a routine or dose-change request is decided as of the eligible date.
    pub fn wants_supply_now(self) -> bool {
        matches!(self, RequestKind::Early | RequestKind::LostOrStolenReplacement)
    }
}

/// A refill request as it was recorded: who asked does not matter to the rules, what and when does.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub id: i64,
    pub requested_on: NaiveDate,
    pub kind: RequestKind,
}

/// What a physician chose when signing an exception (the store's resolution, as the rules need it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhysicianChoice {
    /// Continue as prescribed (or with changes written in the rationale): the refill may be prepared.
    Approve,
    /// A bridge supply of `days` while the case is reviewed; the decision stands until `review_by`.
    Bridge { days: u32 },
    /// A taper was started, paused, resumed or revised: the refill follows the plan.
    Taper,
    /// Hold the refill with a plan (testing, a visit, a referral): held until the physician decides again.
    Hold,
    /// The physician stopped therapy (with a safety attestation): nothing is prepared.
    Stop,
}

impl PhysicianChoice {
    /// Whether staff may prepare the refill under this decision.
    pub fn releases_refill(self) -> bool {
        matches!(self, PhysicianChoice::Approve | PhysicianChoice::Bridge { .. } | PhysicianChoice::Taper)
    }
}

/// A reason a physician saw when signing, by code and by what it was about (the analyte, the
/// prescriber): the same code about something new is a new reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoveredReason {
    pub code: crate::decision::ReasonCode,
    pub subject: String,
    pub outcome: crate::decision::Outcome,
}

/// A signed physician decision that stands for the cycle it was made in (refill-cycle.md, "A
/// physician's decision stands").
#[derive(Debug, Clone, PartialEq)]
pub struct StandingDecision {
    pub id: i64,
    pub signed_on: NaiveDate,
    /// The signing physician (an opaque id).
    pub signed_by: String,
    pub choice: PhysicianChoice,
    /// The reasons on the exception when it was signed.
    pub covered: Vec<CoveredReason>,
    /// The decision stands until this date (inclusive) when set...
    pub review_by: Option<NaiveDate>,
    /// ...else until a supply is dispensed after the latest fill the physician saw.
    pub latest_fill_seen: Option<NaiveDate>,
}

/// The refill being decided: what is asked for and on which clinic-local date.
#[derive(Debug, Clone, PartialEq)]
pub struct RefillRequest {
    pub requested_on: NaiveDate,
    /// The regimen asked for; usually equal to the regimen of record.
    pub regimen: Vec<MedicationOrder>,
    pub kind: RequestKind,
}
