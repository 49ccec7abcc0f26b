//! Excel number formats, as far as a manifest needs them: a number shown as its format shows
//! it (`000`, `#,##0`, `0.00`, `0.00%`, literal text around), a date as an ISO date, a time as
//! the format shows it. The main function here is [`show`].

/// How a value is shown: its text, and whether it is a time of day (no date part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The text.
    pub text: String,
    /// Whether the format shows a time of day and no date.
    pub time: bool,
    /// Whether the format shows a date.
    pub date: bool,
}

/// The first section of a format (before an unquoted `;`), without `[...]` blocks (colours,
/// locales, conditions) and with quoted and escaped literals kept as `"..."`.
fn first_section(code: &str) -> String {
    let mut out = String::new();
    let mut chars = code.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            _ if quoted => out.push(c),
            ';' => break,
            '[' => {
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
            }
            '\\' => {
                if let Some(d) = chars.next() {
                    out.push('"');
                    out.push(d);
                    out.push('"');
                }
            }
            '_' | '*' => {
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The format's characters outside quotes, lower-cased.
fn unquoted(code: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in code.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Whether a format shows a date or a time (`y`, `d`, `h`, `s`, or `m` beside them).
pub fn is_date_format(code: &str) -> bool {
    let u = unquoted(&first_section(code));
    u != "general" && u.contains(['y', 'd', 'h', 's'])
}

/// A day number of the 1900 (or 1904) date system as an ISO date.
fn iso_date(days: i64, is_1904: bool) -> Option<String> {
    // 1899-12-30 is Julian day 2415019; the 1900 system counts a 29 February 1900 that never
    // was, so its days before 1 March 1900 are one later.
    let base = if is_1904 { 2_416_481 } else { 2_415_019 };
    let jd = if !is_1904 && days < 61 {
        base + days + 1
    } else {
        base + days
    };
    let d = time::Date::from_julian_day(i32::try_from(jd).ok()?).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

/// Shows `v` in the format `code` (`date_like`: the reader already knows it is a date or time).
pub fn show(v: f64, code: &str, date_like: bool, is_1904: bool) -> Shown {
    let sect = first_section(code);
    let u = unquoted(&sect);
    if (date_like || is_date_format(code)) && (0.0..3.0e6).contains(&v) {
        return show_date(v, &u, is_1904);
    }
    let text = if u.is_empty() || u == "general" || u.contains('e') || u.contains('/') || u.contains('?') {
        general(v)
    } else {
        show_number(v, &sect)
    };
    Shown {
        text,
        time: false,
        date: false,
    }
}

/// A number as the General format shows it: whole numbers without a decimal point.
pub fn general(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        (v as i64).to_string()
    } else {
        v.to_string()
    }
}

fn show_date(v: f64, u: &str, is_1904: bool) -> Shown {
    let mut days = v.floor() as i64;
    let mut secs = ((v - v.floor()) * 86_400.0).round() as i64;
    if secs >= 86_400 {
        days += 1;
        secs -= 86_400;
    }
    let has_date = u.contains(['y', 'd']) || (u.contains('m') && !u.contains(['h', 's']));
    let has_time = u.contains(['h', 's']);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let time = if u.contains("am/pm") || u.contains("a/p") {
        let h12 = if h % 12 == 0 { 12 } else { h % 12 };
        let ampm = if h < 12 { "AM" } else { "PM" };
        let hh = if u.contains("hh") {
            format!("{h12:02}")
        } else {
            h12.to_string()
        };
        if u.contains('s') {
            format!("{hh}:{m:02}:{s:02} {ampm}")
        } else {
            format!("{hh}:{m:02} {ampm}")
        }
    } else {
        let hh = if u.contains("hh") {
            format!("{h:02}")
        } else {
            h.to_string()
        };
        if u.contains('s') {
            format!("{hh}:{m:02}:{s:02}")
        } else {
            format!("{hh}:{m:02}")
        }
    };
    let date = iso_date(days, is_1904);
    let text = match (has_date || !has_time, date) {
        (true, Some(d)) if has_time => format!("{d} {time}"),
        (true, Some(d)) => d,
        (true, None) => general(v),
        (false, _) => time,
    };
    Shown {
        text,
        time: has_time && !has_date,
        date: has_date,
    }
}

/// A number in a format of digit placeholders (`0`, `#`, `?`), `.`, `,` and `%`, with
/// literal text around.
fn show_number(v: f64, sect: &str) -> String {
    // split the section into the literal prefix, the number pattern and the literal suffix
    let mut prefix = String::new();
    let mut pattern = String::new();
    let mut suffix = String::new();
    let mut quoted = false;
    for c in sect.chars() {
        if c == '"' {
            quoted = !quoted;
            continue;
        }
        let placeholder = !quoted && matches!(c, '0' | '#' | '?' | '.' | ',');
        if placeholder && suffix.is_empty() {
            pattern.push(c);
        } else if pattern.is_empty() {
            prefix.push(c);
        } else {
            suffix.push(c);
        }
    }
    let percent = !quoted && (prefix.contains('%') || suffix.contains('%'));
    let v = if percent { v * 100.0 } else { v };
    let (int_pat, frac_pat) = pattern.split_once('.').unwrap_or((pattern.as_str(), ""));
    let decimals = frac_pat.chars().filter(|c| matches!(c, '0' | '#' | '?')).count();
    let min_frac = frac_pat.chars().filter(|c| *c == '0').count();
    let min_int = int_pat.chars().filter(|c| *c == '0').count();
    let grouping = int_pat.trim_end_matches(',').contains(',');
    let scaled = int_pat.len() - int_pat.trim_end_matches(',').len();
    let v = v / 1000f64.powi(scaled as i32);
    let fixed = format!("{:.*}", decimals, v.abs());
    let (int_digits, frac_digits) = fixed.split_once('.').unwrap_or((fixed.as_str(), ""));
    let mut frac = frac_digits.to_string();
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    let mut int = int_digits.trim_start_matches('0').to_string();
    while int.len() < min_int {
        int.insert(0, '0');
    }
    if grouping {
        let digits: Vec<char> = int.chars().collect();
        let mut g = String::new();
        for (i, d) in digits.iter().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                g.push(',');
            }
            g.push(*d);
        }
        int = g;
    }
    let negative = v < 0.0
        && (int
            .chars()
            .chain(frac.chars())
            .any(|c| c.is_ascii_digit() && c != '0'));
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&prefix);
    out.push_str(&int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    out.push_str(&suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: f64, code: &str) -> String {
        show(v, code, false, false).text
    }

    #[test]
    fn numbers_as_shown() {
        assert_eq!(s(7.0, "000"), "007");
        assert_eq!(s(1_234_567.0, "#,##0"), "1,234,567");
        assert_eq!(s(0.125, "0.00%"), "12.50%");
        assert_eq!(s(0.5, "0%"), "50%");
        assert_eq!(s(5.0, "0.0"), "5.0");
        assert_eq!(s(-2.5, "#,##0.00"), "-2.50");
        assert_eq!(s(1.5, "General"), "1.5");
        assert_eq!(s(3.0, "\"take \"0"), "take 3");
        assert_eq!(s(12.0, "[$$-409]#,##0.00"), "12.00");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(s(45366.0, "yyyy-mm-dd"), "2024-03-15");
        assert_eq!(s(45366.0, "m/d/yy"), "2024-03-15");
        let t = show(0.672916666666667, "h:mm", true, false);
        assert_eq!((t.text.as_str(), t.time), ("16:09", true));
        assert_eq!(s(0.672916666666667, "[$-409]hh:mm:ss AM/PM"), "04:09:00 PM");
        assert_eq!(s(45366.5, "yyyy-mm-dd hh:mm"), "2024-03-15 12:00");
        assert_eq!(s(1.0, "yyyy-mm-dd"), "1900-01-01");
        assert_eq!(show(0.0, "yyyy-mm-dd", true, true).text, "1904-01-01");
    }
}
