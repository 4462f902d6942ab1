//! Screening instruments as pure functions: the Opioid Risk Tool (ORT) and the PEG scale.
