//! The names to suggest when a schema or table does not exist.

/// How many names a not-found error suggests.
pub const NEARBY: usize = 10;

/// The candidates most like `target`, closest first: by edit distance
/// ignoring case, then minding case, then alphabetically; at most [`NEARBY`].
pub fn closest(target: &str, candidates: Vec<String>) -> Vec<String> {
    let lower = target.to_lowercase();
    let mut ranked: Vec<(usize, usize, String)> = candidates
        .into_iter()
        .map(|candidate| {
            (
                distance(&lower, &candidate.to_lowercase()),
                distance(target, &candidate),
                candidate,
            )
        })
        .collect();
    ranked.sort();
    ranked.into_iter().take(NEARBY).map(|(.., name)| name).collect()
}

/// The Levenshtein distance between two strings, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names_come_first_and_case_breaks_ties() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ü", "u"), 1);
        let names = vec![
            "orders".into(),
            "Orders".into(),
            "customers".into(),
            "order_items".into(),
        ];
        assert_eq!(
            closest("orders", names),
            ["orders", "Orders", "order_items", "customers"]
        );
        let many: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
        assert_eq!(closest("t05", many).len(), NEARBY);
    }
}
