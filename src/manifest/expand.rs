//! Expansion helpers: `{var}` templates, the cartesian product of a `matrix`, and the safety
//! rules of job ids and file names.

/// The most jobs one `matrix` may expand to.
pub const MAX_MATRIX: usize = 100_000;
/// The most times one job may be repeated.
pub const MAX_REPEAT: i64 = 1000;
/// The longest id or file name, in bytes.
pub const MAX_NAME_LEN: usize = 120;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// Variables used but not defined (in order of use, without repeats).
    Unknown(Vec<String>),
}

fn is_var_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Renders `{name}` placeholders with `lookup`. `{{` and `}}` stand for literal braces; braces
/// around anything that is not a variable name are kept as they are.
pub fn render<'a>(tpl: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> Result<String, TemplateError> {
    if !tpl.contains(['{', '}']) {
        return Ok(tpl.to_string());
    }
    let mut out = String::with_capacity(tpl.len() + 16);
    let mut unknown: Vec<String> = Vec::new();
    let mut rest = tpl;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('{')
            && let Some(end) = tail[1..].find('}')
        {
            let name = &tail[1..1 + end];
            if !name.is_empty() && name.chars().all(is_var_char) {
                match lookup(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        if !unknown.iter().any(|u| u == name) {
                            unknown.push(name.to_string());
                        }
                    }
                }
                rest = &tail[end + 2..];
                continue;
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(TemplateError::Unknown(unknown))
    }
}

/// The variable names a template uses.
pub fn variables(tpl: &str) -> Vec<String> {
    match render(tpl, |_| None) {
        Err(TemplateError::Unknown(names)) => names,
        Ok(_) => Vec::new(),
    }
}

/// Every combination of one value per axis (the first axis varies slowest), or `None` when
/// there would be more than [`MAX_MATRIX`].
pub fn cartesian(axes: &[usize]) -> Option<Vec<Vec<usize>>> {
    let total = axes.iter().try_fold(1usize, |acc, n| acc.checked_mul(*n))?;
    if total > MAX_MATRIX {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    for mut k in 0..total {
        let mut combo = vec![0; axes.len()];
        for (i, n) in axes.iter().enumerate().rev() {
            combo[i] = k % n;
            k /= n;
        }
        out.push(combo);
    }
    Some(out)
}

const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
    "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Checks that an id or file name is safe as a file stem on every platform: not empty, at most
/// [`MAX_NAME_LEN`] bytes, no path separators, no `..`, no leading dot, no control characters,
/// none of `<>:"|?*`, no trailing dot or space, and not a reserved device name (CON, NUL, ...).
/// Returns what is allowed when it is not.
pub fn check_safe_name(s: &str) -> Result<(), String> {
    let rule = "1..120 bytes without / \\ < > : \" | ? * or control characters, not starting with `.`, \
                not ending with `.` or a space, not a reserved name (CON, NUL, COM1, ...)";
    let bad = s.is_empty()
        || s.len() > MAX_NAME_LEN
        || s.starts_with('.')
        || s.ends_with('.')
        || s.ends_with(' ')
        || s.contains("..")
        || s.chars().any(|c| c.is_control() || "/\\<>:\"|?*".contains(c));
    if bad {
        return Err(rule.into());
    }
    let stem = s.split('.').next().unwrap_or(s).trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err(rule.into());
    }
    Ok(())
}

/// What makes an id or file name unsafe (see [`check_safe_name`]), in a few words: the first
/// character not allowed, else the rule broken.
pub fn why_unsafe(s: &str) -> Option<String> {
    if let Some(c) = s.chars().find(|c| c.is_control() || "/\\<>:\"|?*".contains(*c)) {
        return Some(if c.is_control() {
            format!("the control character U+{:04X}", c as u32)
        } else {
            format!("the character `{c}`")
        });
    }
    check_safe_name(s).err().map(|_| {
        if s.is_empty() {
            "nothing".to_string()
        } else if s.len() > MAX_NAME_LEN {
            format!("{} bytes", s.len())
        } else if s.starts_with('.') || s.ends_with('.') || s.ends_with(' ') || s.contains("..") {
            "a leading or trailing dot or space, or `..`".to_string()
        } else {
            "a reserved device name".to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<&'static str> {
        match name {
            "animal" => Some("fox"),
            "place" => Some("forest"),
            _ => None,
        }
    }

    #[test]
    fn renders_variables_and_escapes() {
        assert_eq!(render("{animal}-{place}", vars).as_deref(), Ok("fox-forest"));
        assert_eq!(
            render("{{animal}} {x y} {", vars).as_deref(),
            Ok("{animal} {x y} {")
        );
        assert_eq!(render("plain", vars).as_deref(), Ok("plain"));
    }

    #[test]
    fn unknown_variables_are_listed_once() {
        assert_eq!(
            render("{animal} {color} {color} {size}", vars),
            Err(TemplateError::Unknown(vec!["color".into(), "size".into()]))
        );
        assert_eq!(variables("{a}-{b}"), ["a", "b"]);
    }

    #[test]
    fn cartesian_product() {
        assert_eq!(
            cartesian(&[2, 2]),
            Some(vec![vec![0, 0], vec![0, 1], vec![1, 0], vec![1, 1]])
        );
        assert_eq!(cartesian(&[]), Some(vec![vec![]]));
        assert_eq!(cartesian(&[1000, 1000]), None);
        assert_eq!(cartesian(&[usize::MAX, 3]), None);
    }

    #[test]
    fn safe_names() {
        for ok in ["cat-surf", "fox_forest.v2", "j-0123456789ab", "Ünïcode"] {
            assert!(check_safe_name(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(121);
        assert_eq!(why_unsafe("cat-5s-16:9").as_deref(), Some("the character `:`"));
        assert_eq!(why_unsafe("CON").as_deref(), Some("a reserved device name"));
        assert_eq!(why_unsafe("ok"), None);
        for bad in [
            "", "a/b", "a\\b", "..", "../x", ".hidden", "CON", "nul.txt", "com1", "a\nb", "x.", "a:b", &long,
        ] {
            assert!(check_safe_name(bad).is_err(), "{bad:?}");
        }
    }
}
