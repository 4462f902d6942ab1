//! End-to-end tests of the web screens in headless Chromium through chromedriver (raw WebDriver over
//! HTTP): a demo clinic is built with `refill demo --no-serve`, accounts are added with `refill user add`,
//! `refill serve` runs on a free loopback port, and two browsers (a staff member and a physician) work
//! the queue and an exception while each sees the other's change arrive without a reload.
//!
//! Skips with a notice when chromium or chromedriver is missing; fails instead when CI=true. With
//! `REFILL_SCREENSHOTS=DIR` it saves the queue, exception review, patient page and dashboard as PNGs
//! there (docs/screenshots is made this way).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::browser::*;

/// The refill cycle through the screens: staff send a patient whose refill is due to a physician with a
/// note; the physician sees the note on the exception and signs a 14-day bridge with a review-by date;
/// staff see the bridge on the queue and prepare it.
#[test]
fn staff_send_with_a_note_the_physician_bridges_and_staff_prepare_the_bridge() {
    if !browsers_available() {
        return;
    }
    let served = serve_demo_clinic("150");
    let staff = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-staff"));
    staff.sign_in("erin", served.password);
    staff.go("/queue");
    staff.find("tr.row");
    // A patient whose refill is due and approved: nothing for a physician yet.
    let patient = staff
        .script(
            "const row = [...document.querySelectorAll('tr.row.st-approve')].find(r => (r.dataset.window || '').startsWith('refill due'));              return row ? row.dataset.patient : null;",
        )
        .as_str()
        .expect("an approved row whose refill is due")
        .to_string();
    staff.click(&format!("#row-{patient} td:nth-child(3)"));
    staff.find("#panel .panel-inner");
    staff.click("#panel details[data-action='s'] summary");
    staff.type_into(
        "#panel details[data-action='s'] textarea[name=note]",
        "Reports new dizziness since the last refill",
    );
    staff.click("#panel details[data-action='s'] button[type=submit]");
    staff.wait_for(
        "the panel to confirm the referral",
        "const m = document.querySelector('#panel-message'); return !!m && m.textContent.includes('Sent to a physician');",
        Duration::from_secs(10),
    );

    let physician = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-physician"));
    physician.sign_in("paul", served.password);
    let target = exception_of(&physician, &patient).expect("the sent patient is on the physician's list");
    physician.go(&target);
    physician.wait_for(
        "the staff note on the exception",
        "return !!document.querySelector('#staff-notes');",
        Duration::from_secs(10),
    );
    let notes = physician.script("return document.querySelector('#staff-notes').innerText;");
    let notes = notes.as_str().unwrap_or_default();
    assert!(notes.contains("Reports new dizziness since the last refill") && notes.contains("Erin Staff"), "{notes}");
    physician.click("input[name=decision][value=approve_bridge]");
    physician.type_into("#bridge-days", "14");
    physician.type_into("#bridge-quantity", "56");
    physician.type_into("#rationale", "Dizziness likely positional; bridge while we see the patient next week.");
    physician.click("#sign-decision");
    physician.wait_for(
        "the list after signing",
        "return location.pathname === '/exceptions';",
        Duration::from_secs(10),
    );

    // Staff see the physician's bridge on the queue row and in the panel, and prepare it.
    staff.go("/queue");
    staff.wait_for(
        "the queue row to show the bridge",
        &format!(
            "const row = document.querySelector('#row-{patient}');              return !!row && row.textContent.includes('Bridge: 14 days, 56 units') && row.textContent.includes('Paul Physician');"
        ),
        Duration::from_secs(10),
    );
    staff.click(&format!("#row-{patient} td:nth-child(3)"));
    staff.wait_for(
        "the panel with the physician's decision",
        "return !!document.querySelector('#panel-standing');",
        Duration::from_secs(10),
    );
    let standing = staff.script("return document.querySelector('#panel-standing').innerText;");
    assert!(standing.as_str().unwrap_or_default().contains("review by"), "{standing}");
    staff.click("#panel form[data-action='p'] button[type=submit]");
    staff.wait_for(
        "the panel to confirm the bridge was prepared",
        "const m = document.querySelector('#panel-message'); return !!m && m.textContent.includes('Bridge prepared for signature: 14 days');",
        Duration::from_secs(10),
    );
}

#[test]
fn staff_and_physician_work_the_queue_and_see_each_other() {
    if !browsers_available() {
        return;
    }
    let served = serve_demo_clinic("150");
    let (dir, base, driver_port, password) = (&served.dir, &served.base, served.driver_port, served.password);
    let shots: Option<PathBuf> = std::env::var_os("REFILL_SCREENSHOTS").map(PathBuf::from);

    let staff = Browser::open(driver_port, base, &dir.path().join("profile-staff"));
    staff.sign_in("erin", password);
    staff.go("/queue");
    staff.find("tr.row");
    staff.screenshot(shots.as_deref(), "queue");
    // The rows with a physician sit behind their own tally; this test follows one of them.
    staff.go("/queue?filter=open");
    staff.find("tr.row");

    let physician = Browser::open(driver_port, base, &dir.path().join("profile-physician"));
    physician.sign_in("paul", password);
    physician.go("/exceptions");
    physician.find("tr.row");
    physician.screenshot(shots.as_deref(), "exceptions");

    // Staff work the first row that is waiting for a naloxone offer: open the side panel, record the offer.
    let first = staff
        .script(
            "const row = [...document.querySelectorAll('tr.row')].find(r => r.textContent.includes('Naloxone offer due')); \
             return row ? row.dataset.patient : null;",
        )
        .as_str()
        .expect("a row with a naloxone offer due")
        .to_string();
    // The physician stays on the page of the list that holds the patient's exception.
    exception_of(&physician, &first).expect("the physician's list has the patient's exception");
    staff.click(&format!("#row-{first} td:nth-child(3)"));
    staff.find("#panel .panel-inner");
    // The naloxone offer is due, so its form is already open; other forms stay folded.
    let open = staff.script(
        "return [...document.querySelectorAll('#panel details')].filter(d => d.open).map(d => d.dataset.action);",
    );
    assert!(open.as_array().is_some_and(|open| open.contains(&json!("n"))), "the due action's form is open: {open}");
    staff.click("#panel details[data-action='n'] button[type=submit]");
    staff.wait_for(
        "the panel to confirm the action",
        "const m = document.querySelector('#panel-message'); return !!m && m.textContent.includes('Naloxone recorded');",
        Duration::from_secs(10),
    );

    // The physician's open list updates without a reload: the naloxone reason is gone from that row.
    physician.wait_for(
        "the physician's list to drop the naloxone reason",
        &format!(
            "const row = document.querySelector('tr.row[data-patient=\"{first}\"]'); \
             return !!row && !row.textContent.includes('Naloxone offer due');"
        ),
        Duration::from_secs(10),
    );

    // The physician signs an approval for that patient; the staff screen's tallies change live.
    staff.script("document.body.dataset.before = document.querySelector('.tallies').textContent;");
    let target = physician
        .script(&format!("return document.querySelector('tr.row[data-patient=\"{first}\"]').dataset.href;"))
        .as_str()
        .expect("exception link")
        .to_string();
    physician.go(&target);
    physician.find("#decide-form");
    physician.screenshot(shots.as_deref(), "exception-review");
    physician.click("input[name=decision][value=approve_refill]");
    physician.type_into("#rationale", "Benefit outweighs risk; PDMP and drug tests reviewed; naloxone offered today.");
    physician.click("#sign-decision");
    physician.wait_for(
        "the list after signing",
        "return location.pathname === '/exceptions';",
        Duration::from_secs(10),
    );
    assert_eq!(
        physician.script(&format!("return !!document.querySelector('tr.row[data-patient=\"{first}\"]');")),
        Value::Bool(false),
        "the signed exception left the list"
    );
    staff.wait_for(
        "the staff screen to show the physician's decision",
        "return document.querySelector('.tallies').textContent !== document.body.dataset.before;",
        Duration::from_secs(15),
    );

    if shots.is_some() {
        staff.go(&format!("/patients/{first}"));
        staff.find(".patient");
        staff.screenshot(shots.as_deref(), "patient");
        physician.go("/dashboard");
        physician.find(".dashboard");
        physician.screenshot(shots.as_deref(), "dashboard");
    }
}

/// The link of `patient`'s open exception, walking the physician's paged list until it is found; the
/// browser is left on that page.
fn exception_of(physician: &Browser, patient: &str) -> Option<String> {
    for page in 0..40 {
        physician.go(&format!("/exceptions?page={page}"));
        physician.find("#exception-list");
        let href = physician.script(&format!(
            "const row = document.querySelector('tr.row[data-patient=\"{patient}\"]'); return row ? row.dataset.href : null;"
        ));
        if let Some(href) = href.as_str() {
            return Some(href.to_string());
        }
        if physician.script("return !!document.querySelector('#exceptions-next');") != Value::Bool(true) {
            return None;
        }
    }
    None
}
