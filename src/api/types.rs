//! Request and response types of the Videos API; the main structures here are [`CreateRequest`] and [`Task`].
//!
//! Requests serialize only the fields that are set. Responses are read leniently: unknown
//! fields are ignored, `succeeded` means [`TaskStatus::Completed`], an unknown status is kept
//! as [`TaskStatus::Other`], lists come as `items` or `data`, and error codes may be strings
//! or numbers.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use super::values::{Ratio, Resolution, ServiceTier};
use time::format_description::well_known::Rfc3339;

/// The body of `POST /videos/generations`, every field by its API name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Video model id, e.g. `seedance-1.5-pro`.
    pub model: String,
    /// Text description of the desired video.
    pub prompt: String,
    /// Multimodal inputs: images, videos, audio, draft tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ContentItem>,
    /// Aspect ratio: `16:9`, `9:16`, `4:3`, `3:4`, `21:9`, `1:1` or `adaptive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
    /// Duration in seconds; `-1` lets the model decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// `480p`, `720p` or `1080p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Frame count; takes precedence over `duration` (1.0 models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<i64>,
    /// Generate a matching audio track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_audio: Option<bool>,
    /// Set when the content includes a video reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_has_video: Option<bool>,
    /// Random seed, `-1..=4294967295`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Lock the camera (not on the 2.0 models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_fixed: Option<bool>,
    /// Add a watermark (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<bool>,
    /// URL called when the task completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Return a URL of the last frame, for continuation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_last_frame: Option<bool>,
    /// `default` or `flex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// Execution expiry window in seconds, `3600..=259200`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_expires_after: Option<i64>,
    /// Create or use a draft task where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    /// Tool configuration, e.g. `[{"type": "web_search"}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Stable safety identifier, at most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
}

impl CreateRequest {
    /// Whether vidbatch draws the seed of this request (it sets none, or -1 for "random").
    pub fn draws_seed(&self) -> bool {
        self.seed.is_none_or(|s| s < 0)
    }
}

/// One tool a task may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tool {
    /// Tool type, e.g. `web_search`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The scheme of a reference to another job of the plan: `job://ID` stands for that job's
/// last frame (an image item), its video (a video item) or its task (a draft task item), filled
/// in by the runner once that job is done.
pub const JOB_SCHEME: &str = "job://";

/// One multimodal input of a create request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentItem {
    /// An image: first frame, last frame or reference.
    ImageUrl {
        /// Where the image is.
        image_url: MediaUrl,
        /// How the image is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<ContentRole>,
    },
    /// A reference video.
    VideoUrl {
        /// Where the video is.
        video_url: MediaUrl,
        /// How the video is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<ContentRole>,
    },
    /// A reference audio track.
    AudioUrl {
        /// Where the audio is.
        audio_url: MediaUrl,
        /// How the audio is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<ContentRole>,
    },
    /// A draft task to turn into a final video.
    DraftTask {
        /// The draft task.
        draft_task: DraftTaskRef,
        /// How the draft is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<ContentRole>,
    },
}

impl ContentItem {
    /// The item's role, if it has one.
    pub fn role(&self) -> Option<ContentRole> {
        match self {
            ContentItem::ImageUrl { role, .. }
            | ContentItem::VideoUrl { role, .. }
            | ContentItem::AudioUrl { role, .. }
            | ContentItem::DraftTask { role, .. } => *role,
        }
    }

    /// The URL the item points at (none for a draft task).
    pub fn url(&self) -> Option<&str> {
        match self {
            ContentItem::ImageUrl { image_url: m, .. }
            | ContentItem::VideoUrl { video_url: m, .. }
            | ContentItem::AudioUrl { audio_url: m, .. } => Some(&m.url),
            ContentItem::DraftTask { .. } => None,
        }
    }

    /// The id of the job of the plan the item refers to with a `job://ID` URL or draft task
    /// id (see [`JOB_SCHEME`]), if it does.
    pub fn job_ref(&self) -> Option<&str> {
        match self {
            ContentItem::DraftTask { draft_task, .. } => draft_task.id.strip_prefix(JOB_SCHEME),
            other => other.url().and_then(|u| u.strip_prefix(JOB_SCHEME)),
        }
    }

    /// The API name of the item's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ContentItem::ImageUrl { .. } => "image_url",
            ContentItem::VideoUrl { .. } => "video_url",
            ContentItem::AudioUrl { .. } => "audio_url",
            ContentItem::DraftTask { .. } => "draft_task",
        }
    }
}

/// A URL wrapper as the API nests it: `{"url": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MediaUrl {
    /// `https://`, `http://` or (2.0 models) `asset://` URL.
    pub url: String,
}

/// A reference to a draft task: `{"id": "vgen_..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DraftTaskRef {
    /// The draft task's id.
    pub id: String,
}

/// How a content item is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContentRole {
    /// The video starts from this image.
    FirstFrame,
    /// The video ends on this image.
    LastFrame,
    /// An image to draw from.
    ReferenceImage,
    /// A video to draw from.
    ReferenceVideo,
    /// An audio track to draw from.
    ReferenceAudio,
}

/// A task's status. `succeeded` reads as [`TaskStatus::Completed`]; anything unknown is kept
/// in [`TaskStatus::Other`] and treated as still running.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Waiting for a GPU.
    Queued,
    /// Being generated.
    Processing,
    /// Done; `video_url` is available.
    Completed,
    /// Generation failed; see `error`.
    Failed,
    /// The task or its asset expired.
    Expired,
    /// Cancelled by the user.
    Cancelled,
    /// A status this version does not know.
    Other(String),
}

impl TaskStatus {
    /// The API name of the status.
    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Expired => "expired",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Other(s) => s,
        }
    }

    /// Reads an API status name.
    pub fn parse(s: &str) -> TaskStatus {
        match s {
            "queued" | "pending" => TaskStatus::Queued,
            "processing" | "running" | "in_progress" => TaskStatus::Processing,
            "completed" | "succeeded" | "success" => TaskStatus::Completed,
            "failed" => TaskStatus::Failed,
            "expired" => TaskStatus::Expired,
            "cancelled" | "canceled" => TaskStatus::Cancelled,
            other => TaskStatus::Other(other.to_string()),
        }
    }

    /// Whether the task will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Expired | TaskStatus::Cancelled
        )
    }
}

impl Serialize for TaskStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(TaskStatus::parse(&s))
    }
}

/// A point in time as the API writes it: RFC 3339, or (leniently) Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// RFC 3339 text of the time.
    pub fn to_rfc3339(&self) -> String {
        self.0
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.unix_timestamp().to_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Text(s) => OffsetDateTime::parse(&s, &Rfc3339)
                .map_err(|e| serde::de::Error::custom(format!("bad timestamp {s:?}: {e}")))?,
            Raw::Int(n) => OffsetDateTime::from_unix_timestamp(n).map_err(serde::de::Error::custom)?,
            Raw::Float(f) => OffsetDateTime::from_unix_timestamp_nanos((f * 1e9) as i128)
                .map_err(serde::de::Error::custom)?,
        };
        Ok(Timestamp(parsed))
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// Token usage of a finished task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Tokens of generated output.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Tokens billed in all.
    #[serde(default)]
    pub total_tokens: u64,
}

/// An error code: usually a string, sometimes a number on the wire; kept as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ErrorCode(pub String);

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(ErrorCode(match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        }))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a task failed, as the task reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskError {
    /// Machine-readable code.
    #[serde(default)]
    pub code: ErrorCode,
    /// Human-readable (localized) message.
    #[serde(default)]
    pub message: String,
}

/// A video generation task as `GET /videos/generations/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Task id, like `vgen_...`.
    pub id: String,
    /// Where the task is.
    pub status: TaskStatus,
    /// Model id.
    #[serde(default)]
    pub model: Option<String>,
    /// The prompt, when the server echoes it.
    #[serde(default)]
    pub prompt: Option<String>,
    /// `text`, `image`, ...
    #[serde(default)]
    pub input_type: Option<String>,
    /// Aspect ratio.
    #[serde(default)]
    pub ratio: Option<String>,
    /// Resolution.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Duration in seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Frame count.
    #[serde(default)]
    pub frames: Option<i64>,
    /// Frames per second.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Seed used.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Presigned download URL, when completed.
    #[serde(default)]
    pub video_url: Option<String>,
    /// When `video_url` stops working.
    #[serde(default)]
    pub video_url_expires_at: Option<Timestamp>,
    /// Lifetime of `video_url` in seconds.
    #[serde(default)]
    pub video_url_ttl: Option<f64>,
    /// Presigned URL of the last frame, when asked for.
    #[serde(default)]
    pub last_frame_url: Option<String>,
    /// Whether the task or its asset expired.
    #[serde(default)]
    pub is_expired: Option<bool>,
    /// The draft this task was made from.
    #[serde(default)]
    pub draft_task_id: Option<String>,
    /// `default` or `flex`.
    #[serde(default)]
    pub service_tier: Option<String>,
    /// Why the task failed.
    #[serde(default)]
    pub error: Option<TaskError>,
    /// Tokens billed.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// When the task was created.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// When the task finished.
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
}

/// One page of `GET /videos/generations`, read from `items` or `data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    /// The tasks, newest first.
    #[serde(default, alias = "data")]
    pub items: Vec<Task>,
    /// How many tasks match in all, when the server says.
    #[serde(default)]
    pub total: Option<u64>,
}

/// Query of `GET /videos/generations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListQuery {
    /// Page size, at most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only tasks in this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
}

/// A model the API offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Model id.
    pub id: String,
    /// Always `model`.
    #[serde(default)]
    pub object: Option<String>,
    /// Owner.
    #[serde(default)]
    pub owned_by: Option<String>,
}

/// The answer of `GET /videos/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// The models.
    #[serde(default, alias = "items")]
    pub data: Vec<Model>,
}

/// The detail of an API error body: `{"error": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code (decide on this and the status, never on the message).
    #[serde(default)]
    pub code: ErrorCode,
    /// Localized message.
    #[serde(default)]
    pub message: String,
    /// The request field at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// Error type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Server-side request id, for support.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Task concerned.
    #[serde(default)]
    pub task_id: Option<String>,
}

/// The envelope of an error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_reads_succeeded_unknown_fields_and_numeric_codes() {
        let t: Task = serde_json::from_str(
            r#"{"id":"vgen_1","status":"succeeded","x_new":{"a":1},
                "error":{"code":1234,"message":"m"},"created_at":"2026-04-27T10:00:00Z",
                "usage":{"completion_tokens":5,"total_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!(t.status, TaskStatus::Completed);
        assert_eq!(t.error.unwrap().code.0, "1234");
        assert_eq!(t.usage.unwrap().total_tokens, 5);
        assert!(t.created_at.is_some());
    }

    #[test]
    fn unknown_status_is_kept_and_not_terminal() {
        let t: Task = serde_json::from_str(r#"{"id":"v","status":"warming_up"}"#).unwrap();
        assert_eq!(t.status, TaskStatus::Other("warming_up".into()));
        assert!(!t.status.is_terminal());
    }

    #[test]
    fn list_reads_items_or_data() {
        let a: TaskList =
            serde_json::from_str(r#"{"items":[{"id":"a","status":"queued"}],"total":1}"#).unwrap();
        let b: TaskList = serde_json::from_str(r#"{"data":[{"id":"a","status":"queued"}]}"#).unwrap();
        assert_eq!(a.items, b.items);
        assert_eq!(a.total, Some(1));
    }

    #[test]
    fn create_request_serializes_only_set_fields_and_content_shapes() {
        let req = CreateRequest {
            model: "seedance-1.5-pro".into(),
            prompt: "p".into(),
            content: vec![ContentItem::ImageUrl {
                image_url: MediaUrl {
                    url: "https://x/y.png".into(),
                },
                role: Some(ContentRole::FirstFrame),
            }],
            duration: Some(5),
            ..Default::default()
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"seedance-1.5-pro","prompt":"p","duration":5,
                "content":[{"type":"image_url","image_url":{"url":"https://x/y.png"},"role":"first_frame"}]})
        );
        let draft = ContentItem::DraftTask {
            draft_task: DraftTaskRef { id: "vgen_d".into() },
            role: None,
        };
        assert_eq!(
            serde_json::to_value(&draft).unwrap(),
            serde_json::json!({"type":"draft_task","draft_task":{"id":"vgen_d"}})
        );
    }
}
