//! What a manifest becomes: the main structures here are [`Plan`] and its [`Job`]s.

use std::path::PathBuf;

use serde::Serialize;

use super::canonical;
use crate::api::CreateRequest;

use super::RunSection;
use super::diag::{Diagnostic, SourceLocation};

/// One input file and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    /// The path as given (rows files joined to their manifest's folder).
    pub path: PathBuf,
    /// sha256 hex of the file's bytes.
    pub sha256: String,
}

/// One video to generate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Stable id: the manifest's own (rendered), else `j-` + 12 hex of the request's sha256,
    /// with `-N` appended for `repeat`.
    pub id: String,
    /// Safe file stem of the outputs (`videos/NAME.mp4`); the id unless `name` is set.
    pub name: String,
    /// The request to send.
    pub request: CreateRequest,
    /// Where the job was written.
    pub source: SourceLocation,
    /// Estimated tokens ([`estimate`](super::estimate)), `None` when unknown.
    pub estimated_tokens: Option<u64>,
    /// The jobs this one refers to with `job://ID` ([`refs`](super::refs)), in content order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// Where each item of `request.content` was written.
    #[serde(skip)]
    pub content_locs: Vec<SourceLocation>,
    /// For a job of a chain: a sha256 over its request and those of every job it refers to,
    /// directly or not ([`refs::link`](super::refs::link)).
    #[serde(skip)]
    pub chain_fingerprint: Option<String>,
    /// For a job of a chain: the id of the chain's root, which places the whole chain in one
    /// `--shard`.
    #[serde(skip)]
    pub chain_root: Option<String>,
}

impl Job {
    /// The job's identity: sha256 hex of the canonical request JSON, covering the requests of
    /// the jobs it refers to (so editing shot 1 changes shot 2's fingerprint too).
    pub fn fingerprint(&self) -> String {
        self.chain_fingerprint
            .clone()
            .unwrap_or_else(|| canonical::fingerprint(&self.request))
    }

    /// The key that places the job in a `--shard`: its chain's root, else its own id.
    pub fn shard_key(&self) -> &str {
        self.chain_root.as_deref().unwrap_or(&self.id)
    }

    /// The video's path inside the output directory.
    pub fn output_file(&self) -> String {
        crate::outdir::video_file(&self.name)
    }
}

/// Everything the manifests describe, validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The jobs, in manifest order.
    pub jobs: Vec<Job>,
    /// The files read.
    pub sources: Vec<SourceFile>,
    /// Warnings (unknown models, ...).
    pub warnings: Vec<Diagnostic>,
    /// The merged `run:` sections (the first manifest setting a key wins).
    pub run: RunSection,
}

impl Plan {
    /// Sum of the estimates, or `None` if any job's estimate is unknown.
    pub fn total_tokens(&self) -> Option<u64> {
        self.jobs
            .iter()
            .try_fold(0u64, |acc, j| j.estimated_tokens.map(|t| acc.saturating_add(t)))
    }
}

/// The top-level keys of a YAML manifest (keys starting with `x-` are also allowed, to hold
/// anchors).
pub const TOP_KEYS: &[&str] = &["version", "defaults", "rows", "jobs", "run"];
