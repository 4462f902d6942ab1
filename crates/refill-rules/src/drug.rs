//! The opioid drug table (RxNorm products with ingredient, strength, unit, dose form, long-acting),
//! embedded at build time, and identification of a product from its code or RxNorm-style text.
