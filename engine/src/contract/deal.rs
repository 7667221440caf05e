//! Dealing items out to parts of about equal size: a cluster's tasks each
//! take a share of a table's files.

/// `items` dealt out to at most `parts` groups of about equal size (the
/// largest first, each to the group with the smallest total so far), each
/// group in the items' order; at least one group, empty when there are no
/// items.
pub fn deal_by_size<T>(items: Vec<T>, parts: usize, size: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let count = parts.clamp(1, items.len().max(1));
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(size(&items[i])), i));
    let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); count];
    for i in order {
        let lightest = (0..count).min_by_key(|&g| (groups[g].0, g)).unwrap_or(0);
        groups[lightest].0 += size(&items[i]);
        groups[lightest].1.push(i);
    }
    let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
    groups
        .into_iter()
        .map(|(_, mut members)| {
            members.sort_unstable();
            members.iter().filter_map(|&i| items[i].take()).collect()
        })
        .collect()
}
