//! The typed client of the AllToken Videos API: request and response types, the client of the
//! five endpoints, and the one error type every failure is classified into.

mod client;
mod error;
mod scrub;
mod types;
mod values;

pub use client::{
    ApiKey, Client, ClientConfig, DEFAULT_BASE_URL, Endpoint, IdempotencyKey, describe, http_client,
    is_refused_url,
};
pub use error::{ApiError, server_wait};
pub use scrub::{REDACTED, Scrubber};
pub use types::{
    ContentItem, ContentRole, CreateRequest, DraftTaskRef, ErrorCode, ErrorDetail, JOB_SCHEME, ListQuery,
    MediaUrl, Model, ModelList, Task, TaskError, TaskList, TaskStatus, Timestamp, Tool, Usage,
};
pub use values::{Ratio, Resolution, ServiceTier};
