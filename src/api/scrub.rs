//! Secrets out of server text: the main structure here is [`Scrubber`].
//!
//! Any text a server sends (error bodies, messages, a proxy's page that echoes the request) is
//! scrubbed where it enters vidbatch, before it can be logged, journaled or reported: the API
//! key (as sent, percent-encoded or HTML-escaped), and the value of any `Authorization` header or
//! `Bearer` token, whoever's it is, become `[REDACTED]`.

use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest key scrubbed by exact match: shorter "keys" (tests, typos) would blank ordinary words.
const MIN_SECRET_LEN: usize = 6;

/// Scrubs secrets out of server text. Cheap to clone; holds the key's forms to look for.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber of `key` (in the forms a server may echo it) and of every
    /// `Authorization`/`Bearer` value.
    pub fn new(key: &str) -> Scrubber {
        let key = key.trim();
        let mut secrets = Vec::new();
        if key.len() >= MIN_SECRET_LEN {
            let forms = [key.to_string(), percent_encode(key), html_escape(key)];
            for f in forms {
                if !secrets.contains(&f) {
                    secrets.push(f);
                }
            }
        }
        // Longest first, so a form that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber { secrets }
    }

    /// `text` with the key and every `Authorization`/`Bearer` value replaced by `[REDACTED]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        let lower = out.to_ascii_lowercase();
        if !lower.contains("bearer") && !lower.contains("authorization") {
            return out;
        }
        let cuts = header_values(&out, &lower);
        if cuts.is_empty() {
            return out;
        }
        let mut s = String::with_capacity(out.len());
        let mut at = 0;
        for (a, b) in cuts {
            s.push_str(&out[at..a]);
            s.push_str(REDACTED);
            at = b;
        }
        s.push_str(&out[at..]);
        Cow::Owned(s)
    }

    /// Bytes of a server's body, scrubbed when they are text holding a secret; bytes that are
    /// not UTF-8 are returned as they are (they are only ever shown through [`Scrubber::scrub`]).
    pub fn scrub_bytes<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        match std::str::from_utf8(body) {
            Ok(text) => match self.scrub(text) {
                Cow::Borrowed(_) => Cow::Borrowed(body),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            Err(_) => Cow::Borrowed(body),
        }
    }
}

/// Byte ranges of `text` that hold the value of an `Authorization` header or a `Bearer` token,
/// sorted and not overlapping. `lower` is `text` in ASCII lower case (same offsets).
fn header_values(text: &str, lower: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    // `Authorization` followed by separators (`:`, `=`, quotes, spaces, HTML tags), then the
    // value up to the end of the field.
    for (i, _) in lower.match_indices("authorization") {
        let mut j = i + "authorization".len();
        let mut budget = 256;
        while j < b.len() && budget > 0 {
            match b[j] {
                b' ' | b'\t' | b':' | b'=' | b'"' | b'\'' => j += 1,
                b'<' => match b[j..].iter().position(|&c| c == b'>') {
                    Some(p) => j += p + 1,
                    None => break,
                },
                b'\\' if b.get(j + 1) == Some(&b'"') => j += 2,
                _ => break,
            }
            budget -= 1;
        }
        let end = j + b[j..]
            .iter()
            .position(|&c| {
                matches!(
                    c,
                    b'"' | b'\'' | b'<' | b'\r' | b'\n' | b',' | b';' | b'}' | b'\\' | b'&'
                )
            })
            .unwrap_or(b.len() - j);
        if end > j && !text[j..end].starts_with(REDACTED) {
            cuts.push((j, end));
        }
    }
    // `Bearer` followed by spaces and a token.
    for (i, _) in lower.match_indices("bearer") {
        let mut j = i + "bearer".len();
        let spaces = b[j..].iter().take_while(|&&c| c == b' ' || c == b'\t').count();
        if spaces == 0 {
            continue;
        }
        j += spaces;
        let len = b[j..]
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || b"-._~+/=".contains(&c))
            .count();
        if len > 0 {
            cuts.push((j, j + len));
        }
    }
    cuts.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(cuts.len());
    for (a, e) in cuts {
        match merged.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(e),
            _ => merged.push((a, e)),
        }
    }
    merged
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-Secret+Key/42";

    #[test]
    fn the_key_in_any_echoed_form_and_auth_values_are_redacted() {
        let s = Scrubber::new(KEY);
        for text in [
            format!("<tr><td>Authorization</td><td>Bearer {KEY}</td></tr>"),
            format!("authorization: Basic dXNlcjpwYXNz\r\nx-api-key: {KEY}\r\n"),
            format!("{{\"headers\":{{\"Authorization\":\"Bearer {KEY}\"}}}}"),
            format!("key={}", percent_encode(KEY)),
            format!("the key {KEY} is wrong"),
            "Proxy-Authorization: Bearer someone-elses-token".to_string(),
        ] {
            let out = s.scrub(&text);
            assert!(!out.contains(KEY), "{out}");
            assert!(!out.contains("Secret"), "{out}");
            assert!(!out.contains("dXNlcjpwYXNz"), "{out}");
            assert!(!out.contains("someone-elses-token"), "{out}");
            assert!(out.contains(REDACTED), "{out}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone_and_json_stays_json() {
        let s = Scrubber::new(KEY);
        let text = r#"{"error":{"code":"invalid_request","message":"ratio must be 16:9"}}"#;
        assert!(matches!(s.scrub(text), Cow::Borrowed(_)));
        let echoed =
            format!(r#"{{"error":{{"code":"x","message":"got Authorization: Bearer {KEY}, bearer"}}}}"#);
        let out = s.scrub(&echoed);
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert!(!v.to_string().contains("Secret"));
        assert_eq!(
            s.scrub("the bearer of bad news"),
            "the bearer [REDACTED] bad news"
        );
    }

    #[test]
    fn any_text_scrubs_without_panicking() {
        let s = Scrubber::new(KEY);
        let text = format!("ä Authorization<é Bearer \u{1F408} {KEY} authorization:\"\\\"");
        for (i, _) in text.char_indices() {
            let _ = s.scrub(&text[..i]);
            let _ = s.scrub(&text[i..]);
        }
    }
}
