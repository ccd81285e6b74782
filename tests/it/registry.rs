//! Registry client against a real loopback `docker-registry` and small fake servers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::oci::{Digest, Platform, media_type};
use kiln::registry::{
    Anonymous, BlobSource, Client, ClientConfig, Credentials, DockerConfig, RegistryError,
    RegistryRef, RetryPolicy, StaticCredentials, select_platform,
};

use crate::harness::registry::{self, FakeServer, PASSWORD, Resp, USER};
use crate::harness::{random_bytes, temp_dir};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
    }
}

fn client_with(creds: Arc<dyn kiln::registry::CredentialSource>) -> Client {
    let mut cfg = ClientConfig::new(vec![], creds);
    cfg.retry = fast_retry();
    Client::new(cfg).unwrap()
}

fn anon() -> Client {
    client_with(Arc::new(Anonymous))
}

async fn push_bytes(c: &Client, r: &RegistryRef, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    if !c.blob_exists(r, &d).await.unwrap() {
        c.push_blob(
            r,
            &d,
            data.len() as u64,
            BlobSource::Bytes(data.to_vec()),
            None,
        )
        .await
        .unwrap();
    }
    d
}

#[tokio::test]
async fn push_blob_from_file_then_head() {
    let Some(reg) = registry::plain() else { return };
    let c = anon();
    let r = RegistryRef::repo(&reg.addr, "kiln/push");
    let data = random_bytes(3 << 20, 1);
    let digest = Digest::of(&data);
    let (_d, dir) = temp_dir();
    let path = dir.join("layer");
    std::fs::write(&path, &data).unwrap();

    assert!(!c.blob_exists(&r, &digest).await.unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let s2 = sent.clone();
    let progress = byte_counter(move |n| {
        s2.store(n as usize, Ordering::Relaxed);
    });
    c.push_blob(
        &r,
        &digest,
        data.len() as u64,
        BlobSource::Path(path),
        Some(progress),
    )
    .await
    .unwrap();
    assert_eq!(sent.load(Ordering::Relaxed), data.len());
    assert!(c.blob_exists(&r, &digest).await.unwrap());

    // Streaming from an async reader works too.
    let data2 = random_bytes(100_000, 2);
    let d2 = Digest::of(&data2);
    let f = tokio::fs::File::from_std(tempfile_with(&data2));
    c.push_blob(
        &r,
        &d2,
        data2.len() as u64,
        BlobSource::Reader(Box::new(f)),
        None,
    )
    .await
    .unwrap();
    assert!(c.blob_exists(&r, &d2).await.unwrap());

    // A wrong digest is rejected by the registry with its error code.
    let err = c
        .push_blob(
            &r,
            &Digest::of(b"other"),
            3,
            BlobSource::Bytes(b"abc".to_vec()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.code(), Some("DIGEST_INVALID"), "{err}");
}

fn tempfile_with(data: &[u8]) -> std::fs::File {
    use std::io::{Seek, Write};
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f.rewind().unwrap();
    f
}

#[tokio::test]
async fn mount_across_repositories() {
    let Some(reg) = registry::plain() else { return };
    let c = anon();
    let src = RegistryRef::repo(&reg.addr, "kiln/mount-src");
    let dst = RegistryRef::repo(&reg.addr, "kiln/mount-dst");
    let d = push_bytes(&c, &src, &random_bytes(4096, 3)).await;
    assert!(!c.blob_exists(&dst, &d).await.unwrap());
    assert!(c.mount_blob(&dst, "kiln/mount-src", &d).await.unwrap());
    assert!(c.blob_exists(&dst, &d).await.unwrap());
    // Unknown blob: the registry opens an upload instead (202) → false, no error.
    let missing = Digest::of(b"never pushed");
    assert!(
        !c.mount_blob(&dst, "kiln/mount-src", &missing)
            .await
            .unwrap()
    );
}

fn image_manifest(config: &Digest, config_len: usize, layer: &Digest, layer_len: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}]
    }))
    .unwrap()
}

#[tokio::test]
async fn push_manifest_by_tag_and_resolve() {
    let Some(reg) = registry::plain() else { return };
    let c = anon();
    let repo = RegistryRef::repo(&reg.addr, "kiln/manifest");
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = random_bytes(1000, 4);
    let cd = push_bytes(&c, &repo, cfg).await;
    let ld = push_bytes(&c, &repo, &layer).await;
    let m = image_manifest(&cd, cfg.len(), &ld, layer.len());

    let tagged = repo.clone().with_tag("v1");
    let digest = c
        .push_manifest(&tagged, media_type::OCI_MANIFEST, &m)
        .await
        .unwrap();
    assert_eq!(digest, Digest::of(&m));

    let got = c.resolve(&tagged).await.unwrap();
    assert_eq!(got.digest, digest);
    assert_eq!(got.bytes, m);
    assert_eq!(got.media_type, media_type::OCI_MANIFEST);
    let by_digest = c
        .resolve(&repo.clone().with_digest(digest.clone()))
        .await
        .unwrap();
    assert_eq!(by_digest.digest, digest);

    // An index over it, pushed by digest, resolved and narrowed to a platform.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [
            {"mediaType": media_type::OCI_MANIFEST, "digest": digest, "size": m.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }))
    .unwrap();
    let idx_ref = repo.clone().with_tag("multi");
    let idx_digest = c
        .push_manifest(&idx_ref, media_type::OCI_INDEX, &index)
        .await
        .unwrap();
    let idx = c.resolve(&idx_ref).await.unwrap();
    assert_eq!(
        (&idx.digest, idx.media_type.as_str()),
        (&idx_digest, media_type::OCI_INDEX)
    );
    let e = select_platform(&idx.bytes, &Platform::parse("linux/amd64").unwrap()).unwrap();
    assert_eq!(e.digest, digest);
    let err = select_platform(&idx.bytes, &Platform::parse("linux/riscv64").unwrap()).unwrap_err();
    assert!(err.to_string().contains("available: linux/amd64"), "{err}");

    assert!(
        c.list_tags(&repo)
            .await
            .unwrap()
            .contains(&"v1".to_string())
    );
}

#[tokio::test]
async fn fetch_blob_streams_with_progress() {
    let Some(reg) = registry::plain() else { return };
    let c = anon();
    let r = RegistryRef::repo(&reg.addr, "kiln/fetch");
    let data = random_bytes(5 << 20, 5);
    let d = push_bytes(&c, &r, &data).await;

    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut out: Vec<u8> = Vec::new();
    let seen = calls.clone();
    let progress = byte_counter(move |n| seen.lock().unwrap().push(n));
    c.fetch_blob(&r, &d, Some(data.len() as u64), &mut out, Some(&progress))
        .await
        .unwrap();
    assert_eq!(out, data);
    let calls = calls.lock().unwrap().clone();
    assert!(calls.len() > 1, "progress is reported per chunk");
    assert!(calls.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*calls.last().unwrap(), data.len() as u64);

    // Into a blocking std::io::Write, as the store's ingest writer will be.
    let file = tempfile::tempfile().unwrap();
    let last = Arc::new(AtomicUsize::new(0));
    let seen = last.clone();
    let progress = byte_counter(move |n| seen.store(n as usize, Ordering::Relaxed));
    let mut file = c
        .fetch_blob_to_writer(&r, &d, None, file, Some(&progress))
        .await
        .unwrap();
    assert_eq!(last.load(Ordering::Relaxed), data.len());
    use std::io::{Read, Seek};
    file.rewind().unwrap();
    let mut back = Vec::new();
    file.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);

    // A size that disagrees with the content is an error.
    let mut sink = Vec::new();
    let err = c
        .fetch_blob(&r, &d, Some(10), &mut sink, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
}

#[tokio::test]
async fn digest_mismatch_is_detected_and_not_committed() {
    let good = b"the real content".to_vec();
    let digest = Digest::of(&good);
    let srv = FakeServer::start(|req| {
        if req.target.contains("/blobs/") || req.target.contains("/manifests/") {
            Resp::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(b"tampered content".to_vec())
        } else {
            Resp::new(404)
        }
    });
    let c = anon();
    let r = RegistryRef::repo(&srv.addr, "evil/repo");
    let mut sink = Vec::new();
    let err = c
        .fetch_blob(&r, &digest, None, &mut sink, None)
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch { expected, .. } => assert_eq!(expected, &digest.to_string()),
        other => panic!("want DigestMismatch, got {other}"),
    }
    // The writer form hands the writer back only on success, so nothing can be committed.
    struct Committing(Arc<Mutex<bool>>);
    impl std::io::Write for Committing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let committed = Arc::new(Mutex::new(false));
    let res = c
        .fetch_blob_to_writer(&r, &digest, None, Committing(committed.clone()), None)
        .await;
    if let Ok(w) = res {
        *w.0.lock().unwrap() = true;
    }
    assert!(!*committed.lock().unwrap());

    // A manifest fetched by digest is verified as well.
    let err = c
        .resolve(&r.clone().with_digest(digest.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn not_found_error_names_repository_status_and_code() {
    let Some(reg) = registry::plain() else { return };
    let c = anon();
    let r = RegistryRef::repo(&reg.addr, "kiln/does-not-exist").with_tag("nope");
    let err = c.resolve(&r).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.status(), Some(404), "{text}");
    assert!(
        matches!(err.code(), Some("MANIFEST_UNKNOWN" | "NAME_UNKNOWN")),
        "{text}"
    );
    assert!(text.contains("kiln/does-not-exist"), "{text}");
    assert!(text.contains(&reg.addr), "{text}");
    assert!(text.contains("HTTP 404"), "{text}");
    assert!(text.contains("resolve manifest"), "{text}");
}

#[tokio::test]
async fn basic_auth_registry() {
    let Some(reg) = registry::basic_auth() else {
        return;
    };
    let r = RegistryRef::repo(&reg.addr, "kiln/private");

    let wrong = client_with(Arc::new(StaticCredentials(BTreeMap::from([(
        reg.addr.clone(),
        Credentials::Basic {
            username: USER.into(),
            password: "wrong".into(),
        },
    )]))));
    let err = wrong.blob_exists(&r, &Digest::of(b"x")).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert!(err.to_string().contains("kiln/private"), "{err}");

    let none = anon();
    let err = none.resolve(&r.clone().with_tag("x")).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");

    let (_d, dir) = temp_dir();
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let c = client_with(Arc::new(DockerConfig::in_dir(&dir)));
    let d = push_bytes(&c, &r, b"private bytes").await;
    assert!(c.blob_exists(&r, &d).await.unwrap());
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn login_logout_round_trip() {
    let Some(reg) = registry::basic_auth() else {
        return;
    };
    let (_d, dir) = temp_dir();
    let cfg = DockerConfig::in_dir(&dir);
    let c = client_with(Arc::new(cfg.clone()));

    let err = c.login(&cfg, &reg.addr, USER, "bad").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!cfg.path().exists(), "nothing stored after a failed login");

    c.login(&cfg, &reg.addr, USER, PASSWORD).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cfg.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(cfg.path()).unwrap();
    assert!(
        text.contains(&reg.addr) && text.contains(&base64_encode(&format!("{USER}:{PASSWORD}")))
    );

    let r = RegistryRef::repo(&reg.addr, "kiln/login");
    push_bytes(&c, &r, b"after login").await;

    assert!(c.logout(&cfg, &reg.addr).await.unwrap());
    assert_eq!(cfg.get(&reg.addr).unwrap(), None);
    assert!(!c.logout(&cfg, &reg.addr).await.unwrap());
}

/// A credential helper on a PATH given to DockerConfig (not the process PATH, which other
/// tests share), storing secrets as files in `$KILNTEST_STORE`-like dir baked into the script.
#[tokio::test]
async fn credential_helper_store_get_erase() {
    let Some(reg) = registry::basic_auth() else {
        return;
    };
    let (_d, dir) = temp_dir();
    let bin = dir.join("bin");
    let store = dir.join("store");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let script = format!(
        r#"#!/bin/sh
# Minimal docker-credential helper: one file per server, named by its hex.
S="{store}"
read -r input || true
case "$1" in
  store) key=$(printf %s "$input" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
         printf %s "$input" > "$S/$(printf %s "$key" | od -An -tx1 | tr -d ' \n')" ;;
  get)   f="$S/$(printf %s "$input" | od -An -tx1 | tr -d ' \n')"
         if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) f="$S/$(printf %s "$input" | od -An -tx1 | tr -d ' \n')"
         if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  *) exit 2 ;;
esac
"#,
        store = store.display()
    );
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_dir = dir.join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("config.json"), r#"{"credsStore":"kilntest"}"#).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let cfg = DockerConfig::in_dir(&cfg_dir).with_helper_path(path);

    assert_eq!(
        cfg.get(&reg.addr).unwrap(),
        None,
        "not found falls back to nothing"
    );
    let c = client_with(Arc::new(cfg.clone()));
    c.login(&cfg, &reg.addr, USER, PASSWORD).await.unwrap();
    assert_eq!(
        std::fs::read_dir(&store).unwrap().count(),
        1,
        "secret went to the helper"
    );
    let text = std::fs::read_to_string(cfg.path()).unwrap();
    assert!(!text.contains(PASSWORD), "no secret in config.json: {text}");
    assert_eq!(
        cfg.get(&reg.addr).unwrap(),
        Some(Credentials::Basic {
            username: USER.into(),
            password: PASSWORD.into()
        })
    );
    // A fresh client reads the credentials through the helper.
    let c2 = client_with(Arc::new(cfg.clone()));
    push_bytes(
        &c2,
        &RegistryRef::repo(&reg.addr, "kiln/helper"),
        b"via helper",
    )
    .await;

    // `<token>` as username means an identity token.
    std::fs::write(
        cfg_dir.join("config.json"),
        r#"{"credHelpers":{"tok.example":"kilntest"}}"#,
    )
    .unwrap();
    cfg.store(
        "tok.example",
        &Credentials::IdentityToken("refresh-me".into()),
    )
    .unwrap();
    assert_eq!(
        cfg.get("tok.example").unwrap(),
        Some(Credentials::IdentityToken("refresh-me".into()))
    );
    assert!(cfg.erase("tok.example").unwrap());
    assert_eq!(cfg.get("tok.example").unwrap(), None);

    // A helper that is missing is a clear error.
    std::fs::write(cfg_dir.join("config.json"), r#"{"credsStore":"absent"}"#).unwrap();
    let err = cfg.get("x.example").unwrap_err().to_string();
    assert!(err.contains("docker-credential-absent"), "{err}");
}

#[tokio::test]
async fn retries_503_then_succeeds_and_never_retries_404() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let data = b"eventually".to_vec();
    let digest = Digest::of(&data);
    let srv = FakeServer::start(move |req| {
        if req.target.contains("/missing") {
            return Resp::new(404).body(
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
            );
        }
        if req.target.contains("/busy") {
            return Resp::new(429).header("Retry-After", "0");
        }
        match h.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Resp::new(503).body("upstream down"),
            _ => Resp::new(200).body(data.clone()),
        }
    });
    let c = anon();
    let r = RegistryRef::repo(&srv.addr, "flaky");
    let mut out = Vec::new();
    c.fetch_blob(&r, &digest, None, &mut out, None)
        .await
        .unwrap();
    assert_eq!(out, b"eventually");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    let missing = RegistryRef::repo(&srv.addr, "missing");
    let err = c.blob_exists(&missing, &digest).await.unwrap();
    assert!(!err);
    let err = c
        .fetch_blob(&missing, &digest, None, &mut out, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("BLOB_UNKNOWN"), "{err}");
    assert_eq!(
        srv.count(|q| q.target.contains("/missing") && q.method == "GET"),
        1
    );

    let busy = RegistryRef::repo(&srv.addr, "busy");
    let err = c
        .fetch_blob(&busy, &digest, None, &mut out, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    assert_eq!(
        srv.count(|q| q.target.contains("/busy")),
        4,
        "4 tries in all"
    );
}

#[tokio::test]
async fn bearer_token_flow_against_fake_server() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#.to_vec();
    let addr_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let a2 = addr_cell.clone();
    let m2 = manifest.clone();
    let srv = FakeServer::start(move |req| {
        let addr = a2.lock().unwrap().clone();
        if req.target.starts_with("/token") {
            // user:pw = "bob:pw" → Ym9iOnB3
            if req.headers.get("authorization").map(String::as_str) != Some("Basic Ym9iOnB3") {
                return Resp::new(401)
                    .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad creds"}]}"#);
            }
            return Resp::new(200).body(r#"{"access_token":"T-123","expires_in":300}"#);
        }
        if req.headers.get("authorization").map(String::as_str) == Some("Bearer T-123") {
            return Resp::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(m2.clone());
        }
        Resp::new(401).header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://{addr}/token",service="fake.test",scope="repository:team/app:pull""#),
        )
    });
    *addr_cell.lock().unwrap() = srv.addr.clone();
    let creds = StaticCredentials(BTreeMap::from([(
        srv.addr.clone(),
        Credentials::Basic {
            username: "bob".into(),
            password: "pw".into(),
        },
    )]));
    let c = client_with(Arc::new(creds));
    let r = RegistryRef::repo(&srv.addr, "team/app").with_tag("latest");
    let got = c.resolve(&r).await.unwrap();
    assert_eq!(got.bytes, manifest);
    let got2 = c.resolve(&r).await.unwrap();
    assert_eq!(got2.digest, got.digest);
    assert_eq!(
        srv.count(|q| q.target.starts_with("/token")),
        1,
        "token is cached per scope"
    );
    let tok = srv
        .requests
        .lock()
        .unwrap()
        .iter()
        .find(|q| q.target.starts_with("/token"))
        .cloned()
        .unwrap();
    assert!(tok.target.contains("service=fake.test"), "{}", tok.target);
    assert!(
        tok.target.contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{}",
        tok.target
    );

    // Wrong credentials: the token endpoint's refusal is reported.
    let bad = client_with(Arc::new(StaticCredentials(BTreeMap::from([(
        srv.addr.clone(),
        Credentials::Basic {
            username: "bob".into(),
            password: "nope".into(),
        },
    )]))));
    let err = bad.resolve(&r).await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("bad creds"),
        "{err}"
    );
}

/// A non-loopback address of this machine, if it has one (for the insecure fallback test).
fn non_loopback_ip() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| ip.to_string())
}

#[tokio::test]
async fn insecure_registry_falls_back_to_http() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipping: no non-loopback address");
        return;
    };
    let srv = FakeServer::start_on(&ip, |req| {
        if req.method == "HEAD" {
            Resp::new(200)
        } else {
            Resp::new(404)
        }
    });
    let digest = Digest::of(b"x");
    let r = RegistryRef::repo(&srv.addr, "plain/http");
    let mut cfg = ClientConfig::new(vec![srv.addr.clone()], Arc::new(Anonymous));
    cfg.retry = RetryPolicy {
        attempts: 1,
        ..fast_retry()
    };
    let c = Client::new(cfg.clone()).unwrap();
    assert!(c.blob_exists(&r, &digest).await.unwrap());

    // Not listed: HTTPS only, which this plain-HTTP server cannot speak.
    cfg.insecure_registries.clear();
    let c = Client::new(cfg).unwrap();
    let err = c.blob_exists(&r, &digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
}

/// A byte counter whose progress events call `f` with the bytes moved so far.
fn byte_counter(f: impl Fn(u64) + Send + Sync + 'static) -> kiln::progress::ByteCounter {
    use kiln::progress::{Clock, Event, Items, Sink};
    let sink = Sink::from_fn(move |event| {
        if let Event::VertexStatus {
            current: Some(n), ..
        } = event
        {
            f(n);
        }
    });
    Items::new(sink, Clock::start(), 1).counter("blob", "Moving", None)
}
