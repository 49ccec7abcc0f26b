//! The types that describe a YAML manifest for JSON Schema (`schemas/manifest.schema.json`);
//! the reader itself works on located nodes, and a test keeps both in step.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::run::RunSection;
use crate::api::{ContentItem, Ratio, Resolution, ServiceTier, Tool};

/// A vidbatch manifest: defaults, jobs, rows from a sheet, and run settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "vidbatch manifest")]
#[schemars(extend("patternProperties" = {"^x-": {"description": "Free space, e.g. for YAML anchors."}}))]
pub struct ManifestSchema {
    /// Format version; only 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Job fields applied to every job and row that does not set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<JobFields>,
    /// A CSV/XLSX/ODS file (path relative to this manifest), one job per row; or several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowsSpec>,
    /// The jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<JobFields>>,
    /// Run settings (flags and environment variables override them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSection>,
}

/// Where rows come from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RowsSpec {
    /// A path.
    Path(String),
    /// A path with options.
    Table(RowsTable),
    /// Several files.
    List(Vec<RowsItem>),
}

/// One rows file of a list.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RowsItem {
    /// A path.
    Path(String),
    /// A path with options.
    Table(RowsTable),
}

/// A rows file with options.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowsTable {
    /// Path relative to the manifest.
    pub path: String,
    /// Sheet name of a workbook (default: the first sheet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// CSV delimiter: `,`, `;` or `tab` (default: detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
}

/// One URL or a list of URLs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One URL.
    One(String),
    /// Several URLs.
    Many(Vec<String>),
}

/// A scalar value of a matrix axis.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
}

/// A job: the API's request fields by their API names, content shorthands, and `id`, `name`,
/// `matrix`, `repeat`. Text fields may use `{variable}` templates.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("patternProperties" = {"^<<$": {"description": "YAML merge key."}}))]
pub struct JobFields {
    /// Video model id, e.g. `seedance-1.5-pro`, `seedance-2.0`, `seedance-2.0-fast`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Text description of the desired video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Multimodal inputs as the API takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ContentItem>>,
    /// Aspect ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
    /// Seconds: 4..12 on seedance-1.5-pro, 4..15 on the 2.0 models; -1 lets the model decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// Resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Frame count, 29..289 of the form 25+4n (seedance-1.0 models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<i64>,
    /// Generate a matching audio track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_audio: Option<bool>,
    /// Set when content includes a video (set automatically for `reference_video`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_has_video: Option<bool>,
    /// Random seed, -1..4294967295.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Lock the camera (not on the 2.0 models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_fixed: Option<bool>,
    /// Add a watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<bool>,
    /// https/http URL called when the task completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Also save the last frame (`videos/NAME.last.png`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_last_frame: Option<bool>,
    /// Service tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// Execution expiry window in seconds, 3600..259200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_expires_after: Option<i64>,
    /// Create or use a draft task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    /// Tools, e.g. `[{type: web_search}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Stable safety identifier, at most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// Job id, unique after expansion; may use `{variables}`. Default: `j-` + 12 hex chars of
    /// the sha256 of the canonical request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// File name template of the outputs (`videos/NAME.mp4`); may use `{variables}` and `{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Variables and their values: one job per combination. A variable named like a job field
    /// also sets that field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<BTreeMap<String, Vec<Scalar>>>,
    /// Several takes of the job (ids get `-1`, `-2`, ...), 1..1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// First-frame image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_frame: Option<String>,
    /// Last-frame image URL (with a first frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_frame: Option<String>,
    /// Reference image URL(s); `asset://` on the 2.0 models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_image: Option<OneOrMany>,
    /// Reference video URL(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_video: Option<OneOrMany>,
    /// Reference audio URL(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_audio: Option<OneOrMany>,
    /// Id of a draft task to turn into the final video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_task: Option<String>,
}

/// The JSON Schema (2020-12) of a YAML manifest, as pretty JSON with a final newline.
pub fn manifest_schema() -> String {
    let schema = schemars::schema_for!(ManifestSchema);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("properties").keys().cloned().collect();
        k.sort();
        k
    }

    fn sorted<'a>(k: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut k: Vec<String> = k.into_iter().map(str::to_string).collect();
        k.sort();
        k
    }

    #[test]
    fn the_schema_the_job_keys_and_the_request_name_the_same_fields() {
        let v: serde_json::Value = serde_json::from_str(&manifest_schema()).expect("json");
        let job = &v["$defs"]["JobFields"]["properties"];
        assert_eq!(keys(job), sorted(super::super::fields::job_keys()));
        let run = &v["$defs"]["RunSection"]["properties"];
        assert_eq!(keys(run), sorted(super::super::run::RUN_KEYS.iter().copied()));
        // The API's request fields are the request type's fields, and each is a job key.
        let request = serde_json::to_value(schemars::schema_for!(crate::api::CreateRequest)).expect("schema");
        let api = sorted(super::super::fields::API_FIELDS.iter().copied());
        assert_eq!(keys(&request["properties"]), api);
        assert!(api.iter().all(|f| job.get(f).is_some()), "{api:?}");
    }
}
