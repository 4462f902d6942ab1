//! The words a patient email must never carry (security-and-reliability.md §1.2), and the scanner that
//! enforces it on sender names, templates and rendered messages.
//!
//! Matching is per word, case-insensitive. A stem matches any word that starts with it ("refill" also
//! catches "refills" and "refilled"); an exact word matches only itself, for short words whose stems
//! would hit harmless words ("mg", "lab").

/// Stems: a word starting with one of these is forbidden.
pub const FORBIDDEN_STEMS: &[&str] = &[
    // What the clinic does.
    "refill",
    "pickup",
    "pain",
    "opioid",
    "opiate",
    "controlled",
    "recovery",
    "addict",
    "taper",
    "screen",
    "urine",
    "overdose",
    "substance",
    "narcotic",
    "detox",
    "rehab",
    "withdrawal",
    "dependen",
    "toxicolog",
    "prescri",
    "pharmac",
    "medicat",
    "drug",
    "dosage",
    "dose",
    "analges",
    "treatment",
    "diagnos",
    "therapy",
    // Drug names (generic and brand) a message might name.
    "methadone",
    "buprenorphine",
    "suboxone",
    "subutex",
    "naloxone",
    "narcan",
    "naltrexone",
    "oxycodone",
    "oxycontin",
    "percocet",
    "hydrocodone",
    "vicodin",
    "norco",
    "morphine",
    "fentanyl",
    "duragesic",
    "tramadol",
    "ultram",
    "hydromorphone",
    "dilaudid",
    "oxymorphone",
    "tapentadol",
    "nucynta",
    "codeine",
    "butrans",
    "belbuca",
    "heroin",
    "benzodiazepine",
];

/// Exact words: forbidden only as whole words.
pub const FORBIDDEN_WORDS: &[&str] =
    &["pick", "mme", "uds", "udt", "pdmp", "mg", "mcg", "lab", "labs", "result", "results", "pill", "pills", "sud"];

/// The first forbidden word in `text`, as it appears there, or `None` when the text is clean.
///
/// "pick up" written as two words is caught through the exact word "pick".
pub fn first_forbidden_word(text: &str) -> Option<String> {
    words(text).find(|word| is_forbidden(word)).map(str::to_string)
}

/// Every forbidden word in `text`, in order (for lint reports).
pub fn forbidden_words_in(text: &str) -> Vec<String> {
    words(text).filter(|word| is_forbidden(word)).map(str::to_string).collect()
}

/// The first forbidden stem found anywhere inside `text`, even inside a longer word. For addresses
/// and domains, where words run together ("eastsidepain.example"); stricter than
/// [`first_forbidden_word`], so it is not used on prose.
pub fn first_forbidden_fragment(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    FORBIDDEN_STEMS.iter().copied().find(|stem| lower.contains(stem))
}

fn is_forbidden(word: &str) -> bool {
    let lower = word.to_lowercase();
    FORBIDDEN_WORDS.contains(&lower.as_str()) || FORBIDDEN_STEMS.iter().any(|stem| lower.starts_with(stem))
}

/// Words are runs of letters; hyphens and underscores separate words but "pick-up" and "pick_up" are
/// also joined so that the glued form is checked as one word.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let split = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty());
    let glued = text
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| w.contains(['-', '_']))
        .map(|w| w.trim_matches(['-', '_']));
    split.chain(glued.filter(|w| !w.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_catch_inflections_and_case() {
        assert_eq!(first_forbidden_word("Your REFILLS are ready"), Some("REFILLS".into()));
        assert_eq!(first_forbidden_word("Eastside Pain & Recovery"), Some("Pain".into()));
        assert_eq!(first_forbidden_word("tapering"), Some("tapering".into()));
        assert_eq!(first_forbidden_word("please pick-up"), Some("pick".into()));
    }

    #[test]
    fn neutral_wording_passes() {
        assert_eq!(first_forbidden_word("Hello Ana, your care plan changes on Friday 12 December."), None);
        assert_eq!(first_forbidden_word("Northside Care Clinic, Spain Street, label"), None);
    }

    #[test]
    fn fragments_are_found_inside_run_together_names() {
        assert_eq!(first_forbidden_fragment("no-reply@eastsidepain.example"), Some("pain"));
        assert_eq!(first_forbidden_fragment("mail.northside.example"), None);
    }

    #[test]
    fn glued_words_are_checked_whole() {
        assert_eq!(first_forbidden_word("re_fill"), None);
        assert!(first_forbidden_word("pick_up").is_some());
        assert!(first_forbidden_word("missed-pickup").is_some());
    }
}
