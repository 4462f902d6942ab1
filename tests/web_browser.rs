//! End-to-end tests of the web screens in headless Chromium through chromedriver (raw WebDriver over
//! HTTP): a demo clinic is built with `refill demo --no-serve`, accounts are added with `refill user add`,
//! `refill serve` runs on a free loopback port, and two browsers (a staff member and a physician) work
//! the queue and an exception while each sees the other's change arrive without a reload.
//!
//! Skips with a notice when chromium or chromedriver is missing; fails instead when CI=true. Every page
//! is 1440x900 (a desk's screen). With `REFILL_SCREENSHOTS=DIR` the screens test saves the queue,
//! search, patient page, exceptions, exception review (and a refused decision) and dashboard as PNGs
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

    let staff = Browser::open(driver_port, base, &dir.path().join("profile-staff"));
    staff.sign_in("erin", password);
    staff.go("/queue");
    staff.find("tr.row");
    // The rows with a physician sit behind their own tally; this test follows one of them.
    staff.go("/queue?filter=open");
    staff.find("tr.row");

    let physician = Browser::open(driver_port, base, &dir.path().join("profile-physician"));
    physician.sign_in("paul", password);
    physician.go("/exceptions");
    physician.find("tr.row");

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

/// The screens a desk and a physician work from all day (issue 14), at 1440x900: the compact queue
/// (a dozen rows and more on the first screen, one line each, the key legend in view, a key that does
/// not apply says so), patient search from the header, a physician's home on the exceptions, a refused
/// decision keeping what was typed right beside the refusal, an admin disabling an account and
/// resetting a password; and axe-core on every page: no critical violation, no unlabelled field.
#[test]
fn the_desk_and_the_physician_work_from_the_screens_and_every_page_passes_axe() {
    if !browsers_available() {
        return;
    }
    let axe = axe_source();
    let served = serve_demo_clinic("400");
    let (dir, driver_port, password) = (&served.dir, served.driver_port, served.password);
    let shots: Option<PathBuf> = std::env::var_os("REFILL_SCREENSHOTS").map(PathBuf::from);
    let mut problems: Vec<String> = Vec::new();
    let mut check = |browser: &Browser, page: &str| {
        if let Some(axe) = axe.as_deref() {
            problems.extend(browser.accessibility_problems(axe).into_iter().map(|p| format!("{page}: {p}")));
        }
    };

    let staff = Browser::open(driver_port, &served.base, &dir.path().join("profile-desk"));
    staff.sign_in("erin", password);
    staff.go("/queue");
    staff.find("tr.row");
    let viewport = staff.script("return [window.innerWidth, window.innerHeight];");
    assert_eq!(viewport, json!([1440, 900]), "the test looks at the screen a desk has");
    let visible = staff.script(
        "return [...document.querySelectorAll('tr.row')].filter(r => { const b = r.getBoundingClientRect();          return b.top >= 0 && b.bottom <= window.innerHeight; }).length;",
    );
    assert!(visible.as_i64().is_some_and(|n| n >= 12), "rows on the first screen: {visible}");
    let tallest = staff.script(
        "return Math.max(...[...document.querySelectorAll('tr.row')].map(r => r.getBoundingClientRect().height));",
    );
    assert!(tallest.as_f64().is_some_and(|h| h <= 36.0), "one line per row (tallest {tallest} px)");
    eprintln!("queue at 1440x900: {visible} rows on the first screen, tallest row {tallest} px");
    let legend = staff.script(
        "const b = document.querySelector('#keys').getBoundingClientRect(); return b.bottom <= window.innerHeight;",
    );
    assert_eq!(legend, Value::Bool(true), "the key legend is on the first screen");
    let physician_rows =
        staff.script("return document.querySelectorAll('tr.row.st-escalated, tr.row.st-urgent').length;");
    assert_eq!(physician_rows, json!(0), "the desk's default view leaves the physician's rows to their tally");
    staff.screenshot(shots.as_deref(), "queue");
    staff.click("tr.row td:nth-child(3)");
    staff.find("#panel .panel-inner");
    check(&staff, "/queue with the panel open");

    // A key that does not apply to the row says so.
    staff.go("/queue?filter=physician");
    staff.click("tr.row td:nth-child(3)");
    staff.find("#panel .panel-inner");
    staff.script("document.dispatchEvent(new KeyboardEvent('keydown', { key: 'p', bubbles: true }));");
    staff.wait_for(
        "the panel to say prepare does not apply",
        "const n = document.querySelector('#panel-key-note'); return !!n && !n.hidden && n.textContent.includes('does not apply');",
        Duration::from_secs(10),
    );

    // Search from the header: by family name, then the patient page.
    staff.go("/queue");
    let name = staff.script("return document.querySelector('tr.row td a').textContent;");
    let name = name.as_str().expect("a patient name").to_string();
    let family = name.split(',').next().expect("family name").trim().to_string();
    staff.type_into("#top-search", &family);
    staff.click("header form.search button[type=submit]");
    staff.wait_for(
        "the search results",
        &format!(
            "const t = document.querySelector('#search-results'); return !!t && t.textContent.includes({name:?});"
        ),
        Duration::from_secs(10),
    );
    check(&staff, "/patients?q=");
    staff.screenshot(shots.as_deref(), "search");
    staff.click("#search-results a");
    staff.find(".patient");
    check(&staff, "/patients/{id}");
    staff.screenshot(shots.as_deref(), "patient");

    // The physician lands on the exceptions; a refused stop keeps the option and the rationale, and the
    // refusal sits on the first screen beside the facts.
    let physician = Browser::open(driver_port, &served.base, &dir.path().join("profile-doctor"));
    physician.sign_in("paul", password);
    physician.wait_for(
        "the exceptions as home",
        "return location.pathname === '/exceptions';",
        Duration::from_secs(10),
    );
    physician.find("#exception-list tr.row");
    let size = physician.script(
        "return [document.documentElement.outerHTML.length, document.querySelectorAll('#exception-list tr.row').length];",
    );
    eprintln!("/exceptions first page: [characters, rows] = {size}");
    check(&physician, "/exceptions");
    physician.screenshot(shots.as_deref(), "exceptions");
    let target = physician.script("return document.querySelector('#exception-list tr.row').dataset.href;");
    physician.go(target.as_str().expect("an exception"));
    physician.find("#decide-form");
    check(&physician, "/exceptions/{id}");
    physician.screenshot(shots.as_deref(), "exception-review");
    let rationale = "Six months of early requests; discussed the risks of continuing at length";
    physician.click("input[name=decision][value=stop_therapy]");
    physician.type_into("#rationale", rationale);
    physician.click("#sign-decision");
    physician.wait_for("the refusal", "return !!document.querySelector('#decide-problem');", Duration::from_secs(10));
    assert_eq!(physician.script("return document.querySelector('#rationale').value;"), json!(rationale));
    assert_eq!(
        physician.script("return document.querySelector('input[name=decision][value=stop_therapy]').checked;"),
        Value::Bool(true)
    );
    let top = physician.script("return document.querySelector('#decide-problem').getBoundingClientRect().top;");
    assert!(top.as_f64().is_some_and(|t| t < 900.0), "the refusal is on the first screen (top {top} px)");
    physician.screenshot(shots.as_deref(), "decision-refused");
    physician.go("/dashboard");
    physician.find(".dashboard");
    check(&physician, "/dashboard");
    physician.screenshot(shots.as_deref(), "dashboard");

    // An admin resets Erin's password (her sessions end) and disables the account.
    let admin = Browser::open(driver_port, &served.base, &dir.path().join("profile-admin"));
    admin.sign_in("ada", password);
    admin.find("#accounts");
    check(&admin, "/admin");
    admin.type_into("#account-erin .reset-password input[name=password]", "a fresh and unusual passphrase 8812");
    admin.click("#account-erin .reset-password button[type=submit]");
    admin.wait_for(
        "the reset",
        "const d = document.querySelector('#admin-done'); return !!d && d.textContent.includes('password is reset');",
        Duration::from_secs(10),
    );
    staff.go("/queue");
    staff.wait_for("Erin to be signed out", "return !document.querySelector('tr.row');", Duration::from_secs(10));
    admin.click("#account-erin button.disable");
    admin.wait_for(
        "the account disabled",
        "const d = document.querySelector('#admin-done'); return !!d && d.textContent.includes('is disabled');",
        Duration::from_secs(10),
    );
    let again = Browser::open(driver_port, &served.base, &dir.path().join("profile-desk-2"));
    again.go("/login");
    again.type_into("#username", "erin");
    again.type_into("#password", "a fresh and unusual passphrase 8812");
    again.click("#sign-in");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        again.command("GET", "/url", None).as_str().unwrap_or_default().contains("/login"),
        "a disabled account cannot sign in"
    );
    again.go("/login");
    again.find("#username");
    check(&again, "/login");

    assert!(problems.is_empty(), "accessibility problems:\n{}", problems.join("\n"));
}

/// Imported EHR patients (issue 14): the Synthea fixture's 40 patients come in through `refill import`;
/// those without an active opioid order wait on "Not enrolled (from EHR imports)" instead of being
/// escalated as "no active order, 0 MME/day". The desk opens the list from the navigation (record
/// numbers are UUIDs, cut short with the whole value in a title), enrols one patient, who is decided at
/// once and shows on the patient page as on today's queue; axe-core passes on the list.
#[test]
fn the_desk_enrols_an_imported_ehr_patient_from_the_not_enrolled_list() {
    if !browsers_available() {
        return;
    }
    let axe = axe_source();
    let served = serve_demo_clinic("30");
    let url = format!("sqlite:{}", served.dir.path().join("clinic.db").display());
    let imported = refill(&["--database", &url, "import", "tests/data/fhir/synthea-opioid-orders.json"], None);
    assert!(imported.status.success(), "refill import: {}", String::from_utf8_lossy(&imported.stderr));

    let staff = Browser::open(served.driver_port, &served.base, &served.dir.path().join("profile-enrol"));
    staff.sign_in("erin", served.password);
    staff.go("/queue");
    staff.click("nav a[href='/patients/not-enrolled']");
    staff.find("#not-enrolled tbody tr");
    let count = staff.script("return document.querySelector('#not-enrolled-count').textContent;");
    eprintln!("not-enrolled list after importing the Synthea fixture: {count}");
    assert!(count.as_str().is_some_and(|c| c.starts_with("34 waiting")), "{count}");
    let short = staff.script(
        "const s = document.querySelector('#not-enrolled tbody tr td:nth-child(2) span'); \
         return [s.textContent, s.title];",
    );
    let short_text = short[0].as_str().expect("shown").to_string();
    let title = short[1].as_str().expect("title").to_string();
    assert!(short_text.ends_with('…') && short_text.chars().count() == 9, "{short}");
    assert_eq!(title.len(), 36, "the whole UUID in the title: {short}");
    if let Some(axe) = axe.as_deref() {
        let problems = staff.accessibility_problems(axe);
        assert!(problems.is_empty(), "/patients/not-enrolled: {problems:?}");
    }

    let patient = staff.script("return document.querySelector('#not-enrolled tbody tr').dataset.patient;");
    let patient = patient.as_str().expect("patient id").to_string();
    staff.go(&format!("/patients/{patient}"));
    staff.find("#patient-enrolment");
    let before = staff.script("return document.querySelector('#patient-enrolment').textContent;");
    assert!(before.as_str().is_some_and(|t| t.contains("Not enrolled in the refill clinic")), "{before}");
    staff.go("/patients/not-enrolled");
    staff.click(&format!("#not-enrolled tr[data-patient='{patient}'] form[action$='/enrol'] button"));
    staff.wait_for(
        "the enrolment to be confirmed",
        "const d = document.querySelector('#enrolment-done'); return !!d;",
        Duration::from_secs(10),
    );
    let after = staff.script("return document.querySelector('#not-enrolled-count').textContent;");
    assert!(after.as_str().is_some_and(|c| c.starts_with("33 waiting")), "{after}");
    staff.go(&format!("/patients/{patient}"));
    staff.find(".patient");
    let page = staff.script(
        "return [!!document.querySelector('#patient-enrolment'), document.querySelector('#patient-today').textContent];",
    );
    assert_eq!(page[0], Value::Bool(false), "the patient page still says not enrolled");
    let today = page[1].as_str().expect("today line");
    assert!(!today.contains("Not on today's queue"), "enrolled and decided at once: {today}");
    eprintln!("enrolled patient {patient}, today: {}", today.trim());
}
