//! The distribution API operations: manifests, blobs, mounts, uploads and tags.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use reqwest::header;
use reqwest::{Response, StatusCode, Url};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::client::{
    BlobSource, Client, Ctx, ReadErr, header_str, parse_url, pull_scope, push_scope, read_limited,
};
use super::error::{RegistryError, Result};
use super::{RegistryRef, Resolved};
use crate::oci::{Algorithm, Digest, Hasher, media_type};
use crate::progress::ByteCounter;

/// Manifests bigger than this are refused (containerd uses the same cap): they live in memory.
const MAX_MANIFEST: usize = 4 << 20;
/// Read size for streamed uploads; big reads keep syscalls and chunk overhead low.
const UPLOAD_CHUNK: usize = 256 << 10;

impl Client {
    /// GET a manifest or index by tag or digest (accepting OCI and Docker types), verified.
    pub async fn resolve(&self, r: &RegistryRef) -> Result<Resolved> {
        let ctx = self.ctx(r, "resolve manifest", vec![pull_scope(&r.repository)]);
        let reference = match (&r.digest, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let path = format!("/v2/{}/manifests/{}", r.repository, reference);
        let accept = [
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self
            .send(&ctx, &mut |c, base| {
                Ok(c.get(format!("{base}{path}"))
                    .header(header::ACCEPT, &accept))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(ctx.fail(resp).await);
        }
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let content_type = header_str(resp.headers(), header::CONTENT_TYPE.as_str())
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
            .filter(|ct| !ct.is_empty() && ct != "application/json" && ct != "text/plain");
        let bytes = read_limited(resp, MAX_MANIFEST)
            .await
            .map_err(|e| match e {
                ReadErr::TooBig => {
                    ctx.invalid(format!("manifest larger than {MAX_MANIFEST} bytes"))
                }
                ReadErr::Http(e) => ctx.transport(e),
            })?;
        let digest = digest_like(&bytes, r.digest.as_ref());
        let what = || format!("manifest {r}");
        if let Some(want) = &r.digest
            && *want != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: what(),
                expected: want.to_string(),
                actual: digest.to_string(),
            });
        }
        if let Some(h) = header_digest.filter(|h| same_algorithm(h, &digest))
            && h != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("{} (Docker-Content-Digest)", what()),
                expected: h,
                actual: digest.to_string(),
            });
        }
        let media_type = match content_type {
            Some(ct) => ct,
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                .ok_or_else(|| ctx.invalid("manifest has neither Content-Type nor mediaType"))?,
        };
        Ok(Resolved {
            digest,
            media_type,
            bytes,
        })
    }

    /// HEAD a blob: `true` if the repository has it.
    pub async fn blob_exists(&self, r: &RegistryRef, digest: &Digest) -> Result<bool> {
        let ctx = self.ctx(r, "check blob", vec![pull_scope(&r.repository)]);
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self
            .send(&ctx, &mut |c, base| Ok(c.head(format!("{base}{path}"))))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(ctx.fail(resp).await),
        }
    }

    /// Stream a blob into an async writer, verifying size and digest as it arrives.
    ///
    /// `progress` is set to the running byte count. On error the writer has received a prefix
    /// (or wrong bytes): the caller must discard it, never commit it.
    pub async fn fetch_blob<W>(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        size: Option<u64>,
        sink: &mut W,
        progress: Option<&ByteCounter>,
    ) -> Result<()>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let mut s = AsyncSink(sink);
        self.fetch_into(r, digest, size, &mut s, progress).await
    }

    /// Stream a blob into a blocking `std::io::Write` (e.g. a store ingest file), written on a
    /// blocking thread so the reactor never waits on disk. Returns the writer on success;
    /// on error the writer is dropped (the caller must not commit what it wrote).
    pub async fn fetch_blob_to_writer<W>(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        size: Option<u64>,
        writer: W,
        progress: Option<&ByteCounter>,
    ) -> Result<W>
    where
        W: std::io::Write + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
        let thread = tokio::task::spawn_blocking(move || -> std::io::Result<W> {
            let mut w = writer;
            while let Some(b) = rx.blocking_recv() {
                w.write_all(&b)?;
            }
            w.flush()?;
            Ok(w)
        });
        let mut s = ChannelSink(tx);
        let res = self.fetch_into(r, digest, size, &mut s, progress).await;
        drop(s);
        let joined = thread
            .await
            .map_err(|e| RegistryError::io("blob writer thread", std::io::Error::other(e)))?;
        match (res, joined) {
            // The writer's own error explains a closed channel better than "sink closed".
            (_, Err(e)) => Err(RegistryError::io(format!("writing blob {digest}"), e)),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(w)) => Ok(w),
        }
    }

    async fn fetch_into<S: ChunkSink + Send>(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        size: Option<u64>,
        sink: &mut S,
        progress: Option<&ByteCounter>,
    ) -> Result<()> {
        let ctx = self.ctx(r, "fetch blob", vec![pull_scope(&r.repository)]);
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let mut resp = self
            .send(&ctx, &mut |c, base| Ok(c.get(format!("{base}{path}"))))
            .await?;
        if !resp.status().is_success() {
            return Err(ctx.fail(resp).await);
        }
        let what = || format!("blob {digest} of {}/{}", r.registry, r.repository);
        let mut hasher = Hasher::with_algorithm(digest.algorithm());
        let mut total: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| ctx.transport(e))? {
            total += chunk.len() as u64;
            if let Some(want) = size
                && total > want
            {
                return Err(RegistryError::SizeMismatch {
                    what: what(),
                    expected: want,
                    actual: total,
                });
            }
            hasher.update(&chunk);
            sink.put(chunk)
                .await
                .map_err(|e| RegistryError::io(format!("writing {}", what()), e))?;
            if let Some(progress) = progress {
                progress.set(total);
            }
        }
        if let Some(want) = size
            && total != want
        {
            return Err(RegistryError::SizeMismatch {
                what: what(),
                expected: want,
                actual: total,
            });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                what: what(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        sink.done()
            .await
            .map_err(|e| RegistryError::io(format!("flushing {}", what()), e))
    }

    /// Cross-repository mount. `true` = mounted (201); `false` = the registry declined (202),
    /// the upload session it opened is cancelled and the caller should push the blob.
    pub async fn mount_blob(
        &self,
        target: &RegistryRef,
        from_repository: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let ctx = self.ctx(
            target,
            "mount blob",
            vec![push_scope(&target.repository), pull_scope(from_repository)],
        );
        let path = format!("/v2/{}/blobs/uploads/", target.repository);
        let resp = self
            .send(&ctx, &mut |c, base| {
                let mut u = parse_url(&format!("{base}{path}"))?;
                u.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", from_repository);
                Ok(c.post(u).header(header::CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(loc) = location(&ctx, &resp) {
                    // Best effort: an abandoned session only costs the registry a timer.
                    let mut cancel = |c: &reqwest::Client, _: &str| Ok(c.delete(loc.clone()));
                    let _ = self.send(&ctx, &mut cancel).await;
                }
                Ok(false)
            }
            _ => Err(ctx.fail(resp).await),
        }
    }

    /// Upload a blob: POST a session, then one PUT streaming the whole body with `?digest=`.
    /// The caller should check [`blob_exists`](Self::blob_exists) (or mount) first.
    pub async fn push_blob(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        size: u64,
        source: BlobSource,
        progress: Option<ByteCounter>,
    ) -> Result<()> {
        let ctx = self.ctx(r, "push blob", vec![push_scope(&r.repository)]);
        let start = format!("/v2/{}/blobs/uploads/", r.repository);
        let resp = self
            .send(&ctx, &mut |c, base| {
                Ok(c.post(format!("{base}{start}"))
                    .header(header::CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(ctx.fail(resp).await);
        }
        let mut put_url = location(&ctx, &resp)?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        drop(resp);

        let mut source = Some(source);
        let mut path_for_retry: Option<PathBuf> = None;
        let resp = self
            .send(&ctx, &mut |c, _| {
                let body = match source.take() {
                    Some(BlobSource::Path(p)) => {
                        path_for_retry = Some(p.clone());
                        file_body(&p, progress.clone())?
                    }
                    Some(BlobSource::Reader(rd)) => stream_body(rd, progress.clone()),
                    Some(BlobSource::Bytes(b)) => {
                        // Re-armed so a retry can send the same bytes again.
                        source = Some(BlobSource::Bytes(b.clone()));
                        if let Some(p) = &progress {
                            p.set(b.len() as u64);
                        }
                        reqwest::Body::from(b)
                    }
                    None => match &path_for_retry {
                        Some(p) => file_body(p, progress.clone())?,
                        None => {
                            return Err(RegistryError::NotReplayable {
                                registry: r.registry.clone(),
                                repository: r.repository.clone(),
                                operation: "push blob",
                                reason: "the upload was interrupted".into(),
                            });
                        }
                    },
                };
                Ok(c.put(put_url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(body))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(ctx.fail(resp).await);
        }
        Ok(())
    }

    /// PUT a manifest under the reference's tag (or digest). Returns its digest.
    pub async fn push_manifest(
        &self,
        r: &RegistryRef,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let ctx = self.ctx(r, "push manifest", vec![push_scope(&r.repository)]);
        let digest = digest_like(bytes, r.digest.as_ref());
        let reference = match (&r.tag, &r.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => {
                if *d != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("manifest for {r}"),
                        expected: d.to_string(),
                        actual: digest.to_string(),
                    });
                }
                digest.to_string()
            }
            (None, None) => {
                return Err(ctx.invalid("a manifest push needs a tag or digest"));
            }
        };
        let path = format!("/v2/{}/manifests/{reference}", r.repository);
        let resp = self
            .send(&ctx, &mut |c, base| {
                Ok(c.put(format!("{base}{path}"))
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(ctx.fail(resp).await);
        }
        if let Some(h) = header_str(resp.headers(), "docker-content-digest")
            && same_algorithm(&h, &digest)
            && h != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("pushed manifest {r} (Docker-Content-Digest)"),
                expected: digest.to_string(),
                actual: h,
            });
        }
        Ok(digest)
    }

    /// All tags of a repository, following `Link: <…>; rel="next"` pagination.
    pub async fn list_tags(&self, r: &RegistryRef) -> Result<Vec<String>> {
        let ctx = self.ctx(r, "list tags", vec![pull_scope(&r.repository)]);
        let mut next = format!("/v2/{}/tags/list", r.repository);
        let mut tags = Vec::new();
        for _ in 0..1000 {
            let resp = self
                .send(&ctx, &mut |c, base| {
                    let u = if next.starts_with('/') {
                        format!("{base}{next}")
                    } else {
                        next.clone()
                    };
                    Ok(c.get(u))
                })
                .await?;
            if !resp.status().is_success() {
                return Err(ctx.fail(resp).await);
            }
            let link = header_str(resp.headers(), "link");
            let body = read_limited(resp, MAX_MANIFEST)
                .await
                .map_err(|_| ctx.invalid("tag list too large or unreadable"))?;
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let t: Tags =
                serde_json::from_slice(&body).map_err(|e| ctx.invalid(format!("tag list: {e}")))?;
            tags.extend(t.tags.unwrap_or_default());
            match link.and_then(|l| parse_next_link(&l)) {
                Some(n) => next = n,
                None => return Ok(tags),
            }
        }
        Err(ctx.invalid("tag list pagination does not end"))
    }
}

/// The upload `Location`, which may be absolute or relative to the request URL.
fn location(ctx: &Ctx<'_>, resp: &Response) -> Result<Url> {
    let loc = header_str(resp.headers(), header::LOCATION.as_str())
        .ok_or_else(|| ctx.invalid("upload response has no Location header"))?;
    resp.url()
        .join(&loc)
        .map_err(|e| ctx.invalid(format!("bad Location {loc:?}: {e}")))
}

/// The digest of `bytes` in the algorithm of `like` (sha256 without one), so content named
/// by a sha512 digest is checked in sha512.
fn digest_like(bytes: &[u8], like: Option<&Digest>) -> Digest {
    let mut hasher = Hasher::with_algorithm(like.map_or(Algorithm::Sha256, Digest::algorithm));
    hasher.update(bytes);
    hasher.finish()
}

/// Whether a `Docker-Content-Digest` header can be compared with `digest`: one in another
/// algorithm is left to the caller.
fn same_algorithm(header: &str, digest: &Digest) -> bool {
    header
        .split_once(':')
        .is_some_and(|(algorithm, _)| algorithm == digest.algorithm().as_str())
}

fn parse_next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn file_body(path: &std::path::Path, progress: Option<ByteCounter>) -> Result<reqwest::Body> {
    let f = std::fs::File::open(path)
        .map_err(|e| RegistryError::io(format!("opening {}", path.display()), e))?;
    Ok(stream_body(
        Box::new(tokio::fs::File::from_std(f)),
        progress,
    ))
}

fn stream_body(
    rd: Box<dyn AsyncRead + Send + Unpin>,
    progress: Option<ByteCounter>,
) -> reqwest::Body {
    let counted = Counted {
        inner: rd,
        total: 0,
        progress,
    };
    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        counted,
        UPLOAD_CHUNK,
    ))
}

/// Counts bytes read for upload progress.
struct Counted {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    total: u64,
    progress: Option<ByteCounter>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.total += n as u64;
            if let Some(p) = &self.progress {
                p.set(self.total);
            }
        }
        r
    }
}

/// Where downloaded chunks go.
trait ChunkSink {
    async fn put(&mut self, chunk: bytes::Bytes) -> std::io::Result<()>;
    async fn done(&mut self) -> std::io::Result<()>;
}

struct AsyncSink<'a, W: ?Sized>(&'a mut W);

impl<W: AsyncWrite + Unpin + Send + ?Sized> ChunkSink for AsyncSink<'_, W> {
    async fn put(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.0.write_all(&chunk).await
    }
    async fn done(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

struct ChannelSink(tokio::sync::mpsc::Sender<bytes::Bytes>);

impl ChunkSink for ChannelSink {
    async fn put(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.0
            .send(chunk)
            .await
            .map_err(|_| std::io::Error::other("blob writer stopped"))
    }
    async fn done(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link() {
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(parse_next_link(r#"<x>; rel="prev""#), None);
    }

    /// Compile-time check: the operations can be spawned on a multi-thread runtime.
    #[allow(dead_code)]
    fn futures_are_send(c: &Client) {
        fn is_send<T: Send>(_: T) {}
        let r = RegistryRef::repo("a", "b");
        let d = Digest::of(b"");
        is_send(c.resolve(&r));
        is_send(c.push_blob(&r, &d, 0, BlobSource::Bytes(vec![]), None));
        let mut v: Vec<u8> = Vec::new();
        is_send(c.fetch_blob(&r, &d, None, &mut v, None));
        is_send(c.fetch_blob_to_writer(&r, &d, None, Vec::new(), None));
        is_send(c.mount_blob(&r, "x", &d));
    }
}
