//! Image references (`busybox`, `ghcr.io/o/r:v1`, `repo@sha256:…`) normalised the way
//! Docker's `distribution/reference.ParseNormalizedNamed` does.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;
use super::error::ReferenceError;

const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
pub(super) const NAME_MAX_LEN: usize = 255;
const TAG_MAX_LEN: usize = 128;

/// A fully normalised image reference: registry, repository, and a tag and/or digest.
///
/// A reference without tag or digest gets the tag `latest`, as Docker does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s` (`busybox` → `docker.io/library/busybox:latest`).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        s.parse()
    }

    /// The registry host (with port if any), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name `docker images` shows: `busybox`, `user/repo`, `127.0.0.1:5000/x`.
    pub fn familiar(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            if let Some(official) = self.repository.strip_prefix(OFFICIAL_REPO_PREFIX)
                && !official.contains('/')
            {
                return official.to_string();
            }
            return self.repository.clone();
        }
        self.name()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::BadTag {
                reference: self.to_string(),
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest` (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ReferenceError::BareIdentifier(s.to_string()));
        }

        let (name_and_tag, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse().map_err(|source| ReferenceError::BadDigest {
                    reference: s.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // A tag is whatever follows the last ':' that comes after the last '/', so that a
        // registry port (`host:5000/x`) is not mistaken for a tag.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                let tag = &name_and_tag[split + 1..];
                if !is_valid_tag(tag) {
                    return Err(ReferenceError::BadTag {
                        reference: s.to_string(),
                        tag: tag.to_string(),
                    });
                }
                (&name_and_tag[..split], Some(tag.to_string()))
            }
            None => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::BadPathComponent {
                reference: s.to_string(),
                component: String::new(),
            });
        }

        let (registry, repository) = split_registry(name);
        if repository.to_lowercase() != repository {
            return Err(ReferenceError::UppercaseRepository {
                reference: s.to_string(),
                repository,
            });
        }
        if !is_valid_domain(&registry) {
            return Err(ReferenceError::BadDomain {
                reference: s.to_string(),
                domain: registry,
            });
        }
        if let Some(component) = repository.split('/').find(|c| !is_valid_path_component(c)) {
            return Err(ReferenceError::BadPathComponent {
                reference: s.to_string(),
                component: component.to_string(),
            });
        }
        if registry.len() + 1 + repository.len() > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong(s.to_string()));
        }

        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Splits `name` into registry and repository the way Docker does: the first component is a
/// registry only if it contains `.` or `:`, is `localhost`, or has uppercase letters.
fn split_registry(name: &str) -> (String, String) {
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    };
    let registry = if registry == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{remainder}")
    } else {
        remainder.to_string()
    };
    (registry.to_string(), repository)
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX_LEN
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `host[:port]` where host is a dotted domain name, an IPv4 address, or `[IPv6]`.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    // An IPv6 host was checked above; the IPv4 form is a special case of a domain name.
    host.is_empty() && domain.starts_with('[') || host.split('.').all(is_valid_domain_component)
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_valid_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (input, normalised, familiar name). Cases follow Docker's normalize_test.go.
    #[test]
    fn normalises_like_docker() {
        let with_digest = |s: &str| s.replace("{D}", D);
        let cases: &[(&str, &str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest", "busybox"),
            ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox"),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "index.docker.io/user/repo:v1",
                "docker.io/user/repo:v1",
                "user/repo",
            ),
            ("user/repo", "docker.io/user/repo:latest", "user/repo"),
            ("user/repo:tag", "docker.io/user/repo:tag", "user/repo"),
            (
                "library/foo/bar",
                "docker.io/library/foo/bar:latest",
                "library/foo/bar",
            ),
            ("a/b/c/d", "docker.io/a/b/c/d:latest", "a/b/c/d"),
            ("localhost/x", "localhost/x:latest", "localhost/x"),
            (
                "localhost:5000/x:1",
                "localhost:5000/x:1",
                "localhost:5000/x",
            ),
            (
                "localhost",
                "docker.io/library/localhost:latest",
                "localhost",
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost",
            ),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000/x:latest",
                "127.0.0.1:5000/x",
            ),
            ("[::1]:5000/x:t", "[::1]:5000/x:t", "[::1]:5000/x"),
            (
                "[2001:db8::1]/repo",
                "[2001:db8::1]/repo:latest",
                "[2001:db8::1]/repo",
            ),
            (
                "ghcr.io/owner/repo:v1.2.3",
                "ghcr.io/owner/repo:v1.2.3",
                "ghcr.io/owner/repo",
            ),
            ("quay.io/a_b/c-d:x", "quay.io/a_b/c-d:x", "quay.io/a_b/c-d"),
            (
                "Foo.example/bar",
                "Foo.example/bar:latest",
                "Foo.example/bar",
            ),
            ("Uppercase/repo", "Uppercase/repo:latest", "Uppercase/repo"),
            ("a__b/c", "docker.io/a__b/c:latest", "a__b/c"),
            ("a---b", "docker.io/library/a---b:latest", "a---b"),
            ("busybox@{D}", "docker.io/library/busybox@{D}", "busybox"),
            (
                "busybox:1@{D}",
                "docker.io/library/busybox:1@{D}",
                "busybox",
            ),
            ("host:5000/r@{D}", "host:5000/r@{D}", "host:5000/r"),
            (
                "busybox:_x.Y-z",
                "docker.io/library/busybox:_x.Y-z",
                "busybox",
            ),
            ("0", "docker.io/library/0:latest", "0"),
        ];
        for (input, normalised, familiar) in cases {
            let input = with_digest(input);
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                r.to_string(),
                with_digest(normalised),
                "to_string of {input}"
            );
            assert_eq!(r.familiar(), *familiar, "familiar of {input}");
            assert_eq!(
                Reference::parse(&r.to_string()).unwrap(),
                r,
                "reparse of {input}"
            );
        }
    }

    #[test]
    fn a_dotted_first_component_is_a_domain_even_when_invalid() {
        // `foo_bar.com` contains a '.', so Docker treats it as a registry, and '_' makes it
        // an invalid one: an error, not a Docker Hub user.
        assert!(matches!(
            Reference::parse("foo_bar.com:8080/x"),
            Err(ReferenceError::BadDomain { .. })
        ));
    }

    #[test]
    fn accessors() {
        let r = Reference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), None);
        let d = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(d.tag(), None);
        assert_eq!(d.digest().unwrap().to_string(), D);
        assert_eq!(
            d.with_tag("x").unwrap().to_string(),
            "docker.io/library/busybox:x"
        );
    }

    #[test]
    fn rejects_bad_references() {
        type IsExpected = fn(&ReferenceError) -> bool;
        let cases: &[(&str, IsExpected)] = &[
            ("", |e| matches!(e, ReferenceError::Empty)),
            ("Busybox", |e| {
                matches!(e, ReferenceError::UppercaseRepository { .. })
            }),
            ("user/Repo", |e| {
                matches!(e, ReferenceError::UppercaseRepository { .. })
            }),
            ("ghcr.io/Owner/repo", |e| {
                matches!(e, ReferenceError::UppercaseRepository { .. })
            }),
            ("busybox:", |e| matches!(e, ReferenceError::BadTag { .. })),
            ("busybox:-x", |e| matches!(e, ReferenceError::BadTag { .. })),
            ("busybox:.x", |e| matches!(e, ReferenceError::BadTag { .. })),
            ("busybox:a+b", |e| {
                matches!(e, ReferenceError::BadTag { .. })
            }),
            ("busybox@sha256:abc", |e| {
                matches!(e, ReferenceError::BadDigest { .. })
            }),
            ("busybox@md5:d41d8cd98f00b204e9800998ecf8427e", |e| {
                matches!(e, ReferenceError::BadDigest { .. })
            }),
            ("busybox@", |e| {
                matches!(e, ReferenceError::BadDigest { .. })
            }),
            (":tag", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("a//b", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("-a/b", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("a/b-", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("a/b..c", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("a/b___c", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("a/", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("-host.io/x", |e| {
                matches!(e, ReferenceError::BadDomain { .. })
            }),
            ("host.io:port/x", |e| {
                matches!(e, ReferenceError::BadDomain { .. })
            }),
            ("[zz]/x", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            ("[::1/x", |e| matches!(e, ReferenceError::BadDomain { .. })),
            ("a b", |e| {
                matches!(e, ReferenceError::BadPathComponent { .. })
            }),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                |e| matches!(e, ReferenceError::BareIdentifier(_)),
            ),
        ];
        for (input, is_expected) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => assert!(is_expected(&e), "{input:?}: unexpected error {e:?}"),
            }
        }
        let long = format!("a/{}", "b".repeat(260));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::NameTooLong(_))
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::BadTag { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("must be lowercase"), "{e}");
        let e = Reference::parse("busybox:a+b").unwrap_err().to_string();
        assert!(e.contains("a+b"), "{e}");
    }
}
