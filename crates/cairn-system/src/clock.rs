//! The box's clock: seconds since the epoch for records, and the one way times are written for owners.
//! (No time zone is configured yet: times read as UTC.)

/// Seconds since 1970-01-01 UTC; 0 if the clock is before the epoch (a board without a battery-backed clock).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// "2026-11-23 19:04 UTC".
pub fn utc(seconds: u64) -> String {
    let (year, month, day) = civil_date(seconds);
    let rem = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// "2026-11-23T19:04:05Z" (RFC 3339, UTC): for records other programs read.
pub fn rfc3339(seconds: u64) -> String {
    let (year, month, day) = civil_date(seconds);
    let rem = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Civil date (year, month, day) of a time in seconds since 1970-01-01 (proleptic Gregorian calendar).
fn civil_date(seconds: u64) -> (i64, i64, i64) {
    let days = (seconds / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_owners_expect() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(1_795_460_278), "2026-11-23 18:57 UTC");
    }
}
