//! Dispensable doses: which amounts per administration a pharmacy can hand out for one product line,
//! built from the strengths that exist in the drug table, with the fewest units (and halves only where
//! the policy allows splitting that dose form).

use std::collections::BTreeMap;

/// One kind of unit in a dose: `count` units (halves allowed: 0.5, 1.5) of the product of `strength`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitCount {
    /// Strength per whole unit in the line's unit (mg, or mcg/hr for patches).
    pub strength: f64,
    pub count: f64,
}

/// A dose per administration made of dispensable units.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitDose {
    /// Largest strengths first.
    pub units: Vec<UnitCount>,
}

impl UnitDose {
    pub fn amount(&self) -> f64 {
        self.units.iter().map(|unit| unit.strength * unit.count).sum()
    }

    /// Units handed out per administration (a half counts as one piece).
    pub fn pieces(&self) -> f64 {
        self.units.iter().map(|unit| unit.count.ceil()).sum()
    }

    pub fn describe(&self, unit_label: &str) -> String {
        self.units
            .iter()
            .map(|unit| format!("{} x {} {unit_label}", trim_number(unit.count), trim_number(unit.strength)))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// Prints 15.0 as "15" and 12.5 as "12.5".
pub fn trim_number(value: f64) -> String {
    // `+ 0.0` turns a negative zero (an empty f64 sum is -0.0) into 0.
    let rounded = (value * 1000.0).round() / 1000.0 + 0.0;
    if rounded.fract() == 0.0 { format!("{rounded:.0}") } else { format!("{rounded}") }
}

/// Amounts are compared in thousandths so that 12.5 + 2.5 equals 15 exactly.
pub fn amount_key(amount: f64) -> i64 {
    (amount * 1000.0).round() as i64
}

/// Every dispensable amount per administration, with the dose that uses the fewest pieces.
///
/// `strengths` are the product strengths that exist; `halves` allows half units; at most `max_pieces`
/// pieces per administration. Ties on pieces prefer fewer kinds of unit, then larger units.
pub fn dispensable_doses(strengths: &[f64], halves: bool, max_pieces: u32) -> BTreeMap<i64, UnitDose> {
    // Each "piece" is a whole unit, or a half unit where splitting is allowed.
    let mut pieces: Vec<(f64, f64)> = strengths.iter().map(|s| (*s, 1.0)).collect();
    if halves {
        pieces.extend(strengths.iter().map(|s| (*s, 0.5)));
    }
    pieces.sort_by(|a, b| (b.0 * b.1).total_cmp(&(a.0 * a.1)));
    let mut best: BTreeMap<i64, UnitDose> = BTreeMap::new();
    let mut chosen: Vec<usize> = Vec::new();
    combine(&pieces, 0, max_pieces as usize, &mut chosen, &mut best);
    best
}

/// Walk the multisets of pieces (non-decreasing indexes), keeping the best dose per amount.
fn combine(
    pieces: &[(f64, f64)],
    from: usize,
    left: usize,
    chosen: &mut Vec<usize>,
    best: &mut BTreeMap<i64, UnitDose>,
) {
    if !chosen.is_empty() {
        let dose = to_dose(pieces, chosen);
        let key = amount_key(dose.amount());
        let better = match best.get(&key) {
            None => true,
            Some(existing) => rank(&dose) < rank(existing),
        };
        if better {
            best.insert(key, dose);
        }
    }
    if left == 0 {
        return;
    }
    for index in from..pieces.len() {
        chosen.push(index);
        combine(pieces, index, left - 1, chosen, best);
        chosen.pop();
    }
}

fn to_dose(pieces: &[(f64, f64)], chosen: &[usize]) -> UnitDose {
    let mut by_strength: Vec<UnitCount> = Vec::new();
    for &index in chosen {
        let (strength, fraction) = pieces[index];
        match by_strength.iter_mut().find(|unit| amount_key(unit.strength) == amount_key(strength)) {
            Some(unit) => unit.count += fraction,
            None => by_strength.push(UnitCount { strength, count: fraction }),
        }
    }
    by_strength.sort_by(|a, b| b.strength.total_cmp(&a.strength));
    UnitDose { units: by_strength }
}

/// Lower is better: fewer pieces, fewer kinds, fewer halves, then larger units first.
fn rank(dose: &UnitDose) -> (i64, usize, usize, Vec<i64>) {
    let halves = dose.units.iter().filter(|unit| unit.count.fract() != 0.0).count();
    let larger_first = dose.units.iter().map(|unit| -amount_key(unit.strength)).collect();
    ((dose.pieces() * 2.0) as i64, dose.units.len(), halves, larger_first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morphine_er_doses_prefer_fewer_tablets() {
        let doses = dispensable_doses(&[5.0, 15.0, 30.0, 60.0, 100.0, 200.0], false, 4);
        assert_eq!(doses[&amount_key(75.0)].describe("mg"), "1 x 60 mg + 1 x 15 mg");
        assert_eq!(doses[&amount_key(60.0)].describe("mg"), "1 x 60 mg");
        assert_eq!(doses[&amount_key(45.0)].describe("mg"), "1 x 30 mg + 1 x 15 mg");
        assert!(!doses.contains_key(&amount_key(72.0)));
    }

    #[test]
    fn numbers_print_without_noise() {
        assert_eq!(trim_number(15.0), "15");
        assert_eq!(trim_number(12.5), "12.5");
        assert_eq!(trim_number(-0.0), "0");
        assert_eq!(trim_number(108.75), "108.75");
    }

    #[test]
    fn halves_only_when_allowed() {
        let whole = dispensable_doses(&[10.0], false, 2);
        assert!(!whole.contains_key(&amount_key(5.0)));
        let split = dispensable_doses(&[10.0], true, 2);
        assert_eq!(split[&amount_key(5.0)].describe("mg"), "0.5 x 10 mg");
        assert_eq!(split[&amount_key(10.0)].describe("mg"), "1 x 10 mg");
    }
}
