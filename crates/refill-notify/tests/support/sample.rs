//! The sample clinic identity the notifier tests send as: a neutral sender, its Message-ID domain,
//! callback number and sign-in link, with the given staff and physician recipients.

use refill_notify::NotifySettings;

/// Northside Care's `[notify]` settings with `staff` and `physicians` as the digest recipients.
pub fn northside(staff: &[&str], physicians: &[&str]) -> NotifySettings {
    NotifySettings {
        sender_name: "Northside Care".into(),
        sender_address: "no-reply@northside.example".into(),
        message_id_domain: "mail.northside.example".into(),
        callback_number: "+1 555 0123".into(),
        sign_in_url: "https://portal.northside.example/sign-in".into(),
        staff_recipients: staff.iter().map(|r| r.to_string()).collect(),
        physician_recipients: physicians.iter().map(|r| r.to_string()).collect(),
        privacy_officer_recipients: vec![],
    }
}
