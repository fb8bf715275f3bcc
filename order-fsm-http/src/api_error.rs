//! The mapping of core errors onto HTTP answers: the status a client can act on and a
//! JSON body `{"error", "field"}` (plus `"index"` in a batch), the same texts as gRPC's.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use order_fsm::intake::BatchError;
use order_fsm::Error;
use serde_json::json;

use crate::edge::RejectedField;
use crate::strict;
use crate::RETRY_AFTER_MS;

/// An error as JSON, with the status a client can act on; `index` names the purchase of a
/// batch it is about, `event` the event being applied.
pub(crate) struct ApiError {
    /// Boxed: handlers return `Result<_, ApiError>` on every path.
    pub(crate) error: Box<Error>,
    pub(crate) index: Option<usize>,
    pub(crate) event: Option<String>,
    /// Overrides the status the error maps to (`415` for a body that is not JSON).
    pub(crate) status: Option<StatusCode>,
    /// The field at fault as a path in the body, when the error itself does not name it.
    pub(crate) field_path: Option<String>,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self {
            error: Box::new(error),
            index: None,
            event: None,
            status: None,
            field_path: None,
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(BatchError { index, error, .. }: BatchError) -> Self {
        Self {
            index,
            ..Self::from(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or(match &*self.error {
            Error::InvalidField { .. } | Error::Decode { .. } | Error::UnknownEvent { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::IllegalTransition { .. }
            | Error::Terminal { .. }
            | Error::StaleVersion { .. }
            | Error::AlreadyRejected { .. }
            | Error::Duplicate { .. }
            | Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::IdempotencyKeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable { .. } | Error::Closed(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NotYetVisible { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        });
        // Back-pressure: `Retry-After` in whole seconds (at least 1), and in milliseconds.
        let retry_after = match &*self.error {
            Error::Overloaded { retry_after, .. } | Error::NotYetVisible { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        };
        let field = match &*self.error {
            Error::InvalidField { field, .. } => Some(*field),
            Error::UnknownEvent { .. } => Some("event"),
            Error::IdempotencyKeyReused { .. } => Some("idempotency_key"),
            _ => None,
        };
        let field = self.field_path.or(field.map(str::to_owned));
        let message = strict::bounded(order_fsm::intake::message(
            &self.error,
            self.event.as_deref(),
        ));
        let body = match self.index {
            Some(index) => json!({
                "error": format!("orders[{index}]: {message}"),
                "field": field,
                "index": index,
            }),
            None => json!({ "error": message, "field": field }),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(field) = field {
            response.extensions_mut().insert(RejectedField(field));
        }
        if let Some(wait) = retry_after {
            let headers = response.headers_mut();
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, seconds.into());
            headers.insert(RETRY_AFTER_MS, (wait.as_millis() as u64).into());
        }
        response
    }
}
