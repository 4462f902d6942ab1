//! The synthetic demo clinic: a realistic population generated from a seed (pure, no I/O).
