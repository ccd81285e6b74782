//! Docker-style generated names: `adjective_surname`, from small built-in lists.

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "compassionate",
    "confident",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "goofy",
    "happy",
    "hopeful",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "nifty",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bell",
    "bohr",
    "booth",
    "cannon",
    "carson",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermat",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lamport",
    "leakey",
    "lovelace",
    "mccarthy",
    "meitner",
    "mirzakhani",
    "morse",
    "newton",
    "noether",
    "pascal",
    "payne",
    "perlman",
    "pike",
    "ritchie",
    "shannon",
    "sinoussi",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wiles",
    "wozniak",
    "wright",
    "yalow",
];

/// A name not `taken`, picked from `seed` (hex): `adjective_surname`, then with a digit
/// suffix when every try collides (as Docker does).
pub(super) fn generate(seed: &str, taken: impl Fn(&str) -> bool) -> String {
    let bytes: Vec<u64> = seed
        .as_bytes()
        .chunks(4)
        .map(|c| u64::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 16).unwrap_or(0))
        .collect();
    for attempt in 0..bytes.len().saturating_sub(1) {
        let adjective = ADJECTIVES[(bytes[attempt] as usize) % ADJECTIVES.len()];
        let surname = SURNAMES[(bytes[attempt + 1] as usize) % SURNAMES.len()];
        let name = if attempt < 8 {
            format!("{adjective}_{surname}")
        } else {
            format!("{adjective}_{surname}{}", attempt % 10)
        };
        if !taken(&name) {
            return name;
        }
    }
    format!("kiln_{}", &seed[..12.min(seed.len())])
}

#[cfg(test)]
mod tests {
    #[test]
    fn avoids_taken_names() {
        let seed = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let first = super::generate(seed, |_| false);
        assert!(first.contains('_'));
        let second = super::generate(seed, |n| n == first);
        assert_ne!(first, second);
    }
}
