//! The one place where failures become HTTP statuses and stable error codes.
//!
//! Every code is dotted and lowercase, listed in `docs/errors.md`, and never reused for another meaning.

use cairn_accounts::{AccountError, NameError};
use hyper::StatusCode;
use serde_json::json;

/// An error as the API answers it: status, stable code, a sentence, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>, hint: &'static str) -> ApiError {
        ApiError { status, code, message: message.into(), hint }
    }

    /// The JSON body every error has.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "hint": self.hint}})
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "session.required", "You are not logged in, or your session has ended.", "Log in again.")
    }
    pub fn csrf() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "session.csrf_missing", "This change was sent without the page's security token.", "Reload the page and try again; API clients send the csrf_token from the session in the X-CSRF-Token header.")
    }
    pub fn cross_origin() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "request.cross_origin", "This request came from another web site.", "Open the dashboard directly at the box's own address.")
    }
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "request.not_found", "There is nothing at this address.", "Check the address; the API's routes are listed at /api/v1/openapi.json.")
    }
    pub fn method() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "request.method_not_allowed", "This address does not accept that method.", "Check the API documentation for the methods each route takes.")
    }
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", format!("The request body is larger than {limit} bytes."), "Send a smaller request.")
    }
    pub fn bad_body(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "request.invalid_body", detail, "Send a JSON object (or a form) with the fields this route documents.")
    }
    pub fn setup_required() -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "setup.required", "This box has no administrator yet.", "Open the dashboard and create the first administrator on the setup page.")
    }
    pub fn setup_not_local() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "setup.not_local", "Setup is only offered to computers on the box's local network.", "Open the dashboard from a computer on the same network as the box.")
    }
    pub fn admin_only() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "session.admin_required", "Only an administrator can do this.", "Ask an administrator of this box.")
    }
    pub fn power_unavailable() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "system.power_unavailable", "This daemon does not control the machine's power.", "Restart or power off the machine itself.")
    }
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        log::error!("internal error: {detail}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "system.internal", "Something went wrong inside the box; nothing was changed.", "Try again; if it keeps happening, the system log names the cause.")
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        let msg = e.to_string();
        match e {
            AccountError::Name(NameError::Reserved(_)) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "user.name_reserved", msg, "Choose another name; system names such as root are reserved."),
            AccountError::Name(_) => ApiError::new(StatusCode::BAD_REQUEST, "user.name_invalid", capitalise(&msg), "Use 1 to 32 characters: a lowercase letter first, then lowercase letters, digits, '_' or '-'."),
            AccountError::PasswordTooShort { .. } => ApiError::new(StatusCode::BAD_REQUEST, "user.password_too_short", capitalise(&msg), "Choose a longer password; a few unrelated words make a strong one."),
            AccountError::PasswordTooLong { .. } => ApiError::new(StatusCode::BAD_REQUEST, "user.password_too_long", capitalise(&msg), "Choose a shorter password."),
            AccountError::InvalidEmail(_) => ApiError::new(StatusCode::BAD_REQUEST, "user.email_invalid", capitalise(&msg), "Enter an address like name@example.org, or leave it empty."),
            AccountError::SetupDone => ApiError::new(StatusCode::CONFLICT, "setup.already_done", "This box already has an administrator.", "Log in with an existing account."),
            AccountError::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "session.bad_credentials", "The user name or password is wrong.", "Check both and try again; an administrator can reset a forgotten password."),
            AccountError::NoSession => ApiError::unauthenticated(),
            AccountError::Store(e) => ApiError::internal(e),
            AccountError::Random => ApiError::internal("random number generator failed"),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + if s.ends_with('.') { "" } else { "." },
        None => String::new(),
    }
}

/// Every code this crate can answer with, for the test that keeps `docs/errors.md` complete.
pub const ALL_CODES: &[&str] = &[
    "session.required",
    "session.csrf_missing",
    "session.bad_credentials",
    "session.admin_required",
    "request.cross_origin",
    "request.not_found",
    "request.method_not_allowed",
    "request.too_large",
    "request.invalid_body",
    "setup.required",
    "setup.not_local",
    "setup.already_done",
    "user.name_reserved",
    "user.name_invalid",
    "user.password_too_short",
    "user.password_too_long",
    "user.email_invalid",
    "user.password_mismatch",
    "system.power_unavailable",
    "system.internal",
];
