//! Taper plans: dispensable, monotone, rate-limited dose reduction schedules, with pauses and history.
