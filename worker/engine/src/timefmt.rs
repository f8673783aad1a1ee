//! Event time: parsing the three accepted forms of `transaction_time` (SPEC.md §1)
//! and the calendar fields the rules read (hour, date, day of week) in the
//! pipeline's time zone.
//!
//! The common `YYYY-MM-DD HH:MM:SS[.fff]` form is parsed by hand without allocating;
//! only zone-aware conversions for a non-UTC pipeline go through `chrono-tz`.

use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_HOUR: i64 = 3_600_000;

/// The pipeline's time zone: the zone of timestamps written without an offset and of
/// the calendar fields (hour of day, date) the rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// UTC (the default): pure arithmetic.
    #[default]
    Utc,
    /// An IANA zone.
    Named(Tz),
}

/// Why a `transaction_time` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not one of the accepted forms.
    #[error(
        "transaction_time {0:?} is not 'YYYY-MM-DD HH:MM:SS[.fff]', ISO-8601, or epoch milliseconds"
    )]
    Format(String),
    /// A wall-clock time that does not exist in the pipeline's zone (DST gap).
    #[error("transaction_time {0:?} does not exist in the pipeline's time zone (DST gap)")]
    NonExistent(String),
    /// An unknown IANA zone name.
    #[error("unknown time zone {0:?}; use an IANA name such as 'UTC' or 'Asia/Taipei'")]
    UnknownZone(String),
}

impl Zone {
    /// Reads an IANA name; `UTC`, `Etc/UTC` and `Z` are the fast UTC zone.
    pub fn parse(name: &str) -> Result<Zone, TimeError> {
        match name {
            "UTC" | "Etc/UTC" | "Z" | "utc" => Ok(Zone::Utc),
            other => other
                .parse::<Tz>()
                .map(Zone::Named)
                .map_err(|_| TimeError::UnknownZone(other.to_owned())),
        }
    }

    /// The offset of local wall time from UTC at the instant `epoch_ms`, in ms.
    pub fn offset_ms(self, epoch_ms: i64) -> i64 {
        match self {
            Zone::Utc => 0,
            Zone::Named(tz) => match tz.timestamp_millis_opt(epoch_ms) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    use chrono::Offset;
                    i64::from(t.offset().fix().local_minus_utc()) * 1000
                }
                LocalResult::None => 0,
            },
        }
    }

    /// Converts a wall-clock time in this zone (as ms since the epoch of a UTC wall
    /// clock) into the instant. In a DST overlap the earlier instant wins.
    fn wall_to_instant(self, wall_ms: i64, text: &str) -> Result<i64, TimeError> {
        match self {
            Zone::Utc => Ok(wall_ms),
            Zone::Named(tz) => {
                let naive = chrono::DateTime::from_timestamp_millis(wall_ms)
                    .ok_or_else(|| TimeError::Format(text.to_owned()))?
                    .naive_utc();
                match tz.from_local_datetime(&naive) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                        Ok(t.timestamp_millis())
                    }
                    LocalResult::None => Err(TimeError::NonExistent(text.to_owned())),
                }
            }
        }
    }
}

/// Calendar fields of an instant in the pipeline's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalFields {
    /// Days since 1970-01-01 of the local date (`DATE(t)`).
    pub date_days: i32,
    /// `EXTRACT(HOUR FROM t)`, 0..=23.
    pub hour: u8,
    /// `EXTRACT(DOW FROM t)`: 1 = Sunday … 7 = Saturday.
    pub day_of_week: u8,
    /// Local wall-clock time as ms since the epoch of a UTC wall clock (for printing).
    pub wall_ms: i64,
}

/// The local calendar fields of `epoch_ms`.
pub fn local_fields(epoch_ms: i64, zone: Zone) -> LocalFields {
    let wall_ms = epoch_ms + zone.offset_ms(epoch_ms);
    let days = wall_ms.div_euclid(MS_PER_DAY);
    let hour = (wall_ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u8;
    // 1970-01-01 was a Thursday (DOW 5 with Sunday = 1).
    let day_of_week = ((days + 4).rem_euclid(7) + 1) as u8;
    LocalFields {
        date_days: days as i32,
        hour,
        day_of_week,
        wall_ms,
    }
}

/// Parses a `transaction_time` string: `YYYY-MM-DD HH:MM:SS[.fff]`, the same with `T`,
/// an optional `Z` / `±HH:MM` / `±HHMM` offset, or an all-digit epoch-ms string.
/// Times without an offset are wall-clock times in `zone`. Fractions beyond
/// milliseconds are truncated (`TIMESTAMP(3)`).
pub fn parse_time(text: &str, zone: Zone) -> Result<i64, TimeError> {
    let err = || TimeError::Format(text.to_owned());
    let b = text.trim().as_bytes();
    if !b.is_empty() && b.len() <= 15 && b.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(err);
    }
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return Err(err());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let year = digits(&b[0..4]).ok_or_else(err)?;
    let month = digits(&b[5..7]).ok_or_else(err)?;
    let day = digits(&b[8..10]).ok_or_else(err)?;
    let hour = digits(&b[11..13]).ok_or_else(err)?;
    let minute = digits(&b[14..16]).ok_or_else(err)?;
    let second = digits(&b[17..19]).ok_or_else(err)?;
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 60 {
        return Err(err());
    }
    if NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32).is_none() {
        return Err(err());
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err(err());
        }
        for i in 0..3 {
            millis = millis * 10
                + frac
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |c| i64::from(c - b'0'));
        }
        rest = &frac[n..];
    }
    let wall_ms = days_from_civil(year, month, day) * MS_PER_DAY
        + hour * MS_PER_HOUR
        + minute * 60_000
        + second.min(59) * 1000
        + millis;
    match rest {
        [] => zone.wall_to_instant(wall_ms, text),
        [b'Z'] | [b'z'] => Ok(wall_ms),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (h, m) = match tail {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (
                    digits(&[*h1, *h2]).ok_or_else(err)?,
                    digits(&[*m1, *m2]).ok_or_else(err)?,
                ),
                [h1, h2] => (digits(&[*h1, *h2]).ok_or_else(err)?, 0),
                _ => return Err(err()),
            };
            if h > 23 || m > 59 {
                return Err(err());
            }
            let offset = h * MS_PER_HOUR + m * 60_000;
            Ok(if *sign == b'+' {
                wall_ms - offset
            } else {
                wall_ms + offset
            })
        }
        _ => Err(err()),
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number, as (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `YYYY-MM-DD HH:MM:SS.fff` for a wall-clock time (see [`LocalFields::wall_ms`]).
pub fn write_wall_time(wall_ms: i64, out: &mut Vec<u8>) {
    let days = wall_ms.div_euclid(MS_PER_DAY);
    let in_day = wall_ms.rem_euclid(MS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    let h = in_day / MS_PER_HOUR;
    let mi = in_day / 60_000 % 60;
    let s = in_day / 1000 % 60;
    let ms = in_day % 1000;
    let push2 = |out: &mut Vec<u8>, v: i64| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    let y = y.clamp(0, 9999);
    out.push(b'0' + (y / 1000) as u8);
    out.push(b'0' + (y / 100 % 10) as u8);
    push2(out, y % 100);
    out.push(b'-');
    push2(out, i64::from(mo));
    out.push(b'-');
    push2(out, i64::from(d));
    out.push(b' ');
    push2(out, h);
    out.push(b':');
    push2(out, mi);
    out.push(b':');
    push2(out, s);
    out.push(b'.');
    out.push(b'0' + (ms / 100) as u8);
    push2(out, ms % 100);
}

/// The wall-clock string of an instant in `zone`.
pub fn format_time(epoch_ms: i64, zone: Zone) -> String {
    let mut out = Vec::with_capacity(23);
    write_wall_time(local_fields(epoch_ms, zone).wall_ms, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_format() {
        let t = parse_time("2024-03-01 02:30:00", Zone::Utc).unwrap();
        assert_eq!(t, 1_709_260_200_000);
        let t = parse_time("2024-03-01 02:30:00.123", Zone::Utc).unwrap();
        assert_eq!(t, 1_709_260_200_123);
        let t = parse_time("2024-03-01 02:30:00.1", Zone::Utc).unwrap();
        assert_eq!(t, 1_709_260_200_100);
        let t = parse_time("2024-03-01 02:30:00.123456", Zone::Utc).unwrap();
        assert_eq!(t, 1_709_260_200_123);
    }

    #[test]
    fn parses_iso_with_zones() {
        let utc = parse_time("2024-03-01T02:30:00Z", Zone::Utc).unwrap();
        assert_eq!(utc, 1_709_260_200_000);
        let plus8 = parse_time("2024-03-01T10:30:00+08:00", Zone::Utc).unwrap();
        assert_eq!(plus8, utc);
        let minus = parse_time("2024-02-29T21:30:00-0500", Zone::Utc).unwrap();
        assert_eq!(minus, utc);
    }

    #[test]
    fn parses_epoch_millis_string() {
        assert_eq!(
            parse_time("1709260200000", Zone::Utc).unwrap(),
            1_709_260_200_000
        );
    }

    #[test]
    fn zone_applies_to_naive_times() {
        let taipei = Zone::parse("Asia/Taipei").unwrap();
        let t = parse_time("2024-03-01 10:30:00", taipei).unwrap();
        assert_eq!(t, 1_709_260_200_000);
        let f = local_fields(t, taipei);
        assert_eq!(f.hour, 10);
    }

    #[test]
    fn refuses_bad_times() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01 00:00:00",
            "2024-02-30 00:00:00",
            "2024-03-01 24:00:00",
            "2024-03-01 10:30",
            "2024-03-01 10:30:00+25:00",
            "2024-03-01 10:30:00.",
            "2024-03-01 10:30:00 junk",
        ] {
            assert!(parse_time(bad, Zone::Utc).is_err(), "{bad}");
        }
        assert!(Zone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn dst_gap_is_an_error() {
        let ny = Zone::parse("America/New_York").unwrap();
        assert!(matches!(
            parse_time("2024-03-10 02:30:00", ny),
            Err(TimeError::NonExistent(_))
        ));
    }

    #[test]
    fn calendar_fields() {
        // 2024-03-03 was a Sunday.
        let t = parse_time("2024-03-03 23:59:59.999", Zone::Utc).unwrap();
        let f = local_fields(t, Zone::Utc);
        assert_eq!((f.hour, f.day_of_week), (23, 1));
        assert_eq!(f.date_days, days_from_civil(2024, 3, 3) as i32);
        let sat = local_fields(
            parse_time("2024-03-09 00:00:00", Zone::Utc).unwrap(),
            Zone::Utc,
        );
        assert_eq!(sat.day_of_week, 7);
        let before_epoch = local_fields(-1, Zone::Utc);
        assert_eq!((before_epoch.hour, before_epoch.date_days), (23, -1));
    }

    #[test]
    fn civil_round_trip_and_format() {
        for days in [-800_000, -1, 0, 1, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
        let t = parse_time("2024-03-01 02:03:04.005", Zone::Utc).unwrap();
        assert_eq!(format_time(t, Zone::Utc), "2024-03-01 02:03:04.005");
    }
}
