//! A taper through the screens in headless Chromium (issue 13): the physician previews a taper for a
//! patient on a combination product and sees the exact products each step orders (hydrocodone with
//! 325 mg acetaminophen only) and signs it; staff record a check-in with significant withdrawal on the
//! patient page; the plan pauses and the physician is asked, with the reason on the exception.
//!
//! Skips with a notice when chromium or chromedriver is missing; fails instead when CI=true.

mod support;

use std::time::Duration;

use support::browser::*;

/// The exception (href) and patient of an open exception whose patient takes a hydrocodone/
/// acetaminophen combination and no 42 CFR Part 2 record, found by reading the screens.
const FIND_COMBINATION: &str = r#"
const parse = (html) => new DOMParser().parseFromString(html, 'text/html');
const list = parse(await (await fetch('/exceptions')).text());
const tried = (window.__tried || []);
for (const row of list.querySelectorAll('tr.row[data-patient]')) {
  const patient = row.dataset.patient;
  if (tried.includes(patient)) continue;
  const page = parse(await (await fetch('/patients/' + patient)).text());
  const text = page.body.innerText;
  if (text.includes('acetaminophen 325 MG / hydrocodone') && !text.includes('Part 2 records')) {
    window.__tried = tried.concat([patient]);
    return [row.dataset.href, patient];
  }
}
return null;
"#;

#[test]
fn a_combination_taper_shows_exact_products_and_a_withdrawal_check_in_pauses_it_for_the_physician() {
    if !browsers_available() {
        return;
    }
    let served = serve_demo_clinic("400");
    let physician = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-physician"));
    physician.sign_in("paul", served.password);
    physician.go("/exceptions");

    // Preview a taper for a patient on hydrocodone/acetaminophen (the first whose plan the planner makes).
    let mut chosen: Option<String> = None;
    for _ in 0..8 {
        let found = physician.script(&format!("return (async () => {{ {FIND_COMBINATION} }})();"));
        let Some(pair) = found.as_array() else { break };
        let (href, patient) = (pair[0].as_str().expect("href").to_string(), pair[1].as_str().expect("id").to_string());
        physician.go(&href);
        physician.find("#taper-form");
        physician.script("document.querySelector('#taper-preset').value = 'slower';");
        physician.type_into("#taper-target", "0");
        physician.click("#taper-preview");
        physician.wait_for(
            "the proposed schedule or the planner's reason",
            "return !!document.querySelector('#taper-schedule') || !!document.querySelector('#taper-refusal');",
            Duration::from_secs(10),
        );
        if physician.script("return !!document.querySelector('#taper-schedule');").as_bool() == Some(true) {
            chosen = Some(patient);
            break;
        }
        physician.go("/exceptions");
    }
    let patient = chosen.expect("a patient on hydrocodone/acetaminophen with an open exception the planner can taper");
    let schedule = physician.script("return document.querySelector('#taper-schedule').innerText;");
    let schedule = schedule.as_str().unwrap_or_default().to_string();
    assert!(schedule.contains("acetaminophen 325 MG / hydrocodone bitartrate"), "{schedule}");
    assert!(
        !schedule.contains("750 MG") && !schedule.contains("300 MG /"),
        "no other acetaminophen strength: {schedule}"
    );
    assert!(schedule.contains("Check-in by") && schedule.contains("Acetaminophen/day"), "{schedule}");
    physician
        .type_into("#taper-rationale", "Agreed with the patient: a slow taper, 325 mg acetaminophen products only.");
    physician.click("#sign-taper");
    physician.wait_for(
        "the list after signing",
        "return location.pathname === '/exceptions';",
        Duration::from_secs(10),
    );

    // Staff record a check-in with significant withdrawal on the patient page.
    let staff = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-staff"));
    staff.sign_in("erin", served.password);
    staff.go(&format!("/patients/{patient}"));
    staff.find("#check-in-form");
    staff.type_into("#check-in-pain", "6");
    staff.type_into("#check-in-enjoyment", "6");
    staff.type_into("#check-in-activity", "6");
    staff.script("document.querySelector('#check-in-withdrawal').value = 'significant';");
    staff.click("#check-in-submit");
    staff.wait_for(
        "the plan to show paused",
        "const s = document.querySelector('#taper-state'); return !!s && s.textContent.includes('paused');",
        Duration::from_secs(10),
    );

    // The physician is asked: an open exception for the patient, with the reason in the desk's notes.
    physician.go("/exceptions");
    let href = physician.script(&format!(
        "const row = document.querySelector('tr.row[data-patient=\"{patient}\"]'); return row ? row.dataset.href : null;"
    ));
    let href = href.as_str().expect("the patient is back on the physician's list").to_string();
    physician.go(&href);
    physician.wait_for(
        "the note on the exception",
        "return !!document.querySelector('#staff-notes');",
        Duration::from_secs(10),
    );
    let notes = physician.script("return document.querySelector('#staff-notes').innerText;");
    assert!(notes.as_str().unwrap_or_default().contains("significant withdrawal"), "{notes}");
}
