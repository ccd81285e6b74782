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
    let failed = |reason: String| Error::Http {
        url: url.to_string(),
        reason,
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
    let mut response = request.send().await.map_err(|e| failed(error_chain(&e)))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && previous.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}")));
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
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(error_chain(&e)))?
    {
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
        return Err(failed(format!(
            "the connection closed after {size} of {total} bytes"
        )));
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

/// The error and its causes on one line (reqwest hides the interesting part in sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    use super::*;

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
