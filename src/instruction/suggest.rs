//! "Did you mean …?" for misspelled keywords, flags, mount keys and targets.

/// The candidate closest to `input` by edit distance (case-insensitive), if it is
/// close enough to be a plausible typo: at most a third of the input's length, and
/// never more than 3 edits.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_lowercase();
    let limit = (input.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(&input, &candidate.to_lowercase()), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance where swapping two adjacent characters counts as one edit
/// (optimal string alignment), since transpositions are the commonest typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut table = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            table[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (table[(i - 1) * width + j] + 1)
                    .min(table[i * width + j - 1] + 1)
                    .min(table[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(table[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    table[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_close_keywords() {
        let keywords = ["ENTRYPOINT", "ENV", "EXPOSE", "RUN"];
        assert_eq!(closest("FNTRYPOINT", keywords), Some("ENTRYPOINT"));
        assert_eq!(closest("rum", keywords), Some("RUN"));
        assert_eq!(closest("biuld", ["build", "test"]), Some("build"));
        assert_eq!(closest("xyzzy", keywords), None);
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("한국", "한국어"), 1);
        assert_eq!(edit_distance("rnu", "run"), 1);
    }
}
