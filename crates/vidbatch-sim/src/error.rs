//! The API's error answer: the main structure here is [`ApiError`], rendered as the real error body.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

/// An error answer (boxed, so that `Result`s stay small); see [`ErrorDetail`].
#[derive(Debug, Clone)]
pub(crate) struct ApiError(Box<ErrorDetail>);

impl std::ops::Deref for ApiError {
    type Target = ErrorDetail;
    fn deref(&self) -> &ErrorDetail {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorDetail {
        &mut self.0
    }
}

/// What an error answer says: status, `code` (a string, or sometimes a number like the real API), message, `param`, `task_id`, extra headers.
#[derive(Debug, Clone)]
pub(crate) struct ErrorDetail {
    pub status: StatusCode,
    pub code: Value,
    pub message: String,
    pub param: Option<String>,
    pub task_id: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a string code.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError(Box::new(ErrorDetail {
            status,
            code: Value::from(code),
            message: message.into(),
            param: None,
            task_id: None,
            headers: Vec::new(),
        }))
    }

    /// 400 `invalid_request` naming the offending field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with_param(param)
    }

    /// 400 `upstream_invalid_parameter` naming the offending field (a rule of the upstream model).
    pub fn upstream_invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "upstream_invalid_parameter", message).with_param(param)
    }

    /// 404 `not_found` for a task id.
    pub fn task_not_found(id: &str) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, "not_found", format!("task {id} not found"));
        e.task_id = Some(id.to_string());
        e
    }

    /// Set `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The `type` field, derived from the status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            404 => "not_found_error",
            409 => "conflict_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    /// The JSON error body with this request id.
    pub fn body(&self, request_id: &str) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "type": self.kind(),
                "request_id": request_id,
                "task_id": self.task_id,
            }
        })
    }
}
