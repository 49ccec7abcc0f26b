//! Cells read by what their field means: a ratio a spreadsheet turned into a time or a date, a
//! date written with `/` that breaks a file name.

use super::diag::{Diagnostic, SourceLocation};
use super::job::Vars;
use super::{expand, numfmt};
use crate::api::Ratio;

/// A time of day as a spreadsheet shows it (`16:09`, `4:09:00 PM`, `16:09:00`) as the ratio
/// it was typed as (`16:9`), if it is one.
pub fn time_as_ratio(s: &str) -> Option<String> {
    let t = s.trim();
    // Split off the last two bytes only at a character boundary: in `16∶9` (a ratio sign of
    // three bytes) they fall inside the sign.
    let (t, pm) = match t.len().checked_sub(2).and_then(|i| t.split_at_checked(i)) {
        Some((a, b)) if b.eq_ignore_ascii_case("PM") => (a.trim_end(), Some(true)),
        Some((a, b)) if b.eq_ignore_ascii_case("AM") => (a.trim_end(), Some(false)),
        _ => (t, None),
    };
    let mut parts = t.split(':');
    let (h, m) = (parts.next()?, parts.next()?);
    let sec = parts.next();
    let digits = |x: &str, n: usize| !x.is_empty() && x.len() <= n && x.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !digits(h, 2) || !digits(m, 2) || sec.is_some_and(|x| x != "00") {
        return None;
    }
    let (mut h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    match pm {
        Some(true) if h < 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        _ => {}
    }
    (h < 24 && m < 60).then(|| format!("{h}:{m}"))
}

/// A number that is a whole number of minutes of a day (`0.67291666666666666665`, as a CSV
/// export of bare numbers writes the time 16:09) as the time it is (`16:09`).
fn day_fraction_as_time(s: &str) -> Option<String> {
    let v: f64 = s.trim().parse().ok()?;
    let minutes = v * 1440.0;
    ((0.0..1.0).contains(&v) && (minutes - minutes.round()).abs() < 1e-6)
        .then(|| numfmt::show(v, "h:mm", true, false).text)
}

/// The `ratio` of a sheet cell: a cell the app turned into a time reads as the ratio typed,
/// whether shown as a time or written as a fraction of a day, with a warning saying how to
/// keep it a ratio.
pub(super) fn ratio_cell(
    c: &str,
    was_time: bool,
    loc: &SourceLocation,
    diags: &mut Vec<Diagnostic>,
) -> String {
    let valid = c.trim().parse::<Ratio>().is_ok();
    if !was_time && valid {
        return c.to_string();
    }
    let fraction = day_fraction_as_time(c);
    let time = fraction.as_deref().unwrap_or(c);
    let Some(r) = time_as_ratio(time).filter(|r| r.parse::<Ratio>().is_ok()) else {
        return c.to_string();
    };
    let held = match &fraction {
        Some(t) => format!("`{}`, the time {t} as a fraction of a day", c.trim()),
        None => format!("the time `{}`", c.trim()),
    };
    diags.push(
        Diagnostic::warning(loc.clone(), format!("the cell holds {held}: read as the ratio {r}"))
            .with_help("the spreadsheet app turned the typed ratio into a time of day; format the ratio column as Text (or type '16:9) so it stays a ratio"),
    );
    r
}

/// Whether a text is a date as a spreadsheet shows or exports one: three numbers joined by `/`,
/// `-` or `.` (`9/16/2024`, `2024-09-16`, `16.09.2024`), or a day and a month's name
/// (`16-Sep`, `Sep-16`, `16-Sep-2024`), a time after it allowed (`2024-09-16 00:00:00`).
fn looks_like_date(s: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let date = s.trim().split(' ').next().unwrap_or_default();
    let number = |p: &str| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let month = |p: &str| {
        let p = p.to_ascii_lowercase();
        p.len() >= 3 && MONTHS.iter().any(|m| m.starts_with(&p))
    };
    let numeric = ['/', '-', '.'].into_iter().any(|sep| {
        let parts: Vec<&str> = date.split(sep).collect();
        parts.len() == 3 && parts.iter().all(|p| number(p))
    });
    let parts: Vec<&str> = date.split('-').collect();
    let named = (2..=3).contains(&parts.len())
        && parts.iter().filter(|p| month(p)).count() == 1
        && parts.iter().all(|p| month(p) || number(p));
    numeric || named
}

/// Help for a `ratio` that reads as a date: what a spreadsheet app makes of a ratio typed with
/// `/` (`9/16` becomes the 16th of September). The ratio is not guessed back from the date.
pub(super) fn date_ratio_help(value: &str) -> Option<String> {
    looks_like_date(value).then(|| {
        "this looks like a date that a spreadsheet app made of a ratio typed as 9/16 or 16/9: \
         format the ratio column as Text and type the ratio again as 9:16 or 16:9"
            .to_string()
    })
}

/// Help for an id or file name that a template variable made unsafe by holding a date written
/// with `/` (`2024/03/15`, as Gnumeric's default CSV export writes a date).
pub(super) fn slashed_date_help(tpl: &str, vars: &Vars) -> Option<String> {
    expand::variables(tpl).into_iter().find_map(|v| {
        let val = vars.get(&v)?.trim();
        let parts: Vec<&str> = val.split('/').collect();
        let date = parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        date.then(|| {
            format!(
                "the variable `{v}` holds the date `{val}`, written with `/`: format the {v} column as Text or as YYYY-MM-DD; \
                 an export that writes dates so (Gnumeric's default CSV export) also drops number formats (7 for 007, 0.125 for 12.50%): \
                 export the CSV with the cells as shown"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_written_as_a_fraction_of_a_day_is_that_time() {
        assert_eq!(
            day_fraction_as_time("0.67291666666666666665").as_deref(),
            Some("16:09")
        );
        assert_eq!(day_fraction_as_time("0.16875").as_deref(), Some("4:03"));
        assert_eq!(day_fraction_as_time("0.5").as_deref(), Some("12:00"));
        // not a whole number of minutes, not within a day, not a number
        assert_eq!(day_fraction_as_time("0.672"), None);
        assert_eq!(day_fraction_as_time("1"), None);
        assert_eq!(day_fraction_as_time("16:9"), None);
        assert_eq!(
            time_as_ratio(&day_fraction_as_time("0.16875").unwrap_or_default()).as_deref(),
            Some("4:3")
        );
    }

    #[test]
    fn dates_a_spreadsheet_shows_look_like_dates_and_ratios_do_not() {
        for date in [
            "9/16/2024",
            "16/9/24",
            "2024-09-16",
            "2024-09-16 00:00:00",
            "16.09.2024",
            "16-Sep",
            "Sep-16",
            "16-sep-2024",
            "September-16",
            "16-OCT",
        ] {
            assert!(looks_like_date(date), "{date}");
        }
        for other in [
            "16:9", "9:16", "16:10", "9/16", "adaptive", "16-9", "Se-16", "Sep-Oct", "",
        ] {
            assert!(!looks_like_date(other), "{other}");
        }
    }

    #[test]
    fn a_cell_ending_in_a_wide_character_is_no_time_and_no_panic() {
        // The ratio sign (U+2236) and the ellipsis an app puts for `...` take three bytes.
        for cell in ["16\u{2236}9", "16:9\u{2026}", "\u{20ac}", "9:\u{f631}"] {
            assert_eq!(time_as_ratio(cell), None, "{cell}");
        }
        assert_eq!(time_as_ratio("4:03 PM").as_deref(), Some("16:3"));
    }
}
