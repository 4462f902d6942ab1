//! Read models for the web screens: the staff queue page, the exception list and detail, the patient
//! page and the clinic dashboard. Each is one or a few queries shaped for one screen.
