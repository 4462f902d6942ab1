//! Every patient template rendered for sample patients: no forbidden word, and no value from the
//! patient's record other than the first name and the message's own date, anywhere in the message
//! (subject, headers, plain text, HTML). Also the template files themselves, and the staff digests.

#[path = "support/sample.rs"]
mod sample;
use chrono::{NaiveDate, TimeZone, Utc};
use refill_notify::wording::{first_forbidden_word, forbidden_words_in};
use refill_notify::{
    BreakGlassLine, Composer, ExceptionDigest, ExceptionLine, MessageKind, Moment, MorningDigest, NotifySettings,
    Overdue, OverdueItem, PatientNotice, PatientNoticeKind, StatusCount, SupplyRunningOut, UrgentAlert,
};

const NOTICE_KINDS: [PatientNoticeKind; 5] = [
    PatientNoticeKind::WindowOpens,
    PatientNoticeKind::PlanChange,
    PatientNoticeKind::AgreementRenewal,
    PatientNoticeKind::VisitDue,
    PatientNoticeKind::FollowUp,
];

/// A patient record as the clinic holds it: everything here except the first name must stay out.
struct SampleRecord {
    id: &'static str,
    first_name: &'static str,
    family_name: &'static str,
    mrn: &'static str,
    birth_date: &'static str,
    email: &'static str,
    drug: &'static str,
    dose: &'static str,
    daily_mme: &'static str,
    uds_result: &'static str,
    phone: &'static str,
}

const SAMPLES: [SampleRecord; 3] = [
    SampleRecord {
        id: "40912",
        first_name: "Ana",
        family_name: "Kowalczyk",
        mrn: "MRN-7731902",
        birth_date: "1961-04-17",
        email: "ana.k@example.net",
        drug: "Oxycodone",
        dose: "15 mg",
        daily_mme: "67.5",
        uds_result: "fentanyl positive",
        phone: "555-0142",
    },
    SampleRecord {
        id: "40913",
        first_name: "Jean-Luc",
        family_name: "Okonkwo-Brandt",
        mrn: "MRN-0042117",
        birth_date: "1948-12-01",
        email: "jl.okonkwo@example.org",
        drug: "Methadone",
        dose: "40 mg",
        daily_mme: "480",
        uds_result: "negative for prescribed",
        phone: "555-0199",
    },
    SampleRecord {
        id: "40914",
        // A first name that contains a forbidden stem is the patient's own and must still work.
        first_name: "Paine",
        family_name: "Delacroix",
        mrn: "MRN-5520019",
        birth_date: "1990-07-30",
        email: "paine.d@example.com",
        drug: "Buprenorphine patch",
        dose: "20 mcg/h",
        daily_mme: "36",
        uds_result: "expected",
        phone: "555-0100",
    },
];

fn settings() -> NotifySettings {
    sample::northside(&["desk@northside.example"], &["dr.lee@northside.example"])
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 11, 0, 0).unwrap()
}

/// Decode quoted-printable soft breaks and escapes enough to search the text (lettre may encode
/// bodies); both the raw and the decoded forms are scanned.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn patient_messages_carry_only_the_first_name_and_their_date() {
    let composer = Composer::new(settings()).expect("neutral settings are accepted");
    let about_dates = [
        Moment::Date(NaiveDate::from_ymd_opt(2026, 12, 12).unwrap()),
        Moment::DateTime(NaiveDate::from_ymd_opt(2027, 1, 4).unwrap().and_hms_opt(9, 30, 0).unwrap()),
    ];
    let mut subjects_by_kind: std::collections::HashMap<&str, std::collections::HashSet<String>> = Default::default();
    for record in &SAMPLES {
        for kind in NOTICE_KINDS {
            for about in about_dates {
                let notice = PatientNotice {
                    kind,
                    patient_ref: record.id.to_string(),
                    first_name: record.first_name.to_string(),
                    about,
                };
                let clinic_date = NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
                let email = composer.patient_notice(&notice, record.email, clinic_date, now()).expect("renders");
                let raw = String::from_utf8(email.raw.clone()).expect("utf-8 message");
                let decoded = decode_quoted_printable(&raw);
                let (head, _) = raw.split_once("\r\n\r\n").expect("headers and body");
                let name = kind.message_kind().name();

                // The message is about its own date, and names the patient by first name only.
                assert!(decoded.contains(&about.display()), "{name}: date missing");
                assert!(decoded.contains(record.first_name), "{name}: first name missing");

                // Nothing else from the record, in any form.
                // Machine-made values (Message-ID, MIME boundary, Date) are random or clock digits, not
                // record values: blank them so short numbers such as an MME of 36 are searched fairly.
                let mut outside_recipient = decoded.replace(&format!("To: {}", record.email), "To: <recipient>");
                outside_recipient = outside_recipient.replace(&email.message_id, "<message-id>");
                if let Some(boundary) = raw.split("boundary=\"").nth(1).and_then(|b| b.split('"').next()) {
                    outside_recipient = outside_recipient.replace(boundary, "<boundary>");
                }
                let date_line = head.split("\r\n").find(|l| l.starts_with("Date: ")).unwrap_or("").to_string();
                outside_recipient = outside_recipient.replace(&date_line, "Date: <date>");
                for (field, value) in [
                    ("patient id", record.id),
                    ("family name", record.family_name),
                    ("MRN", record.mrn),
                    ("birth date", record.birth_date),
                    ("drug", record.drug),
                    ("dose", record.dose),
                    ("daily MME", record.daily_mme),
                    ("UDS result", record.uds_result),
                    ("phone", record.phone),
                ] {
                    assert!(
                        !outside_recipient.to_lowercase().contains(&value.to_lowercase()),
                        "{name}: the {field} of the record appears in the message"
                    );
                }
                // The address appears only as the recipient.
                assert_eq!(decoded.matches(record.email).count(), 1, "{name}: address outside To");

                // No forbidden word anywhere except inside the patient's own first name.
                let own: Vec<String> = record.first_name.split('-').map(str::to_lowercase).collect();
                let words: Vec<String> =
                    forbidden_words_in(&decoded).into_iter().filter(|w| !own.contains(&w.to_lowercase())).collect();
                assert!(words.is_empty(), "{name}: forbidden words {words:?}");

                // Headers: fixed neutral subject, the configured sender and Message-ID domain, and no
                // kind name.
                assert!(!head.contains(name) && !head.contains("patient-"), "{name}: kind name in headers");
                assert!(head.contains("From: \"Northside Care\" <no-reply@northside.example>"), "{head}");
                assert!(head.contains(&format!("Message-ID: {}", email.message_id)), "{head}");
                assert!(email.message_id.ends_with("@mail.northside.example>"), "{}", email.message_id);
                let subject =
                    head.split("\r\n").find_map(|l| l.strip_prefix("Subject: ")).expect("subject header").to_string();
                subjects_by_kind.entry(name).or_default().insert(subject);
                assert_eq!(email.idempotency_key, format!("{name}:{}:2026-12-08", record.id));
            }
        }
    }
    for (kind, subjects) in subjects_by_kind {
        assert_eq!(subjects.len(), 1, "{kind}: the subject must be a fixed string, got {subjects:?}");
    }
}

#[test]
fn patient_template_files_contain_no_forbidden_word() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/email");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).expect("templates/email exists") {
        let folder = entry.expect("entry").path();
        let name = folder.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("patient-") {
            continue;
        }
        assert_eq!(first_forbidden_word(&name), None, "folder name {name}");
        for part in ["subject.txt", "body.txt", "body.html"] {
            let text = std::fs::read_to_string(folder.join(part)).expect("template part exists");
            assert_eq!(first_forbidden_word(&text), None, "{name}/{part}");
            checked += 1;
        }
    }
    assert_eq!(checked, 15, "five patient kinds with three parts each");
}

#[test]
fn every_kind_has_a_template_folder() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/email");
    for kind in MessageKind::ALL {
        for part in ["subject.txt", "body.txt", "body.html"] {
            assert!(root.join(kind.name()).join(part).exists(), "{}/{part}", kind.name());
        }
        assert_eq!(MessageKind::from_name(kind.name()), Some(kind));
    }
}

#[test]
fn revealing_sender_names_stop_the_composer() {
    for name in ["Refill Clinic", "Eastside Pain & Recovery"] {
        let error = Composer::new(NotifySettings { sender_name: name.into(), ..settings() }).unwrap_err();
        assert!(error.to_string().contains("[notify] sender_name"), "{error}");
    }
}

#[test]
fn staff_and_physician_messages_render_their_lists() {
    let composer = Composer::new(settings()).unwrap();
    let date = NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
    let digest = MorningDigest {
        clinic_date: date,
        queue: vec![
            StatusCount { status: "HOLD".into(), count: 3 },
            StatusCount { status: "APPROVE".into(), count: 12 },
        ],
        supply_running_out: vec![SupplyRunningOut { patient_ref: "patient #7".into(), runs_out_on: date }],
        overdue: vec![
            Overdue { patient_ref: "patient #9".into(), item: OverdueItem::Uds, due_on: Some(date) },
            Overdue { patient_ref: "patient #10".into(), item: OverdueItem::Pdmp, due_on: None },
        ],
        without_email_consent: vec!["patient #11".into()],
    };
    let email = composer.morning_digest(&digest, &settings().staff_recipients, now()).unwrap();
    let text = decode_quoted_printable(&String::from_utf8(email.raw).unwrap());
    for expected in [
        "HOLD: 3",
        "APPROVE: 12",
        "patient #7: supply runs out 2026-12-08",
        "patient #9: UDS due 2026-12-08",
        "patient #10: PDMP check overdue",
        "patient #11",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert_eq!(email.idempotency_key, "staff-morning-digest:staff:2026-12-08");

    let exceptions = ExceptionDigest {
        clinic_date: date,
        exceptions: vec![ExceptionLine {
            patient_ref: "patient #4".into(),
            summary: "URGENT: mme crossed threshold".into(),
            opened_on: date,
        }],
        break_glass: vec![BreakGlassLine {
            user: "Dr. Okafor".into(),
            patient_ref: "patient #12".into(),
            granted_at: date.and_hms_opt(9, 5, 0).unwrap(),
            minutes: 60,
        }],
    };
    let email = composer.exception_digest(&exceptions, &settings().physician_recipients, now()).unwrap();
    let text = decode_quoted_printable(&String::from_utf8(email.raw).unwrap());
    assert!(text.contains("patient #4: URGENT: mme crossed threshold"), "{text}");
    assert!(text.contains("Dr. Okafor opened patient #12 at 2026-12-08 09:05 for 60 minutes"), "{text}");

    let alert = UrgentAlert {
        escalation_ref: "e-77".into(),
        patient_ref: "patient #4".into(),
        summary: "overdose or sedation signal".into(),
        raised_at: date.and_hms_opt(10, 15, 0).unwrap(),
    };
    let email = composer.urgent_alert(&alert, &settings().physician_recipients, now()).unwrap();
    let text = decode_quoted_printable(&String::from_utf8(email.raw).unwrap());
    assert!(text.contains("Subject: Urgent: a patient needs your review"), "{text}");
    assert!(text.contains("2026-12-08 10:15"), "{text}");
    assert_eq!(email.idempotency_key, "physician-urgent-alert:e-77:2026-12-08");
}
