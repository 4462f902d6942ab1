//! The documented CSV format: valid files of every kind parse into records, and a bad file yields every
//! problem with its file, line and field.

use refill_import::{CsvKind, ImportError, Location, OrderStatus, parse_csv};
use refill_rules::{
    DoseUnit, DrugClass, PrescriberId, ReviewKind, RiskTier, Sex, SpecimenValidity, TaperState, UdsKind,
};

fn problems(error: &ImportError) -> Vec<(Location, String)> {
    error.problems.iter().map(|p| (p.location.clone(), p.field.clone())).collect()
}

#[test]
fn the_record_type_comes_from_the_file_name() {
    assert_eq!(CsvKind::from_file_name("patients.csv"), Some(CsvKind::Patients));
    assert_eq!(CsvKind::from_file_name("/tmp/x/Orders-2026-05.csv"), Some(CsvKind::Orders));
    assert_eq!(CsvKind::from_file_name("uds_april.csv"), Some(CsvKind::Uds));
    assert_eq!(CsvKind::from_file_name("patientsX.csv"), None);
    assert_eq!(CsvKind::from_file_name("patients.txt"), None);
    let error = parse_csv("people.csv", b"patient_id\nP1\n").unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].location, Location::File);
    assert!(error.to_string().contains("people.csv"), "{error}");
}

#[test]
fn a_valid_patients_file_parses() {
    let csv = "\u{feff}patient_id,mrn,family_name,given_name,birth_date,sex,email,risk_tier,prescriber_id\n\
               P1,M1,Lindqvist,Marta,1961-04-17,female,marta@example.org,high,1234567893\n\
               P2,,\"O'Neil, Jr\",Sam,1970-01-02,male,,,\n";
    let records = parse_csv("patients.csv", csv.as_bytes()).unwrap();
    assert_eq!(records.patients.len(), 2);
    let first = &records.patients[0];
    assert_eq!(first.external_id, "P1");
    assert_eq!(first.sex, Sex::Female);
    assert_eq!(first.risk_tier, Some(RiskTier::High));
    assert_eq!(first.origin, Location::Line(2));
    assert_eq!(records.patients[1].family_name, "O'Neil, Jr");
    assert_eq!(records.patients[1].risk_tier, None);
    assert_eq!(records.patients[1].origin, Location::Line(3));
}

#[test]
fn every_problem_of_a_bad_file_is_listed_with_line_and_field() {
    let csv = "patient_id,family_name,given_name,birth_date,sex,email,risk_tier\n\
               P1,Lindqvist,Marta,1961-04-17,female,,low\n\
               P2,Okafor,,1961-13-01,female,,low\n\
               P3,Szabo,Ivan,1950-01-01,robot,not-an-email,extreme\n\
               P1,Again,Dup,1950-01-01,male,,\n\
               P4,Short,Row\n";
    let error = parse_csv("patients.csv", csv.as_bytes()).unwrap_err();
    let found = problems(&error);
    for expected in [
        (Location::Line(3), "given_name"),
        (Location::Line(3), "birth_date"),
        (Location::Line(4), "sex"),
        (Location::Line(4), "email"),
        (Location::Line(4), "risk_tier"),
        (Location::Line(5), "patient_id"),
        (Location::Line(6), ""),
    ] {
        assert!(found.contains(&(expected.0.clone(), expected.1.to_string())), "missing {expected:?} in\n{error}");
    }
    let text = error.to_string();
    assert!(text.contains("patients.csv:3: birth_date: expected a date YYYY-MM-DD, found \"1961-13-01\""), "{text}");
    assert!(text.contains("duplicate id \"P1\" (first on line 2)"), "{text}");
}

#[test]
fn header_problems_name_the_column() {
    let error =
        parse_csv("orders.csv", b"order_id,patient_id,statuss,authored_on\nRX1,P1,active,2026-01-01\n").unwrap_err();
    let found = problems(&error);
    assert!(found.contains(&(Location::Line(1), "statuss".to_string())), "{error}");
    assert!(found.contains(&(Location::Line(1), "status".to_string())), "{error}");
    let empty = parse_csv("fills.csv", b"").unwrap_err();
    assert_eq!(empty.problems[0].location, Location::File);
}

#[test]
fn orders_carry_dose_and_purpose() {
    let csv = "order_id,patient_id,status,authored_on,rxcui,medication_text,dose_value,dose_unit,doses_per_day,days_supply,dispense_quantity,prescriber_id,purpose,part2\n\
               RX1,P1,active,2026-03-02,1049621,oxycodone hydrochloride 5 MG Oral Tablet,1,unit,4,30,120,NPI1,pain,false\n\
               RX2,P1,stopped,2026-01-02,,methadone 10 MG,10,mg,3,28,,,oud,true\n\
               RX3,P1,active,2026-01-02,,,1,,4,30,,,,\n";
    let error = parse_csv("orders.csv", csv.as_bytes()).unwrap_err();
    let found = problems(&error);
    assert!(found.contains(&(Location::Line(4), "rxcui".to_string())), "{error}");
    assert!(found.contains(&(Location::Line(4), "dose_unit".to_string())), "{error}");
    let good: String = csv.lines().take(3).map(|l| format!("{l}\n")).collect();
    let records = parse_csv("orders.csv", good.as_bytes()).unwrap();
    assert_eq!(records.orders.len(), 2);
    assert_eq!(records.orders[0].order.dose.as_ref().unwrap().unit, DoseUnit::DoseFormUnit);
    assert_eq!(records.orders[0].order.doses_per_day, Some(4.0));
    assert_eq!(records.orders[1].status, OrderStatus::Stopped);
    assert_eq!(records.orders[1].order.purpose, refill_rules::OrderPurpose::OpioidUseDisorder);
    assert!(records.orders[1].order.confidentiality.is_restricted());
}

#[test]
fn uds_rows_group_by_specimen_and_must_agree() {
    let csv = "specimen_id,patient_id,collected_on,kind,confirmatory,assay,analyte,result,reviewed_on\n\
               S1,P1,2026-04-12,scheduled,false,oxycodone,oxycodone,positive,\n\
               S2,P2,2026-04-13,for_cause,true,lcms,fentanyl,negative,2026-04-15\n\
               S1,P1,2026-04-12,scheduled,false,cocaine,benzoylecgonine,negative,\n";
    let records = parse_csv("uds.csv", csv.as_bytes()).unwrap();
    assert_eq!(records.uds.len(), 2);
    assert_eq!(records.uds[0].result.analytes.len(), 2);
    assert_eq!(records.uds[1].result.kind, UdsKind::ForCause);
    assert!(records.uds[1].result.confirmatory);
    let bad = format!("{csv}S1,P9,2026-04-12,scheduled,false,opiates,morphine,negative,\n");
    let error = parse_csv("uds.csv", bad.as_bytes()).unwrap_err();
    assert_eq!(problems(&error), vec![(Location::Line(5), "specimen_id".to_string())]);
}

#[test]
fn pdmp_findings_need_all_three_columns() {
    let csv = "review_id,patient_id,reviewed_on,finding_prescriber_id,finding_drug_class,finding_filled_on\n\
               R1,P1,2026-04-02,,,\n\
               R2,P2,2026-04-02,1999,benzodiazepine,2026-03-28\n\
               R3,P3,2026-04-02,1999,,2026-03-28\n";
    let error = parse_csv("pdmp.csv", csv.as_bytes()).unwrap_err();
    assert_eq!(problems(&error), vec![(Location::Line(4), "finding_prescriber_id".to_string())]);
    let good: String = csv.lines().take(3).map(|l| format!("{l}\n")).collect();
    let records = parse_csv("pdmp.csv", good.as_bytes()).unwrap();
    assert!(records.pdmp[0].review.findings.is_empty());
    assert_eq!(records.pdmp[1].review.findings.len(), 1);
}

#[test]
fn taper_steps_group_and_are_checked() {
    let header = "taper_id,patient_id,state,started_on,physician_id,rationale,step_number,step_starts_on,rxcui,medication_text,dose_value,dose_unit,doses_per_day,step_daily_mme\n";
    let good = format!(
        "{header}T1,P1,active,2026-02-01,NPI1,Agreed,1,2026-02-01,1049502,,2,unit,2,60\n\
         T1,P1,active,2026-02-01,NPI1,Agreed,2,2026-03-01,1049502,,1,unit,2,30\n\
         T1,P1,active,2026-02-01,NPI1,Agreed,2,2026-03-01,1049621,,1,unit,1,30\n"
    );
    let records = parse_csv("tapers.csv", good.as_bytes()).unwrap();
    assert_eq!(records.tapers.len(), 1);
    let taper = &records.tapers[0];
    assert_eq!(taper.state, TaperState::Active);
    assert_eq!(taper.steps.len(), 2);
    assert_eq!(taper.steps[1].regimen.len(), 2);
    let gap = format!(
        "{header}T1,P1,active,2026-02-01,NPI1,Agreed,1,2026-02-01,1049502,,2,unit,2,60\nT1,P1,active,2026-02-01,NPI1,Agreed,3,2026-04-01,1049502,,1,unit,2,30\n"
    );
    let error = parse_csv("tapers.csv", gap.as_bytes()).unwrap_err();
    assert_eq!(problems(&error), vec![(Location::Line(2), "step_number".to_string())]);
}

#[test]
fn the_documentation_lists_every_column() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/import-csv.md"))
        .expect("docs/import-csv.md exists");
    for kind in CsvKind::ALL {
        let section = format!("## {}.csv", kind.file_prefix());
        let start = doc.find(&section).unwrap_or_else(|| panic!("docs/import-csv.md lacks a section {section:?}"));
        let rest = &doc[start + section.len()..];
        let body = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        for column in kind.columns() {
            assert!(
                body.contains(&format!("| `{}` |", column.name)),
                "docs/import-csv.md, {section}: column {} is not documented",
                column.name
            );
        }
    }
}

/// Diagnoses and other medications from CSV: each row one record keyed by its id; a resolved exclusion
/// is retired while resolved history stays in force; a stopped benzodiazepine is inactive; a bad kind
/// or status is named by line and column.
#[test]
fn conditions_and_other_medications() {
    use refill_rules::{ClinicalFlagKind, OtherMedicationClass};
    let conditions = "condition_id,patient_id,kind,recorded_on,status,part2\n\
                      DX-1,P1,cancer,2024-03-01,resolved,\n\
                      DX-2,P1,overdose_history,2023-05-09,resolved,false\n\
                      DX-3,P1,sleep_disordered_breathing,2022-01-15,,\n";
    let records = parse_csv("conditions.csv", conditions.as_bytes()).expect("valid");
    let flags: Vec<_> = records.flags.iter().map(|r| (r.external_id.as_str(), r.flag.kind, r.active)).collect();
    assert_eq!(
        flags,
        vec![
            ("DX-1", ClinicalFlagKind::Cancer, false),
            ("DX-2", ClinicalFlagKind::OverdoseHistory, true),
            ("DX-3", ClinicalFlagKind::SleepDisorderedBreathing, true),
        ]
    );

    let medications = "medication_id,patient_id,class,medication_text,started_on,status\n\
                       RX-1,P1,benzodiazepine,alprazolam 0.5 MG Oral Tablet,2026-01-10,active\n\
                       RX-2,P1,benzodiazepine,clonazepam 1 MG Oral Tablet,,stopped\n";
    let records = parse_csv("other_medications.csv", medications.as_bytes()).expect("valid");
    let meds: Vec<_> = records.other_medications.iter().map(|r| (r.medication.class, r.medication.active)).collect();
    assert_eq!(meds, vec![(OtherMedicationClass::Benzodiazepine, true), (OtherMedicationClass::Benzodiazepine, false)]);

    let bad =
        "condition_id,patient_id,kind,recorded_on,status\nDX-1,P1,cancer,2024-03-01,gone\nDX-2,P1,gout,2024-03-01,\n";
    let error = parse_csv("conditions.csv", bad.as_bytes()).unwrap_err();
    assert_eq!(
        problems(&error),
        vec![(Location::Line(2), "status".to_string()), (Location::Line(3), "kind".to_string())]
    );
}

/// Refill requests: one record per row, channel `import` unless given, keyed by patient, day and kind;
/// a bad kind, date or channel, a note over 2,000 characters and a second request of one kind on one
/// day are each named by line and column, and the file yields no records.
#[test]
fn refill_requests_parse_and_bad_rows_are_named() {
    use refill_import::RequestChannel;
    use refill_rules::RequestKind;
    let csv = "patient_id,requested_on,kind,channel,note\n\
               P1,2026-12-04,routine,,\n\
               P1,2026-12-04,early,staff,\"Travelling, from the 12th\"\n\
               P2,2026-12-01,lost_or_stolen_replacement,api,\n";
    let records = parse_csv("refill_requests.csv", csv.as_bytes()).unwrap();
    assert_eq!(records.refill_requests.len(), 3);
    let first = &records.refill_requests[0];
    assert_eq!((first.patient_external_id.as_str(), first.kind), ("P1", RequestKind::Routine));
    assert_eq!(first.channel, RequestChannel::Import);
    assert_eq!(first.note, None);
    assert_eq!(first.origin, Location::Line(2));
    assert_eq!(records.refill_requests[1].channel, RequestChannel::Staff);
    assert_eq!(records.refill_requests[1].note.as_deref(), Some("Travelling, from the 12th"));
    assert_eq!(records.refill_requests[2].kind, RequestKind::LostOrStolenReplacement);

    let long_note = "x".repeat(2001);
    let bad = format!(
        "patient_id,requested_on,kind,channel,note\n\
         P1,2026-12-04,routine,,\n\
         P1,2026-12-04,routine,staff,again\n\
         P2,2026-02-30,early,,\n\
         P3,2026-12-01,sooner,,\n\
         P4,2026-12-01,routine,fax,\n\
         ,2026-12-01,routine,,\n\
         P5,2026-12-01,dose_change,,{long_note}\n"
    );
    let error = parse_csv("refill_requests-2026-12.csv", bad.as_bytes()).unwrap_err();
    assert_eq!(
        problems(&error),
        vec![
            (Location::Line(3), "kind".to_string()),
            (Location::Line(4), "requested_on".to_string()),
            (Location::Line(5), "kind".to_string()),
            (Location::Line(6), "channel".to_string()),
            (Location::Line(7), "patient_id".to_string()),
            (Location::Line(8), "note".to_string()),
        ],
        "{error}"
    );
    assert!(error.to_string().contains("refill_requests-2026-12.csv:3: kind:"), "{error}");
}

/// The previous prescriber of a transferred patient is an optional patients.csv column.
#[test]
fn patients_carry_a_previous_prescriber() {
    let csv = "patient_id,family_name,given_name,birth_date,sex,prescriber_id,previous_prescriber\n\
               P1,Lindqvist,Marta,1961-04-17,female,1234567893,1888888881\n\
               P2,Okafor,Ada,1970-01-02,female,1234567893,\n";
    let records = parse_csv("patients.csv", csv.as_bytes()).unwrap();
    assert_eq!(records.patients[0].previous_prescriber.as_ref().map(|p| p.0.as_str()), Some("1888888881"));
    assert_eq!(records.patients[1].previous_prescriber, None);
}

#[test]
fn specimen_validity_pdmp_products_and_class_acknowledgements_parse_and_bad_values_are_named() {
    let uds = "specimen_id,patient_id,collected_on,kind,confirmatory,assay,analyte,result,specimen_validity\n\
               S1,P1,2026-04-12,scheduled,false,oxycodone,oxycodone,negative,invalid\n\
               S2,P1,2026-04-20,scheduled,false,oxycodone,oxycodone,positive,\n";
    let records = parse_csv("uds.csv", uds.as_bytes()).unwrap();
    assert_eq!(records.uds[0].result.specimen_validity, SpecimenValidity::Invalid);
    assert_eq!(records.uds[1].result.specimen_validity, SpecimenValidity::NotReported);
    let bad = "specimen_id,patient_id,collected_on,kind,confirmatory,assay,analyte,result,specimen_validity\n\
               S1,P1,2026-04-12,scheduled,false,oxycodone,oxycodone,negative,not_reported\n";
    let error = parse_csv("uds.csv", bad.as_bytes()).unwrap_err();
    assert_eq!(problems(&error), vec![(Location::Line(2), "specimen_validity".to_string())]);

    let pdmp = "review_id,patient_id,reviewed_on,finding_prescriber_id,finding_drug_class,finding_filled_on,\
                finding_product,finding_rxcui,finding_quantity,finding_days_supply\n\
                R1,P1,2026-04-02,NPI9,opioid,2026-03-28,acetaminophen 660 MG / hydrocodone bitartrate 10 MG Oral Tablet,856908,120,30\n\
                R1,P1,2026-04-02,NPI8,oud_treatment,2026-03-20,,,,\n";
    let records = parse_csv("pdmp.csv", pdmp.as_bytes()).unwrap();
    let findings = &records.pdmp[0].review.findings;
    assert_eq!(findings[0].quantity, Some(120.0));
    assert_eq!(findings[0].days_supply, Some(30));
    assert_eq!(findings[0].rxcui.as_deref(), Some("856908"));
    assert_eq!(findings[1].drug_class, DrugClass::OudTreatment);
    assert_eq!(findings[1].product, None);
    let bad = "review_id,patient_id,reviewed_on,finding_prescriber_id,finding_drug_class,finding_filled_on,\
               finding_quantity,finding_days_supply\n\
               R1,P1,2026-04-02,NPI9,opioid,2026-03-28,-3,thirty\n";
    let error = parse_csv("pdmp.csv", bad.as_bytes()).unwrap_err();
    let found = problems(&error);
    assert!(found.contains(&(Location::Line(2), "finding_quantity".to_string())), "{error}");
    assert!(found.contains(&(Location::Line(2), "finding_days_supply".to_string())), "{error}");

    let reviews = "review_id,patient_id,reviewed_on,physician_id,kind,subject_prescriber_id,subject_drug_class\n\
                   V1,P1,2026-04-02,NPI1,outside_prescriber_acknowledged,NPI9,benzodiazepine\n\
                   V2,P1,2026-04-02,NPI1,outside_prescriber_acknowledged,NPI9,\n";
    let records = parse_csv("reviews.csv", reviews.as_bytes()).unwrap();
    assert_eq!(
        records.reviews[0].review.kind,
        ReviewKind::OutsidePrescriberClassAcknowledged(PrescriberId("NPI9".into()), DrugClass::Benzodiazepine)
    );
    assert_eq!(records.reviews[1].review.kind, ReviewKind::OutsidePrescriberAcknowledged(PrescriberId("NPI9".into())));
}

/// Issue 17, finding 10: values are bounded where they enter. A NUL byte, a megabyte-long name and a
/// placeholder birth date are each a problem naming the line and column, and the file yields nothing.
#[test]
fn control_characters_huge_values_and_placeholder_dates_are_refused() {
    let huge = "x".repeat(1 << 20);
    let csv = format!(
        "patient_id,family_name,given_name,birth_date,sex\n\
         P1,Lind\0qvist,Marta,1961-04-17,female\n\
         P2,{huge},Sam,1970-01-02,male\n\
         P3,Okafor,Ada,9999-12-31,female\n\
         P4,Szabo,Ivan,1950-01-01,male\n"
    );
    let Err(error) = parse_csv("patients.csv", csv.as_bytes()) else { panic!("the file was accepted") };
    let found = problems(&error);
    for expected in [(2, "family_name"), (3, "family_name"), (4, "birth_date")] {
        assert!(
            found.contains(&(Location::Line(expected.0), expected.1.to_string())),
            "missing {expected:?} in\n{error}"
        );
    }
    assert_eq!(found.len(), 3, "{error}");
    assert!(error.to_string().len() < 10_000, "the report does not echo the megabyte back");
}
