//! The API's one mapping from errors to HTTP status codes: every handler that can fail returns
//! an [`ApiError`], and only [`ApiError::status`] decides the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was not answered with what it asked for. The message is the body, in plain
/// text; it must not hold anything a caller may not see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (a parameter that does not parse): the caller should fix it.
    #[error("{0}")]
    BadRequest(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request contradicts what is there (an id taken, a deployment finished).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A limit is reached (too many live streams): the caller may try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// flumen cannot do it now (starting, stopping, the log failed, the disk is full): the
    /// caller, or a load balancer, should try again later or elsewhere.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The status code the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), format!("{self}\n")).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_error_is_answered_with_its_status_and_its_message() {
        for (error, status) in [
            (ApiError::BadRequest("bad".into()), StatusCode::BAD_REQUEST),
            (ApiError::NotFound("none".into()), StatusCode::NOT_FOUND),
            (ApiError::Conflict("taken".into()), StatusCode::CONFLICT),
            (
                ApiError::PayloadTooLarge("big".into()),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                ApiError::TooManyRequests("many".into()),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                ApiError::Unavailable("later".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ] {
            let message = error.to_string();
            let response = error.into_response();
            assert_eq!(response.status(), status);
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(body, format!("{message}\n"));
        }
    }
}
