//! Business hours in the provider's time zone, holidays excluded: rules can treat mail
//! that arrives at night or on a holiday differently.

use chrono::{DateTime, Datelike, Utc};

use crate::config::Time;

pub fn is_business_time(time: &Time, now: DateTime<Utc>) -> bool {
    let local = now.with_timezone(&time.zone);
    let day = local.date_naive();
    let clock = local.time();
    time.business_days.contains(&local.weekday())
        && !time.holidays.contains(&day)
        && time.business_hours.opens <= clock
        && clock < time.business_hours.closes
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn rome() -> Time {
        Time {
            zone: chrono_tz::Europe::Rome,
            holidays: vec![NaiveDate::from_ymd_opt(2026, 12, 8).unwrap()],
            ..Time::default()
        }
    }

    #[test]
    fn opening_hours_are_local() {
        // Monday 23 Nov 2026: 07:30 UTC is 08:30 in Rome (open), 17:30 UTC is 18:30 (closed).
        assert!(is_business_time(
            &rome(),
            Utc.with_ymd_and_hms(2026, 11, 23, 7, 30, 0).unwrap()
        ));
        assert!(!is_business_time(
            &rome(),
            Utc.with_ymd_and_hms(2026, 11, 23, 17, 30, 0).unwrap()
        ));
        assert!(!is_business_time(
            &rome(),
            Utc.with_ymd_and_hms(2026, 11, 23, 6, 59, 0).unwrap()
        ));
    }

    #[test]
    fn weekends_and_holidays_are_closed() {
        // Saturday 28 Nov, and Tuesday 8 Dec (a holiday), both at 10:00 UTC.
        assert!(!is_business_time(
            &rome(),
            Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
        ));
        assert!(!is_business_time(
            &rome(),
            Utc.with_ymd_and_hms(2026, 12, 8, 10, 0, 0).unwrap()
        ));
        assert!(is_business_time(
            &rome(),
            Utc.with_ymd_and_hms(2026, 12, 9, 10, 0, 0).unwrap()
        ));
    }
}
