//! Times as the pages show them: the same text on the server and in the browser.

/// The moment `ms` milliseconds after the epoch; out of `time`'s range, the epoch.
pub fn utc(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `2026-11-28 14:05 UTC` from milliseconds since the epoch (English; see
/// `language::format_time` for the reader's language).
pub fn format_utc(ms: i64) -> String {
    let at = utc(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", at.year(), u8::from(at.month()), at.day(), at.hour(), at.minute())
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn timestamps_read_the_same_everywhere() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_795_833_000_000), "2026-11-28 02:30 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59 UTC");
    }
}
