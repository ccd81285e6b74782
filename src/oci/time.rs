//! UTC calendar arithmetic for the timestamps images and registries carry (RFC 3339 in
//! configs, HTTP dates), without a date library: Howard Hinnant's algorithms.

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a number of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Now as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(now.as_secs() as i64, Some(now.subsec_nanos()))
}

/// `seconds` since the epoch as RFC 3339 UTC, with `nanos` as a nine-digit fraction when
/// given (`2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.000000001Z`).
pub fn format_rfc3339(seconds: i64, nanos: Option<u32>) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    let fraction = nanos.map_or(String::new(), |n| format!(".{n:09}"));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_formats() {
        for days in [-800_000, -1, 0, 1, 10_957, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(format_rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000, None), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_rfc3339(951_782_400, Some(5)),
            "2000-02-29T00:00:00.000000005Z"
        );
    }
}
