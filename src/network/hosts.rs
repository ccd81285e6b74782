//! The `/etc/hosts` of a container on bridge networks.

use std::collections::BTreeSet;

use super::Endpoint;

/// localhost, the container's own hostname at its first address, then every container
/// on its networks (itself included) by name, aliases and short id. A name two
/// containers share keeps the first line that gives it, as a resolver reading the file
/// would.
pub(super) fn render(hostname: &str, own: &[Endpoint], peers: &[Endpoint]) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if let Some(first) = own.first() {
        text.push_str(&format!("{}\t{hostname}\n", first.address));
    }
    let mut seen: BTreeSet<String> = BTreeSet::from([hostname.to_string()]);
    for peer in peers {
        let names: Vec<String> = peer
            .names()
            .into_iter()
            .filter(|name| !name.is_empty() && seen.insert(name.clone()))
            .collect();
        if !names.is_empty() {
            text.push_str(&format!("{}\t{}\n", peer.address, names.join(" ")));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::network::endpoint::tests::endpoint;

    #[test]
    fn peers_by_name_alias_and_short_id_first_one_wins() {
        let me = endpoint("web", "a", Ipv4Addr::new(10, 89, 0, 2), &[]);
        let db = endpoint(
            "db",
            "b",
            Ipv4Addr::new(10, 89, 0, 3),
            &["database", "store"],
        );
        let other = endpoint("cache", "c", Ipv4Addr::new(10, 89, 0, 4), &["store"]);
        let text = render(
            "aaaaaaaaaaaa",
            std::slice::from_ref(&me),
            &[me.clone(), db, other],
        );
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.89.0.2\taaaaaaaaaaaa\n"));
        assert!(text.contains("10.89.0.2\tweb\n"));
        assert!(text.contains("10.89.0.3\tdb database store bbbbbbbbbbbb\n"));
        assert!(text.contains("10.89.0.4\tcache cccccccccccc\n"));
    }
}
