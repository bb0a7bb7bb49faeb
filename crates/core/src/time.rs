//! Kernel boot-time stamps to wall-clock RFC 3339 strings, without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// Converts `bpf_ktime_get_boot_ns()` stamps to wall-clock time.
///
/// The offset between CLOCK_REALTIME and CLOCK_BOOTTIME is taken once at start; a later
/// change of the wall clock (NTP step) is not followed, which keeps stamps monotonic.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    realtime_minus_boot_ns: i128,
}

impl BootClock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        let boot = boottime_ns();
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            realtime_minus_boot_ns: real - boot as i128,
        }
    }

    /// A clock with a fixed offset, for tests.
    pub fn with_offset(realtime_minus_boot_ns: i128) -> Self {
        Self {
            realtime_minus_boot_ns,
        }
    }

    /// Unix time in ns of a boot-time stamp.
    pub fn unix_ns(&self, boot_ns: u64) -> i128 {
        self.realtime_minus_boot_ns + boot_ns as i128
    }

    /// RFC 3339 UTC with nanoseconds, e.g. `2026-11-27T06:12:58.123456789Z`.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        format_rfc3339(self.unix_ns(boot_ns))
    }
}

/// CLOCK_BOOTTIME in ns (the clock of `bpf_ktime_get_boot_ns`).
pub fn boottime_ns() -> u64 {
    let mut ts = libc_timespec::default();
    // SAFETY: clock_gettime writes a timespec into the pointer we own.
    let rc = unsafe { clock_gettime(CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const CLOCK_BOOTTIME: i32 = 7;

#[repr(C)]
#[derive(Default)]
struct libc_timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut libc_timespec) -> i32;
}

/// Formats Unix ns as RFC 3339 UTC. Days-to-civil conversion after Howard Hinnant's algorithm.
pub fn format_rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);

    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{nanos:09}Z"
        );
    }
    // Every event carries one: digits by hand, without the formatting machinery (it was
    // about 8% of the agent's CPU under a connect storm).
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, hour as u64);
    put(14, 2, minute as u64);
    put(17, 2, second as u64);
    put(20, 9, u64::from(nanos));
    // ASCII digits and separators: always UTF-8.
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29T12:34:56.000000789Z, a leap day.
        assert_eq!(
            format_rfc3339(951_827_696_000_000_789),
            "2000-02-29T12:34:56.000000789Z"
        );
        assert_eq!(
            format_rfc3339(1_795_846_378_000_000_000),
            "2026-11-28T06:12:58.000000000Z"
        );
        assert_eq!(
            format_rfc3339(946_684_799_999_999_999),
            "1999-12-31T23:59:59.999999999Z"
        );
        // Past year 9999 the general formatter takes over.
        assert_eq!(
            format_rfc3339(253_402_300_800_000_000_001),
            "10000-01-01T00:00:00.000000001Z"
        );
    }

    #[test]
    fn boot_clock_applies_offset() {
        let clock = BootClock::with_offset(1_000_000_000);
        assert_eq!(clock.rfc3339(500), "1970-01-01T00:00:01.000000500Z");
    }

    #[test]
    fn boottime_advances() {
        let a = boottime_ns();
        let b = boottime_ns();
        assert!(a > 0 && b >= a);
    }
}
