//! Wall-clock timestamps in the two shapes mail needs: syslog (`Nov 24 06:33:22`) and RFC 5322.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// UTC calendar fields of a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub weekday: usize,
}

impl Civil {
    pub fn now() -> Civil {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Civil::from_unix(secs as i64)
    }

    /// Howard Hinnant's days-from-civil inverse, valid for the proleptic Gregorian calendar.
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            weekday: days.rem_euclid(7) as usize,
        }
    }

    /// `Nov 24 06:33:22`, as syslog and Postfix's maillog_file write it.
    pub fn syslog(&self) -> String {
        let month = MONTHS.get(self.month as usize - 1).unwrap_or(&"Jan");
        format!(
            "{month} {:>2} {:02}:{:02}:{:02}",
            self.day, self.hour, self.minute, self.second
        )
    }

    /// `Tue, 24 Nov 2026 06:33:22 +0000`, for Received: and Date: headers.
    pub fn rfc5322(&self) -> String {
        let month = MONTHS.get(self.month as usize - 1).unwrap_or(&"Jan");
        let weekday = WEEKDAYS.get(self.weekday).unwrap_or(&"Thu");
        format!(
            "{weekday}, {} {month} {} {:02}:{:02}:{:02} +0000",
            self.day, self.year, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_moments() {
        let c = Civil::from_unix(0);
        assert_eq!(c.rfc5322(), "Thu, 1 Jan 1970 00:00:00 +0000");
        // 2026-11-24 06:33:22 UTC, a Tuesday.
        let c = Civil::from_unix(1_795_502_002);
        assert_eq!(c.syslog(), "Nov 24 06:33:22");
        assert_eq!(c.rfc5322(), "Tue, 24 Nov 2026 06:33:22 +0000");
        let leap = Civil::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
    }
}
