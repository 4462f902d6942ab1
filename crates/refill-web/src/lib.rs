//! The web screens and JSON API (axum + askama): the staff queue, physician exception review, patient
//! pages, dashboard and sign-in. It writes rows and enqueues jobs; it never sends email.
