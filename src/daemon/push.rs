//! `POST /images/{name}/push?tag=`: pushes with `image::push`, streaming dockerd's
//! progress lines and, after each tag, the `aux` object with the tag, digest and size. The
//! credentials are the `X-Registry-Auth` header's when it carries some, else the store's,
//! as `kiln push` finds them.

use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Request};
use super::images::{forward_progress, line};
use super::{Daemon, DaemonError, Result, blocking};
use crate::image::{self, LayerOptions};
use crate::oci::Reference;
use crate::progress::{Clock, Items, Sink};
use crate::registry::{Client, ClientConfig, CredentialSource, Credentials};
use crate::store::Store;

/// The JSON the docker CLI sends, base64 (URL alphabet) encoded, in `X-Registry-Auth`
/// (and, one per registry, in `X-Registry-Config`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RegistryAuth {
    username: String,
    password: String,
    /// `base64(user:password)`, as `config.json` keeps it.
    auth: String,
    #[serde(rename = "identitytoken")]
    identity_token: String,
}

/// Decodes a base64 header (either alphabet, padded or not) holding JSON.
fn decode_header<T: serde::de::DeserializeOwned>(name: &str, header: &str) -> Result<T> {
    let invalid =
        |reason: String| DaemonError::BadRequest(format!("invalid {name} header: {reason}"));
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    let bytes = engines
        .iter()
        .find_map(|engine| engine.decode(header).ok())
        .ok_or_else(|| invalid("not base64".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
}

impl RegistryAuth {
    /// The header's credentials; `None` when it carries none (the CLI sends `{}` then).
    fn parse(header: &str) -> Result<Option<Credentials>> {
        let header = header.trim();
        if header.is_empty() {
            return Ok(None);
        }
        decode_header::<RegistryAuth>("X-Registry-Auth", header)?.credentials()
    }

    fn credentials(self) -> Result<Option<Credentials>> {
        if !self.identity_token.is_empty() {
            return Ok(Some(Credentials::IdentityToken(self.identity_token)));
        }
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: self.username,
                password: self.password,
            }));
        }
        if self.auth.is_empty() {
            return Ok(None);
        }
        let pair = base64::engine::general_purpose::STANDARD
            .decode(&self.auth)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                DaemonError::BadRequest("invalid auth in registry credentials".into())
            })?;
        let (username, password) = pair.split_once(':').ok_or_else(|| {
            DaemonError::BadRequest("registry credentials' auth is not user:password".into())
        })?;
        Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }
}

/// `X-Registry-Config` (sent with `POST /build`): credentials per registry, keyed as
/// `config.json` keys them, for the base images the build pulls; other registries fall
/// back to the daemon's own.
pub(super) struct ConfigCredentials {
    by_key: std::collections::HashMap<String, Credentials>,
    fallback: Arc<dyn CredentialSource>,
}

impl ConfigCredentials {
    /// `None` for an absent header or one that names no credentials.
    pub(super) fn parse(
        header: Option<&str>,
        fallback: Arc<dyn CredentialSource>,
    ) -> Result<Option<ConfigCredentials>> {
        let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let entries: std::collections::HashMap<String, serde_json::Value> =
            decode_header("X-Registry-Config", header)?;
        let mut by_key = std::collections::HashMap::new();
        for (key, entry) in entries {
            // An entry that does not make sense is skipped, as dockerd does: the build may
            // not need that registry at all.
            let auth = serde_json::from_value::<RegistryAuth>(entry).ok();
            if let Some(Ok(Some(credentials))) = auth.map(RegistryAuth::credentials) {
                let host = crate::registry::key_to_hostname(&key);
                by_key.insert(crate::registry::auth_key(host), credentials);
            }
        }
        Ok((!by_key.is_empty()).then_some(ConfigCredentials { by_key, fallback }))
    }
}

impl CredentialSource for ConfigCredentials {
    fn credentials(&self, registry: &str) -> crate::registry::Result<Option<Credentials>> {
        match self.by_key.get(&crate::registry::auth_key(registry)) {
            Some(credentials) => Ok(Some(credentials.clone())),
            None => self.fallback.credentials(registry),
        }
    }
}

/// The header's credentials for the registry pushed to, the store's for any other.
struct HeaderCredentials {
    registry: String,
    credentials: Credentials,
    fallback: Arc<dyn CredentialSource>,
}

impl CredentialSource for HeaderCredentials {
    fn credentials(&self, registry: &str) -> crate::registry::Result<Option<Credentials>> {
        if registry == self.registry {
            return Ok(Some(self.credentials.clone()));
        }
        self.fallback.credentials(registry)
    }
}

/// The images `POST /images/{name}/push` names: `name` with `tag` (a tag or a digest),
/// or without one every tag the store has of that repository (`docker push -a`).
fn push_references(store: &Store, name: &str, tag: Option<&str>) -> Result<Vec<Reference>> {
    let full = match tag.filter(|t| !t.is_empty()) {
        Some(digest) if digest.contains(':') => format!("{name}@{digest}"),
        Some(tag) => format!("{name}:{tag}"),
        None => {
            let repository = image::parse_reference(name)?.familiar();
            let tagged: Vec<Reference> = image::list(store)?
                .into_iter()
                .filter(|row| row.repository == repository)
                .filter_map(|row| row.tag)
                .map(|tag| image::parse_reference(&format!("{name}:{tag}")))
                .collect::<std::result::Result<_, _>>()?;
            if tagged.is_empty() {
                return Err(image::ImageError::NotFound(name.to_string()).into());
            }
            return Ok(tagged);
        }
    };
    Ok(vec![image::parse_reference(&full)?])
}

pub(super) async fn push(
    daemon: &Arc<Daemon>,
    name: &str,
    request: &Request,
) -> Result<http::Response> {
    let references = {
        let (store, name) = (daemon.store.clone(), name.to_string());
        let tag = request.param("tag").map(str::to_string);
        blocking(move || push_references(&store, &name, tag.as_deref())).await?
    };
    let registry = references[0].registry().to_string();
    let client = match request
        .header("x-registry-auth")
        .map(RegistryAuth::parse)
        .transpose()?
        .flatten()
    {
        Some(credentials) => Client::new(ClientConfig {
            credentials: Arc::new(HeaderCredentials {
                registry,
                credentials,
                fallback: daemon.registry.credentials.clone(),
            }),
            ..daemon.registry.clone()
        })?,
        None => daemon.client.clone(),
    };
    let (response, sender) = http::stream("application/json");
    let store = daemon.store.clone();
    tokio::spawn(async move {
        let _ = sender
            .send(line(&json!({
                "status": format!("The push refers to repository [{}]", references[0].name())
            })))
            .await;
        for reference in &references {
            let (sink, events) = Sink::channel();
            let forward = tokio::spawn(forward_progress(events, sender.clone()));
            let items = Items::new(sink, Clock::from_fn(|| 0.0), 0);
            let options = LayerOptions::default();
            let pushed = image::push(&store, &client, reference, &options, items).await;
            let _ = forward.await;
            let (lines, failed) = match pushed {
                Ok(pushed) => (pushed_lines(reference, &pushed), false),
                Err(error) => {
                    let message = DaemonError::from(error).message();
                    let error = json!({ "errorDetail": { "message": message }, "error": message });
                    (vec![error], true)
                }
            };
            for value in lines {
                let _ = sender.send(line(&value)).await;
            }
            if failed {
                return;
            }
        }
    });
    Ok(response)
}

/// dockerd's last lines for one pushed tag: its digest and size, and the `aux` object.
fn pushed_lines(reference: &Reference, pushed: &image::Pushed) -> Vec<serde_json::Value> {
    let tag = reference
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| pushed.digest.to_string());
    vec![
        json!({ "status": format!("{tag}: digest: {} size: {}", pushed.digest, pushed.size) }),
        json!({
            "progressDetail": {},
            "aux": { "Tag": tag, "Digest": pushed.digest.to_string(), "Size": pushed.size },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header() {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE.encode(text);
        assert!(RegistryAuth::parse(&encode("{}")).unwrap().is_none());
        assert!(RegistryAuth::parse("").unwrap().is_none());
        let basic = RegistryAuth::parse(&encode(
            r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}"#,
        ))
        .unwrap();
        assert!(matches!(
            basic,
            Some(Credentials::Basic { username, password }) if username == "u" && password == "p"
        ));
        assert!(RegistryAuth::parse("%%%").is_err());
        assert!(RegistryAuth::parse(&encode("[1]")).is_err());
    }

    struct NoCredentials;

    impl CredentialSource for NoCredentials {
        fn credentials(&self, _: &str) -> crate::registry::Result<Option<Credentials>> {
            Ok(None)
        }
    }

    #[test]
    fn registry_config_header_per_registry() {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE.encode(text);
        let fallback: Arc<dyn CredentialSource> = Arc::new(NoCredentials);
        assert!(
            ConfigCredentials::parse(None, fallback.clone())
                .unwrap()
                .is_none()
        );
        assert!(
            ConfigCredentials::parse(Some(&encode("{}")), fallback.clone())
                .unwrap()
                .is_none()
        );
        let header = encode(
            r#"{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "127.0.0.1:5000":{"username":"u","password":"p"}}"#,
        );
        let config = ConfigCredentials::parse(Some(&header), fallback.clone())
            .unwrap()
            .unwrap();
        assert!(matches!(
            config.credentials("docker.io").unwrap(),
            Some(Credentials::Basic { username, password }) if username == "hub" && password == "secret"
        ));
        assert!(matches!(
            config.credentials("127.0.0.1:5000").unwrap(),
            Some(Credentials::Basic { username, .. }) if username == "u"
        ));
        assert!(config.credentials("quay.io").unwrap().is_none());
        assert!(ConfigCredentials::parse(Some("%%%"), fallback.clone()).is_err());
        // A bad entry is skipped; the good ones stay.
        let header = encode(
            r#"{"bad.io":{"auth":"not base64!"},"odd.io":[1],"127.0.0.1:5000":{"username":"u"}}"#,
        );
        let config = ConfigCredentials::parse(Some(&header), fallback)
            .unwrap()
            .unwrap();
        assert!(config.credentials("bad.io").unwrap().is_none());
        assert!(config.credentials("127.0.0.1:5000").unwrap().is_some());
    }
}
