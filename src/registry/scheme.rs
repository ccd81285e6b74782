//! Which host and scheme to talk to, as Docker decides it.

use std::net::IpAddr;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key Docker uses for Docker Hub in `config.json` and credential helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// How to reach a registry host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (loopback).
    Http,
    /// HTTPS verified against the system roots.
    Https,
    /// HTTPS accepting any certificate, falling back to plain HTTP (`--insecure-registry`).
    InsecureHttpsThenHttp,
}

/// Host to send API calls to: `docker.io` (and its aliases) map to `registry-1.docker.io`.
pub fn api_host(registry: &str) -> &str {
    match registry {
        DOCKER_HUB | "index.docker.io" | "registry.hub.docker.com" => DOCKER_HUB_API,
        other => other,
    }
}

/// The key under which Docker stores credentials for `registry`.
pub fn auth_key(registry: &str) -> String {
    match registry {
        DOCKER_HUB | "index.docker.io" | DOCKER_HUB_API | "registry.hub.docker.com" => {
            DOCKER_HUB_AUTH_KEY.to_string()
        }
        other => other.to_string(),
    }
}

/// Strip a scheme and path from a config key, as Docker's `ConvertToHostname` does.
pub fn key_to_hostname(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Split `host[:port]` (IPv6 may be bracketed) into the host part.
fn host_part(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    // A bare IPv6 address has several colons and no port.
    if hostport.matches(':').count() > 1 {
        return hostport;
    }
    hostport.split(':').next().unwrap_or(hostport)
}

/// `localhost`, `127.0.0.0/8` or `::1`, with any port.
pub fn is_loopback(hostport: &str) -> bool {
    let host = host_part(hostport);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Does the insecure list name this host? An entry without a port matches any port,
/// an entry with a port matches only that port.
pub fn is_listed_insecure(hostport: &str, insecure: &[String]) -> bool {
    insecure.iter().any(|e| {
        let e = key_to_hostname(e.trim());
        if e.eq_ignore_ascii_case(hostport) {
            return true;
        }
        let entry_has_port = if e.starts_with('[') {
            e.contains("]:")
        } else {
            e.matches(':').count() == 1
        };
        !entry_has_port && host_part(e).eq_ignore_ascii_case(host_part(hostport))
    })
}

/// The scheme to use for `registry` (a host[:port], already mapped with [`api_host`]).
pub fn scheme_for(registry: &str, insecure: &[String]) -> Scheme {
    if is_loopback(registry) {
        Scheme::Http
    } else if is_listed_insecure(registry, insecure) {
        Scheme::InsecureHttpsThenHttp
    } else {
        Scheme::Https
    }
}

/// Parse a comma-separated insecure registry list (as in `KILN_INSECURE_REGISTRIES`).
pub fn parse_insecure_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Insecure registries from the `KILN_INSECURE_REGISTRIES` environment variable.
pub fn insecure_from_env() -> Vec<String> {
    std::env::var("KILN_INSECURE_REGISTRIES")
        .map(|s| parse_insecure_list(&s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_table() {
        let insecure = parse_insecure_list(" myreg.local , 10.0.0.5:5000,[fd00::1],");
        assert_eq!(insecure.len(), 3);
        let cases = [
            ("localhost", Scheme::Http),
            ("localhost:5000", Scheme::Http),
            ("LOCALHOST:1", Scheme::Http),
            ("127.0.0.1:5000", Scheme::Http),
            ("127.1.2.3", Scheme::Http),
            ("[::1]:5000", Scheme::Http),
            ("::1", Scheme::Http),
            ("128.0.0.1:5000", Scheme::Https),
            ("localhost.example.com", Scheme::Https),
            ("myreg.local", Scheme::InsecureHttpsThenHttp),
            ("myreg.local:443", Scheme::InsecureHttpsThenHttp),
            ("10.0.0.5:5000", Scheme::InsecureHttpsThenHttp),
            ("10.0.0.5:5001", Scheme::Https),
            ("10.0.0.5", Scheme::Https),
            ("[fd00::1]:80", Scheme::InsecureHttpsThenHttp),
            ("registry-1.docker.io", Scheme::Https),
            ("ghcr.io", Scheme::Https),
        ];
        for (host, want) in cases {
            assert_eq!(scheme_for(host, &insecure), want, "{host}");
        }
    }

    #[test]
    fn hub_mapping_and_keys() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("index.docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(auth_key("registry-1.docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(auth_key("localhost:5000"), "localhost:5000");
        assert_eq!(
            key_to_hostname("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(key_to_hostname("http://r:5000/v2/"), "r:5000");
        assert_eq!(key_to_hostname("r:5000"), "r:5000");
    }
}
