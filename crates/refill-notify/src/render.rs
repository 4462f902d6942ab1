//! Rendering: one askama template per (kind, part) from `templates/email/<kind>/`, and the check that
//! a rendered patient message carries no forbidden wording.

use askama::Template;

use crate::NotifyError;
use crate::views::{
    BreakGlassLine, ExceptionDigest, MessageKind, MorningDigest, PatientNotice, PatientNoticeKind, UrgentAlert,
};
use crate::wording::forbidden_words_in;

/// Subject, plain text and HTML of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The configured details every patient message may carry besides the first name and the date.
#[derive(Debug, Clone, Copy)]
pub struct PatientContactDetails<'a> {
    pub sender_name: &'a str,
    pub callback_number: &'a str,
    pub sign_in_url: &'a str,
}

/// The fields a patient template can see. Nothing else exists to be printed.
macro_rules! patient_kind {
    ($subject:ident, $text:ident, $html:ident, $subject_path:literal, $text_path:literal, $html_path:literal) => {
        #[derive(Template)]
        #[template(path = $subject_path)]
        struct $subject;

        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a> {
            first_name: &'a str,
            when: &'a str,
            sender_name: &'a str,
            callback_number: &'a str,
            sign_in_url: &'a str,
        }

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> {
            first_name: &'a str,
            when: &'a str,
            sender_name: &'a str,
            callback_number: &'a str,
            sign_in_url: &'a str,
        }
    };
}

patient_kind!(
    WindowOpensSubject,
    WindowOpensText,
    WindowOpensHtml,
    "email/patient-window-opens/subject.txt",
    "email/patient-window-opens/body.txt",
    "email/patient-window-opens/body.html"
);
patient_kind!(
    PlanChangeSubject,
    PlanChangeText,
    PlanChangeHtml,
    "email/patient-plan-change/subject.txt",
    "email/patient-plan-change/body.txt",
    "email/patient-plan-change/body.html"
);
patient_kind!(
    AgreementRenewalSubject,
    AgreementRenewalText,
    AgreementRenewalHtml,
    "email/patient-agreement-renewal/subject.txt",
    "email/patient-agreement-renewal/body.txt",
    "email/patient-agreement-renewal/body.html"
);
patient_kind!(
    VisitDueSubject,
    VisitDueText,
    VisitDueHtml,
    "email/patient-visit-due/subject.txt",
    "email/patient-visit-due/body.txt",
    "email/patient-visit-due/body.html"
);
patient_kind!(
    FollowUpSubject,
    FollowUpText,
    FollowUpHtml,
    "email/patient-follow-up/subject.txt",
    "email/patient-follow-up/body.txt",
    "email/patient-follow-up/body.html"
);

fn render(template: &impl Template, name: &'static str) -> Result<String, NotifyError> {
    template.render().map_err(|source| NotifyError::Render { template: name, source })
}

/// Render a patient notice, then refuse the result if any forbidden word appears outside the first
/// name (a first name such as "Paine" is the patient's own and stays).
pub fn render_patient(
    notice: &PatientNotice,
    details: PatientContactDetails<'_>,
) -> Result<RenderedEmail, NotifyError> {
    let when = notice.about.display();
    let first_name = notice.first_name.trim();
    let name = notice.kind.message_kind().name();
    macro_rules! parts {
        ($subject:ident, $text:ident, $html:ident) => {{
            let PatientContactDetails { sender_name, callback_number, sign_in_url } = details;
            let text = $text { first_name, when: &when, sender_name, callback_number, sign_in_url };
            let html = $html { first_name, when: &when, sender_name, callback_number, sign_in_url };
            RenderedEmail {
                subject: render(&$subject, name)?.trim().to_string(),
                text: render(&text, name)?,
                html: render(&html, name)?,
            }
        }};
    }
    let rendered = match notice.kind {
        PatientNoticeKind::WindowOpens => parts!(WindowOpensSubject, WindowOpensText, WindowOpensHtml),
        PatientNoticeKind::PlanChange => parts!(PlanChangeSubject, PlanChangeText, PlanChangeHtml),
        PatientNoticeKind::AgreementRenewal => {
            parts!(AgreementRenewalSubject, AgreementRenewalText, AgreementRenewalHtml)
        }
        PatientNoticeKind::VisitDue => parts!(VisitDueSubject, VisitDueText, VisitDueHtml),
        PatientNoticeKind::FollowUp => parts!(FollowUpSubject, FollowUpText, FollowUpHtml),
    };
    let own_name: Vec<String> = first_name.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect();
    for part in [&rendered.subject, &rendered.text, &rendered.html] {
        if let Some(word) = forbidden_words_in(part).into_iter().find(|w| !own_name.contains(&w.to_lowercase())) {
            return Err(NotifyError::ForbiddenWording { template: name, word });
        }
    }
    Ok(rendered)
}

#[derive(Template)]
#[template(path = "email/staff-morning-digest/subject.txt")]
struct MorningDigestSubject;

#[derive(Template)]
#[template(path = "email/staff-morning-digest/body.txt")]
struct MorningDigestText<'a> {
    clinic_date: chrono::NaiveDate,
    queue: &'a [crate::views::StatusCount],
    supply_running_out: &'a [crate::views::SupplyRunningOut],
    overdue: &'a [crate::views::Overdue],
    without_email_consent: &'a [String],
    sign_in_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/staff-morning-digest/body.html")]
struct MorningDigestHtml<'a> {
    clinic_date: chrono::NaiveDate,
    queue: &'a [crate::views::StatusCount],
    supply_running_out: &'a [crate::views::SupplyRunningOut],
    overdue: &'a [crate::views::Overdue],
    without_email_consent: &'a [String],
    sign_in_url: &'a str,
}

pub fn render_morning_digest(digest: &MorningDigest, sign_in_url: &str) -> Result<RenderedEmail, NotifyError> {
    let name = MessageKind::StaffMorningDigest.name();
    let subject = render(&MorningDigestSubject, name)?.trim().to_string();
    let text = MorningDigestText {
        clinic_date: digest.clinic_date,
        queue: &digest.queue,
        supply_running_out: &digest.supply_running_out,
        overdue: &digest.overdue,
        without_email_consent: &digest.without_email_consent,
        sign_in_url,
    };
    let html = MorningDigestHtml {
        clinic_date: digest.clinic_date,
        queue: &digest.queue,
        supply_running_out: &digest.supply_running_out,
        overdue: &digest.overdue,
        without_email_consent: &digest.without_email_consent,
        sign_in_url,
    };
    Ok(RenderedEmail {
        subject: format!("{subject} {}", digest.clinic_date),
        text: render(&text, name)?,
        html: render(&html, name)?,
    })
}

#[derive(Template)]
#[template(path = "email/physician-exception-digest/subject.txt")]
struct ExceptionDigestSubject;

#[derive(Template)]
#[template(path = "email/physician-exception-digest/body.txt")]
struct ExceptionDigestText<'a> {
    clinic_date: chrono::NaiveDate,
    exceptions: &'a [crate::views::ExceptionLine],
    break_glass: &'a [crate::views::BreakGlassLine],
    sign_in_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/physician-exception-digest/body.html")]
struct ExceptionDigestHtml<'a> {
    clinic_date: chrono::NaiveDate,
    exceptions: &'a [crate::views::ExceptionLine],
    break_glass: &'a [crate::views::BreakGlassLine],
    sign_in_url: &'a str,
}

pub fn render_exception_digest(digest: &ExceptionDigest, sign_in_url: &str) -> Result<RenderedEmail, NotifyError> {
    let name = MessageKind::PhysicianExceptionDigest.name();
    let subject = render(&ExceptionDigestSubject, name)?.trim().to_string();
    let text = ExceptionDigestText {
        clinic_date: digest.clinic_date,
        exceptions: &digest.exceptions,
        break_glass: &digest.break_glass,
        sign_in_url,
    };
    let html = ExceptionDigestHtml {
        clinic_date: digest.clinic_date,
        exceptions: &digest.exceptions,
        break_glass: &digest.break_glass,
        sign_in_url,
    };
    Ok(RenderedEmail {
        subject: format!("{subject} {}", digest.clinic_date),
        text: render(&text, name)?,
        html: render(&html, name)?,
    })
}

#[derive(Template)]
#[template(path = "email/physician-urgent-alert/subject.txt")]
struct UrgentAlertSubject;

#[derive(Template)]
#[template(path = "email/physician-urgent-alert/body.txt")]
struct UrgentAlertText<'a> {
    patient_ref: &'a str,
    summary: &'a str,
    raised_at: String,
    sign_in_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/physician-urgent-alert/body.html")]
struct UrgentAlertHtml<'a> {
    patient_ref: &'a str,
    summary: &'a str,
    raised_at: String,
    sign_in_url: &'a str,
}

pub fn render_urgent_alert(alert: &UrgentAlert, sign_in_url: &str) -> Result<RenderedEmail, NotifyError> {
    let name = MessageKind::PhysicianUrgentAlert.name();
    let raised_at = alert.raised_at.format("%Y-%m-%d %H:%M").to_string();
    let text = UrgentAlertText {
        patient_ref: &alert.patient_ref,
        summary: &alert.summary,
        raised_at: raised_at.clone(),
        sign_in_url,
    };
    let html = UrgentAlertHtml { patient_ref: &alert.patient_ref, summary: &alert.summary, raised_at, sign_in_url };
    Ok(RenderedEmail {
        subject: render(&UrgentAlertSubject, name)?.trim().to_string(),
        text: render(&text, name)?,
        html: render(&html, name)?,
    })
}

#[derive(Template)]
#[template(path = "email/privacy-break-glass-alert/subject.txt")]
struct BreakGlassAlertSubject;

#[derive(Template)]
#[template(path = "email/privacy-break-glass-alert/body.txt")]
struct BreakGlassAlertText<'a> {
    user: &'a str,
    patient_ref: &'a str,
    granted_at: String,
    minutes: i64,
    sign_in_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/privacy-break-glass-alert/body.html")]
struct BreakGlassAlertHtml<'a> {
    user: &'a str,
    patient_ref: &'a str,
    granted_at: String,
    minutes: i64,
    sign_in_url: &'a str,
}

/// The privacy officer's alert for one break-the-glass grant: who, which patient (opaque reference),
/// when and for how long; never the written reason, which may describe the restricted record.
pub fn render_break_glass_alert(grant: &BreakGlassLine, sign_in_url: &str) -> Result<RenderedEmail, NotifyError> {
    let name = MessageKind::PrivacyBreakGlassAlert.name();
    let granted_at = grant.granted_at.format("%Y-%m-%d %H:%M").to_string();
    let text = BreakGlassAlertText {
        user: &grant.user,
        patient_ref: &grant.patient_ref,
        granted_at: granted_at.clone(),
        minutes: grant.minutes,
        sign_in_url,
    };
    let html = BreakGlassAlertHtml {
        user: &grant.user,
        patient_ref: &grant.patient_ref,
        granted_at,
        minutes: grant.minutes,
        sign_in_url,
    };
    Ok(RenderedEmail {
        subject: render(&BreakGlassAlertSubject, name)?.trim().to_string(),
        text: render(&text, name)?,
        html: render(&html, name)?,
    })
}
