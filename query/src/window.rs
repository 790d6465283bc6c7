//! Time windows from query parameters: `window=15m`, or `start` and `end` as RFC 3339 or
//! epoch milliseconds. Windows are widened to whole minutes because rows are per minute.

use meshscope_storage::{EpochMillis, MINUTE_MS, TimeRange, minute_of};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{Error, Result};

pub(crate) const DEFAULT_WINDOW_MS: i64 = 15 * MINUTE_MS;

/// Longest window a request may ask for; longer ones are almost always a typo.
const MAX_WINDOW_MS: i64 = 400 * 24 * 60 * MINUTE_MS;

/// Latest instant `start` or `end` may name: the end of the year 9999, in epoch ms.
const LATEST_INSTANT_MS: EpochMillis = 253_402_300_799_999;

/// The time parameters shared by every data endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowParams {
    /// A window that ends now: a whole number with a unit `s`, `m`, `h`, `d` or `w` (a bare
    /// number is minutes), at most 400 days. The default is `15m`. Not with `start`/`end`.
    #[param(example = "15m")]
    pub(crate) window: Option<String>,
    /// Start of an absolute window: RFC 3339 or epoch milliseconds, widened to the minute.
    #[param(example = "2026-11-25T02:00:00Z")]
    pub(crate) start: Option<String>,
    /// End of an absolute window (needs `start`; default now): RFC 3339 or epoch
    /// milliseconds, widened to the minute.
    #[param(example = "1795573800000")]
    pub(crate) end: Option<String>,
}

impl WindowParams {
    /// The minute-aligned range `[start, end)` these parameters name at time `now`. A
    /// relative window ends with the minute holding `now`, so the minute still filling is included
    /// and the map is live.
    pub(crate) fn resolve(&self, now: EpochMillis) -> Result<TimeRange> {
        let absolute = self.start.is_some() || self.end.is_some();
        if absolute && self.window.is_some() {
            return Err(Error::bad_request(
                "give either `window` or `start` and `end`, not both",
            ));
        }
        let range = if absolute {
            let Some(start) = self.start.as_deref() else {
                return Err(Error::bad_request("`end` needs a `start`"));
            };
            let start = parse_instant("start", start)?;
            let end = match self.end.as_deref() {
                Some(end) => parse_instant("end", end)?,
                None => now,
            };
            TimeRange {
                start: minute_of(start),
                end: ceil_to_minute(end),
            }
        } else {
            ending_now(now, self.length()?.unwrap_or(DEFAULT_WINDOW_MS))
        };
        if range.start >= range.end {
            return Err(Error::bad_request("`start` must be before `end`"));
        }
        if range.end - range.start > MAX_WINDOW_MS {
            return Err(Error::bad_request("the window may span at most 400 days"));
        }
        Ok(range)
    }
}

impl WindowParams {
    /// The length of a relative window (`window=`, or the default), in whole minutes;
    /// `None` for `start` and `end`.
    pub(crate) fn length(&self) -> Result<Option<i64>> {
        if self.start.is_some() || self.end.is_some() {
            return Ok(None);
        }
        let length = match self.window.as_deref() {
            Some(window) => parse_duration(window)?,
            None => DEFAULT_WINDOW_MS,
        };
        Ok(Some(ceil_to_minute(length)))
    }
}

/// The relative window of `length` (whole minutes) at `now`: it ends with the minute
/// holding `now`.
pub(crate) fn ending_now(now: EpochMillis, length: i64) -> TimeRange {
    let end = minute_of(now) + MINUTE_MS;
    TimeRange {
        start: end - length,
        end,
    }
}

/// Number of minutes a range spans; rows and rates are per minute.
pub(crate) fn minutes_in(range: TimeRange) -> i64 {
    ((range.end - range.start) / MINUTE_MS).max(1)
}

fn ceil_to_minute(t: EpochMillis) -> EpochMillis {
    let floor = minute_of(t);
    if floor == t { t } else { floor + MINUTE_MS }
}

/// `90s`, `15m`, `1h`, `7d`, `2w`; a bare number is minutes.
pub(crate) fn parse_duration(text: &str) -> Result<i64> {
    let invalid = || {
        Error::bad_request(format!(
            "invalid window {text:?}: expected a number with a unit s, m, h, d or w, e.g. 15m"
        ))
    };
    let text_trimmed = text.trim();
    let digits_end = text_trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text_trimmed.len());
    let (number, unit) = text_trimmed.split_at(digits_end);
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" | "" => MINUTE_MS,
        "h" => 60 * MINUTE_MS,
        "d" => 24 * 60 * MINUTE_MS,
        "w" => 7 * 24 * 60 * MINUTE_MS,
        _ => return Err(invalid()),
    };
    if number == 0 {
        return Err(Error::bad_request("the window must be longer than zero"));
    }
    number
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= MAX_WINDOW_MS)
        .ok_or_else(|| Error::bad_request("the window may span at most 400 days"))
}

/// Epoch milliseconds when all digits (optionally negative), RFC 3339 otherwise.
fn parse_instant(name: &str, text: &str) -> Result<EpochMillis> {
    let text = text.trim();
    let is_number = !text.is_empty()
        && text
            .strip_prefix('-')
            .unwrap_or(text)
            .chars()
            .all(|c| c.is_ascii_digit());
    let out_of_range = || Error::bad_request(format!("`{name}` is out of range: {text:?}"));
    let instant = if is_number {
        text.parse().map_err(|_| out_of_range())?
    } else {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                Error::bad_request(format!(
                    "invalid `{name}` {text:?}: expected RFC 3339 or epoch milliseconds ({e})"
                ))
            })?
    };
    // Far from any stored minute, and far enough from the integer's ends that rounding to
    // the minute cannot overflow.
    if !(-LATEST_INSTANT_MS..=LATEST_INSTANT_MS).contains(&instant) {
        return Err(out_of_range());
    }
    Ok(instant)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25T02:30:45Z
    const NOW: EpochMillis = 1_795_573_845_000;
    const NOW_MINUTE: EpochMillis = 1_795_573_800_000;

    fn params(window: Option<&str>, start: Option<&str>, end: Option<&str>) -> WindowParams {
        WindowParams {
            window: window.map(String::from),
            start: start.map(String::from),
            end: end.map(String::from),
        }
    }

    #[test]
    fn relative_windows_end_with_the_minute_still_filling() {
        let cases = [
            (None, 15),
            (Some("15m"), 15),
            (Some("1h"), 60),
            (Some("90s"), 2),
            (Some("30s"), 1),
            (Some("5"), 5),
            (Some("1d"), 1440),
            (Some("1w"), 7 * 1440),
        ];
        for (window, minutes) in cases {
            let range = params(window, None, None).resolve(NOW).unwrap();
            assert_eq!(range.end, NOW_MINUTE + MINUTE_MS, "{window:?}");
            assert_eq!(range.start, range.end - minutes * MINUTE_MS, "{window:?}");
        }
    }

    #[test]
    fn absolute_windows_widen_to_whole_minutes() {
        let range = params(
            None,
            Some("2026-11-25T02:00:30Z"),
            Some("2026-11-25T02:10:00Z"),
        )
        .resolve(NOW)
        .unwrap();
        assert_eq!(range.start, NOW_MINUTE - 30 * MINUTE_MS);
        assert_eq!(range.end, NOW_MINUTE - 20 * MINUTE_MS);

        let millis = params(None, Some("1795573800000"), Some("1795573860001"))
            .resolve(NOW)
            .unwrap();
        assert_eq!(millis.start, NOW_MINUTE);
        assert_eq!(millis.end, NOW_MINUTE + 2 * MINUTE_MS);

        let open_end = params(None, Some("2026-11-25T02:30:00+00:00"), None)
            .resolve(NOW)
            .unwrap();
        assert_eq!(open_end.start, NOW_MINUTE);
        assert_eq!(open_end.end, NOW_MINUTE + MINUTE_MS);
    }

    #[test]
    fn bad_windows_are_rejected_with_a_reason() {
        let cases = [
            (params(Some("abc"), None, None), "invalid window"),
            (params(Some("15x"), None, None), "invalid window"),
            (params(Some("-5m"), None, None), "invalid window"),
            (params(Some("0m"), None, None), "longer than zero"),
            (
                params(Some("999999999999w"), None, None),
                "at most 400 days",
            ),
            (params(Some("15m"), Some("0"), None), "either"),
            (params(None, None, Some("0")), "needs a `start`"),
            (params(None, Some("yesterday"), None), "invalid `start`"),
            (
                params(None, Some("9223372036854775807"), None),
                "out of range",
            ),
            (
                params(None, Some("0"), Some("-9223372036854775808")),
                "out of range",
            ),
            (
                params(
                    None,
                    Some("2026-11-25T03:00:00Z"),
                    Some("2026-11-25T02:00:00Z"),
                ),
                "before",
            ),
        ];
        for (params, expected) in cases {
            let error = params.resolve(NOW).unwrap_err();
            assert!(matches!(error, Error::BadRequest(_)), "{params:?}");
            assert!(error.to_string().contains(expected), "{params:?}: {error}");
        }
    }
}
