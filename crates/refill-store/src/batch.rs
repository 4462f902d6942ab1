//! Multi-row statements: the SQL text of `values (...), (...)` lists and `in (...)` lists with numbered
//! placeholders, and how many rows one statement may carry. The set-based writers of the daily run
//! (decisions, queue rows, exceptions, drug-test draws, audit events) build their statements here, so a
//! chunk of patients costs a few statements instead of a few per patient.

/// Rows per multi-row statement. The widest row written this way has 16 columns: 1,000 rows bind 16,000
/// values, under both SQLite's limit (32,766 bound variables) and PostgreSQL's (65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// `rows` copies of `row`, each `?` replaced by the next numbered placeholder from `$first`, joined by
/// commas: `values_list("(?, ?, 'open')", 2, 1)` is `($1, $2, 'open'), ($3, $4, 'open')`.
pub(crate) fn values_list(row: &str, rows: usize, first: usize) -> String {
    let per_row = row.matches('?').count();
    let mut sql = String::with_capacity(rows * (row.len() + per_row * 4 + 2));
    let mut next = first;
    for n in 0..rows {
        if n > 0 {
            sql.push_str(", ");
        }
        for (i, part) in row.split('?').enumerate() {
            if i > 0 {
                sql.push('$');
                sql.push_str(&next.to_string());
                next += 1;
            }
            sql.push_str(part);
        }
    }
    sql
}

/// `$first, $first+1, ...` for an `in (...)` list of `count` values.
pub(crate) fn in_list(count: usize, first: usize) -> String {
    values_list("?", count, first)
}

#[cfg(test)]
mod tests {
    use super::{in_list, values_list};

    #[test]
    fn placeholders_are_numbered_across_rows() {
        assert_eq!(values_list("(?, ?, 'open', 1)", 2, 1), "($1, $2, 'open', 1), ($3, $4, 'open', 1)");
        assert_eq!(values_list("(?)", 1, 5), "($5)");
        assert_eq!(in_list(3, 2), "$2, $3, $4");
        assert_eq!(in_list(0, 1), "");
    }
}
