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
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_nanoseconds_and_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
