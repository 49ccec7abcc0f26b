//! The canonical JSON of a request (keys sorted, no whitespace) and its sha256, a job's
//! identity: the main function here is [`fingerprint`].

use std::cell::RefCell;

use sha2::{Digest, Sha256};

use crate::api::{
    ContentItem, ContentRole, CreateRequest, DraftTaskRef, MediaUrl, Ratio, Resolution, ServiceTier, Tool,
};
use crate::hex::hex;

/// Appends the canonical JSON of a request to `buf`: keys sorted at every level, no spaces,
/// unset fields left out (the same text as serializing the request to a `serde_json::Value`
/// and printing it).
///
/// Written by hand for speed; the exhaustive destructuring below makes a new field of
/// [`CreateRequest`] a compile error here, and a test compares with the generic path.
pub fn write_canonical(req: &CreateRequest, buf: &mut String) {
    let CreateRequest {
        model,
        prompt,
        content,
        ratio,
        duration,
        resolution,
        frames,
        generate_audio,
        input_has_video,
        seed,
        camera_fixed,
        watermark,
        callback_url,
        return_last_frame,
        service_tier,
        execution_expires_after,
        draft,
        tools,
        safety_identifier,
    } = req;
    let mut w = Canon { buf, first: true };
    w.buf.push('{');
    w.opt_str("callback_url", callback_url.as_deref());
    w.opt_bool("camera_fixed", *camera_fixed);
    if !content.is_empty() {
        w.key("content");
        w.buf.push('[');
        for (i, item) in content.iter().enumerate() {
            if i > 0 {
                w.buf.push(',');
            }
            w.content(item);
        }
        w.buf.push(']');
    }
    w.opt_bool("draft", *draft);
    w.opt_int("duration", *duration);
    w.opt_int("execution_expires_after", *execution_expires_after);
    w.opt_int("frames", *frames);
    w.opt_bool("generate_audio", *generate_audio);
    w.opt_bool("input_has_video", *input_has_video);
    w.opt_str("model", Some(model));
    w.opt_str("prompt", Some(prompt));
    w.opt_str("ratio", ratio.map(Ratio::as_str));
    w.opt_str("resolution", resolution.map(Resolution::as_str));
    w.opt_bool("return_last_frame", *return_last_frame);
    w.opt_str("safety_identifier", safety_identifier.as_deref());
    w.opt_int("seed", *seed);
    w.opt_str("service_tier", service_tier.map(ServiceTier::as_str));
    if let Some(tools) = tools {
        w.key("tools");
        w.buf.push('[');
        for (i, Tool { kind }) in tools.iter().enumerate() {
            if i > 0 {
                w.buf.push(',');
            }
            w.buf.push('{');
            w.first = true;
            w.opt_str("type", Some(kind));
            w.buf.push('}');
        }
        w.buf.push(']');
        w.first = false;
    }
    w.opt_bool("watermark", *watermark);
    w.buf.push('}');
}

/// A writer of canonical JSON objects.
struct Canon<'b> {
    buf: &'b mut String,
    first: bool,
}

impl Canon<'_> {
    fn string(&mut self, s: &str) {
        self.buf.push('"');
        for c in s.chars() {
            match c {
                '"' => self.buf.push_str("\\\""),
                '\\' => self.buf.push_str("\\\\"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                '\t' => self.buf.push_str("\\t"),
                '\u{8}' => self.buf.push_str("\\b"),
                '\u{c}' => self.buf.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    use std::fmt::Write as _;
                    let _ = write!(self.buf, "\\u{:04x}", c as u32);
                }
                c => self.buf.push(c),
            }
        }
        self.buf.push('"');
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        self.string(k);
        self.buf.push(':');
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.key(k);
            self.string(v);
        }
    }

    fn opt_int(&mut self, k: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.key(k);
            use std::fmt::Write as _;
            let _ = write!(self.buf, "{v}");
        }
    }

    fn opt_bool(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.key(k);
            self.buf.push_str(if v { "true" } else { "false" });
        }
    }

    fn media(&mut self, key: &str, inner_key: &str, inner: &str) {
        self.key(key);
        self.buf.push('{');
        self.first = true;
        self.opt_str(inner_key, Some(inner));
        self.buf.push('}');
        self.first = false;
    }

    fn content(&mut self, item: &ContentItem) {
        let (key, inner_key, inner, role, kind) = match item {
            ContentItem::ImageUrl {
                image_url: MediaUrl { url },
                role,
            } => ("image_url", "url", url, role, "image_url"),
            ContentItem::VideoUrl {
                video_url: MediaUrl { url },
                role,
            } => ("video_url", "url", url, role, "video_url"),
            ContentItem::AudioUrl {
                audio_url: MediaUrl { url },
                role,
            } => ("audio_url", "url", url, role, "audio_url"),
            ContentItem::DraftTask {
                draft_task: DraftTaskRef { id },
                role,
            } => ("draft_task", "id", id, role, "draft_task"),
        };
        let outer_first = self.first;
        self.buf.push('{');
        self.first = true;
        let role = role.map(|r| match r {
            ContentRole::FirstFrame => "first_frame",
            ContentRole::LastFrame => "last_frame",
            ContentRole::ReferenceImage => "reference_image",
            ContentRole::ReferenceVideo => "reference_video",
            ContentRole::ReferenceAudio => "reference_audio",
        });
        // keys in sorted order: the media key sorts before `role` except `video_url`
        let media_last = key > "type";
        if !media_last {
            self.media(key, inner_key, inner);
        }
        self.opt_str("role", role);
        self.opt_str("type", Some(kind));
        if media_last {
            self.media(key, inner_key, inner);
        }
        self.buf.push('}');
        self.first = outer_first;
    }
}

/// The sha256 (hex) of a request's canonical JSON.
pub fn fingerprint(req: &CreateRequest) -> String {
    thread_local! {
        static BUF: RefCell<String> = RefCell::new(String::with_capacity(1024));
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        write_canonical(req, &mut b);
        hex(&Sha256::digest(b.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical_json(req: &CreateRequest) -> String {
        let mut buf = String::new();
        write_canonical(req, &mut buf);
        buf
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let r = CreateRequest {
            model: "m".into(),
            prompt: "p".into(),
            duration: Some(5),
            ..Default::default()
        };
        assert_eq!(canonical_json(&r), r#"{"duration":5,"model":"m","prompt":"p"}"#);
        let mut r2 = r.clone();
        r2.content = vec![ContentItem::ImageUrl {
            image_url: MediaUrl { url: "u".into() },
            role: Some(ContentRole::FirstFrame),
        }];
        assert_eq!(
            canonical_json(&r2),
            r#"{"content":[{"image_url":{"url":"u"},"role":"first_frame","type":"image_url"}],"duration":5,"model":"m","prompt":"p"}"#
        );
    }
    #[test]
    fn canonical_json_matches_the_generic_sorted_serialization() {
        let media = |u: &str| MediaUrl { url: u.into() };
        let full = CreateRequest {
            model: "m\"q".into(),
            prompt: "p\n\u{1}é\\".into(),
            content: vec![
                ContentItem::ImageUrl {
                    image_url: media("https://a"),
                    role: Some(ContentRole::FirstFrame),
                },
                ContentItem::VideoUrl {
                    video_url: media("https://v"),
                    role: Some(ContentRole::ReferenceVideo),
                },
                ContentItem::AudioUrl {
                    audio_url: media("https://s"),
                    role: None,
                },
                ContentItem::DraftTask {
                    draft_task: DraftTaskRef { id: "vgen_1".into() },
                    role: Some(ContentRole::LastFrame),
                },
            ],
            ratio: Some(Ratio::Landscape),
            duration: Some(-1),
            resolution: Some(Resolution::P720),
            frames: Some(29),
            generate_audio: Some(true),
            input_has_video: Some(false),
            seed: Some(4_294_967_295),
            camera_fixed: Some(false),
            watermark: Some(true),
            callback_url: Some("https://cb".into()),
            return_last_frame: Some(true),
            service_tier: Some(ServiceTier::Flex),
            execution_expires_after: Some(3600),
            draft: Some(false),
            tools: Some(vec![
                Tool {
                    kind: "web_search".into(),
                },
                Tool { kind: "x".into() },
            ]),
            safety_identifier: Some("s".into()),
        };
        fn sorted(v: &serde_json::Value) -> String {
            match v {
                serde_json::Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    let parts: Vec<String> = keys
                        .into_iter()
                        .map(|k| format!("{}:{}", serde_json::Value::String(k.clone()), sorted(&m[k])))
                        .collect();
                    format!("{{{}}}", parts.join(","))
                }
                serde_json::Value::Array(a) => {
                    format!("[{}]", a.iter().map(sorted).collect::<Vec<_>>().join(","))
                }
                other => other.to_string(),
            }
        }
        for r in [
            full.clone(),
            CreateRequest::default(),
            CreateRequest {
                tools: Some(vec![]),
                ..full
            },
        ] {
            let generic = sorted(&serde_json::to_value(&r).expect("value"));
            assert_eq!(canonical_json(&r), generic);
            assert_eq!(fingerprint(&r).len(), 64);
        }
    }
}
