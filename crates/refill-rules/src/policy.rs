//! The effective clinic policy: every threshold the rules use, grouped by module, with defaults that
//! match config/policy.toml and clinical-rules.md. The shell parses the policy file into `Policy`.
