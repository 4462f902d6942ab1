//! Patient search for the screens: a patient on the phone is found by name, record number or birth
//! date, whether or not they are on today's queue. One query; every word of the search must match the
//! given name, family name (both by prefix) or the record number (anywhere in it). (`Store::
//! search_patients` is the older one-term prefix lookup of whole records; this one is shaped for the
//! search screen: several words or a birth date, with today's queue row.)

use chrono::NaiveDate;
use sqlx::FromRow;

use crate::store::with_read_pool;
use crate::{Store, StoreError};

/// The most words a search looks at (a name and a record number are a handful).
const MAX_WORDS: usize = 4;

/// What a search asks for, read from the text a person typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientQuery {
    /// A birth date (`1961-04-07` or `04/07/1961`).
    BirthDate(NaiveDate),
    /// Words, lower-cased, each matched against the names and the record number.
    Words(Vec<String>),
}

impl PatientQuery {
    /// Read a search box; `None` when it holds nothing to search for.
    pub fn parse(text: &str) -> Option<PatientQuery> {
        let text = text.trim();
        if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Some(PatientQuery::BirthDate(date));
        }
        if let Ok(date) = NaiveDate::parse_from_str(text, "%m/%d/%Y") {
            return Some(PatientQuery::BirthDate(date));
        }
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .take(MAX_WORDS)
            .map(str::to_lowercase)
            .collect();
        (!words.is_empty()).then_some(PatientQuery::Words(words))
    }
}

/// One patient a search found, with today's queue row when there is one.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct PatientHit {
    pub patient_id: i64,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Option<NaiveDate>,
    pub part2: bool,
    pub active: bool,
    /// Today's queue outcome and run-out date (none when the patient is not on today's queue).
    pub outcome: Option<String>,
    pub run_out_on: Option<NaiveDate>,
}

/// `LIKE` metacharacters taken literally (the pattern uses `ESCAPE '\'`).
fn like_literal(word: &str) -> String {
    word.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Patients matching `query`, by family then given name, at most `limit`.
pub async fn find_patients(
    store: &Store,
    clinic_date: NaiveDate,
    query: &PatientQuery,
    limit: i64,
) -> Result<Vec<PatientHit>, StoreError> {
    const COLUMNS: &str = "p.id AS patient_id, p.mrn, p.given_name, p.family_name, p.birth_date, p.part2, p.active, \
         q.outcome, q.run_out_on FROM patients p \
         LEFT JOIN daily_queue q ON q.patient_id = p.id AND q.clinic_date = $1";
    let mut binds: Vec<String> = Vec::new();
    let condition = match query {
        PatientQuery::BirthDate(_) => "p.birth_date = $3".to_string(),
        PatientQuery::Words(words) => {
            let mut parts = Vec::new();
            for word in words {
                // Placeholders are numbered by us; the words themselves are bound.
                let prefix = binds.len() + 3;
                binds.push(format!("{}%", like_literal(word)));
                binds.push(format!("%{}%", like_literal(word)));
                parts.push(format!(
                    "(LOWER(p.given_name) LIKE ${prefix} ESCAPE '\\' OR LOWER(p.family_name) LIKE ${prefix} ESCAPE '\\' \
                     OR LOWER(COALESCE(p.mrn, '')) LIKE ${} ESCAPE '\\')",
                    prefix + 1
                ));
            }
            parts.join(" AND ")
        }
    };
    let sql =
        format!("SELECT {COLUMNS} WHERE {condition} ORDER BY LOWER(p.family_name), LOWER(p.given_name), p.id LIMIT $2");
    let rows = with_read_pool!(store, pool => {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(clinic_date).bind(limit);
        match query {
            PatientQuery::BirthDate(date) => q = q.bind(*date),
            PatientQuery::Words(_) => {
                for value in &binds {
                    q = q.bind(value.clone());
                }
            }
        }
        q.fetch_all(pool).await?
    });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_box_reads_as_a_date_or_words() {
        let date = NaiveDate::from_ymd_opt(1961, 4, 7).expect("date");
        assert_eq!(PatientQuery::parse(" 1961-04-07 "), Some(PatientQuery::BirthDate(date)));
        assert_eq!(PatientQuery::parse("04/07/1961"), Some(PatientQuery::BirthDate(date)));
        assert_eq!(
            PatientQuery::parse("Whitfield, Dana"),
            Some(PatientQuery::Words(vec!["whitfield".into(), "dana".into()]))
        );
        assert_eq!(PatientQuery::parse("   "), None);
        assert_eq!(like_literal("50%_a\\"), "50\\%\\_a\\\\");
    }
}
