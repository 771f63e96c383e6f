//! Event time: wall-clock RFC 3339 from the kernel's boot clock.

use nix::time::{clock_gettime, ClockId};

/// Wall-clock time from the kernel's boot clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime − boottime, in ns.
    offset_ns: i128,
}

fn clock_ns(id: ClockId) -> i128 {
    // Both clocks always exist on Linux; a failure would read as the epoch, not a panic.
    clock_gettime(id)
        .map(|ts| ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128)
        .unwrap_or(0)
}

impl Clock {
    pub fn new() -> Self {
        Self {
            offset_ns: clock_ns(ClockId::CLOCK_REALTIME) - clock_ns(ClockId::CLOCK_BOOTTIME),
        }
    }

    pub fn from_boot_ns(&self, ktime: u64) -> String {
        rfc3339(self.offset_ns + ktime as i128)
    }

    pub fn now() -> String {
        rfc3339(clock_ns(ClockId::CLOCK_REALTIME))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// RFC 3339, UTC, always nine fractional digits.
pub fn rfc3339(unix_ns: i128) -> String {
    Rfc3339::new(unix_ns).as_str().to_owned()
}

/// A timestamp as RFC 3339 text (`YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`), formatted into a fixed
/// buffer by hand: no `format!`, no calendar type per event. Outside years 0–9999 it reads as
/// the epoch (the width is fixed).
#[derive(Clone, Copy)]
pub struct Rfc3339([u8; 30]);

const NS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Rfc3339 {
    pub fn new(unix_ns: i128) -> Self {
        let secs = unix_ns.div_euclid(NS_PER_SEC);
        let nanos = unix_ns.rem_euclid(NS_PER_SEC) as u32;
        let (days, secs_of_day) = match i64::try_from(secs) {
            Ok(s) => (
                s.div_euclid(SECS_PER_DAY),
                s.rem_euclid(SECS_PER_DAY) as u32,
            ),
            Err(_) => return Self::new(0),
        };
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return Self::new(0);
        }
        let mut b = *b"0000-00-00T00:00:00.000000000Z";
        digits(&mut b[0..4], year as u32);
        digits(&mut b[5..7], month);
        digits(&mut b[8..10], day);
        digits(&mut b[11..13], secs_of_day / 3600);
        digits(&mut b[14..16], secs_of_day / 60 % 60);
        digits(&mut b[17..19], secs_of_day % 60);
        digits(&mut b[20..29], nanos);
        Self(b)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000000Z")
    }
}

/// Writes `n`'s last `out.len()` decimal digits, zero-padded.
fn digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// (year, month, day) of the proleptic Gregorian calendar for days since 1970-01-01, by
/// Howard Hinnant's `civil_from_days` (eras of 400 years, March-based years).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the formatter replaced: `time`'s calendar and a `format!`.
    fn by_time(unix_ns: i128) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns).unwrap();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        )
    }

    /// 0000-01-01T00:00:00Z and the last nanosecond of 9999, in ns since the epoch.
    const FIRST: i128 = -62_167_219_200 * NS_PER_SEC;
    const LAST: i128 = 253_402_300_800 * NS_PER_SEC - 1;

    #[test]
    fn rfc3339_has_nanoseconds_and_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339(951_782_400 * NS_PER_SEC),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339(FIRST), "0000-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(LAST), "9999-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339(LAST + 1),
            "1970-01-01T00:00:00.000000000Z",
            "out of range"
        );
        assert_eq!(rfc3339(FIRST - 1), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(i128::MAX), "1970-01-01T00:00:00.000000000Z");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn rfc3339_matches_the_time_crate(unix_ns in FIRST..=LAST) {
            prop_assert_eq!(rfc3339(unix_ns), by_time(unix_ns));
        }

        #[test]
        fn rfc3339_matches_the_time_crate_near_now(unix_ns in 0i128..4_102_444_800 * NS_PER_SEC) {
            prop_assert_eq!(rfc3339(unix_ns), by_time(unix_ns));
        }

        #[test]
        fn rfc3339_matches_the_time_crate_at_day_boundaries(day in -719_528i64..2_932_896, edge in 0i128..3) {
            let unix_ns = i128::from(day) * 86_400 * NS_PER_SEC + edge - 1;
            prop_assume!((FIRST..=LAST).contains(&unix_ns));
            prop_assert_eq!(rfc3339(unix_ns), by_time(unix_ns));
        }
    }
}
