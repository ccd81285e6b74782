//! Files fetched over HTTP(S) for `ADD <url>`: streamed into a file while hashed, and
//! revalidated on later builds with the validators the server gave (`ETag`,
//! `Last-Modified`), so an unchanged file is not downloaded again.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Error;

/// What a server said identifies the version it sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The outcome of [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The server confirmed the version of `previous` (HTTP 304).
    NotModified,
    Downloaded {
        /// `sha256:<hex>` of the content.
        digest: String,
        size: u64,
        /// From `Last-Modified` (BuildKit gives the file this mtime).
        modified: Option<SystemTime>,
        validators: Validators,
    },
}

/// GETs `url` into the new file `dest`, conditionally on `previous` when given.
/// `progress(done, total)` is called as bytes arrive.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    previous: Option<&Validators>,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched, Error> {
    let failed = |source| Error::Http {
        url: url.to_string(),
        source,
    };
    let mut request = client.get(url);
    if let Some(previous) = previous {
        if let Some(etag) = &previous.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &previous.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
    }
    let mut response = request.send().await.map_err(failed)?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && previous.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(Error::HttpStatus {
            url: url.to_string(),
            status,
        });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let modified = validators
        .last_modified
        .as_deref()
        .and_then(parse_http_date);
    let total = response.content_length();
    let mut file = std::fs::File::create_new(dest).map_err(|source| Error::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|source| Error::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        size += chunk.len() as u64;
        progress(size, total);
    }
    if let Some(total) = total
        && total != size
    {
        return Err(Error::Truncated {
            url: url.to_string(),
            received: size,
            expected: total,
        });
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Fetched::Downloaded {
        digest: format!("sha256:{hex}"),
        size,
        modified,
        validators,
    })
}

/// An HTTP date in its preferred form (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110).
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = crate::oci::time::days_from_civil(year, month, day);
    let seconds = days * 86_400 + h * 3600 + m * 60 + s;
    u64::try_from(seconds)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;

    /// Serves `response` to one request on a loopback port; returns its URL.
    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            reader.get_mut().write_all(response.as_bytes()).unwrap();
        });
        url
    }

    fn fetch_error(url: &str) -> Error {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(fetch(&client, url, &dir.path().join("f"), None, |_, _| {}))
            .unwrap_err()
    }

    #[test]
    fn download_errors_name_the_url_and_keep_the_cause() {
        let url = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let error = fetch_error(&url);
        assert!(matches!(error, Error::HttpStatus { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("downloading {url}: HTTP 404 Not Found")
        );

        // A body cut short, and nothing listening on a port just released: the request
        // error is kept as the cause, and spelled out in the message.
        let cut_short =
            serve_once("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for url in [cut_short, format!("http://127.0.0.1:{port}/file")] {
            let error = fetch_error(&url);
            assert!(matches!(error, Error::Http { .. }), "{error:?}");
            let cause = std::error::Error::source(&error).expect("the request error is kept");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("downloading {url}: {cause}: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn http_dates() {
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            at(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), at(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            at(951_825_600)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("Sun, 36 Nov 1994 08:49:37 GMT"), None);
    }
}
