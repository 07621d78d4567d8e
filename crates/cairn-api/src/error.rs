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
    /// Seconds before a retry can succeed (429), sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
    /// For a change that erases data: the token to send back as `confirm` (the volume's name, which the
    /// dashboard has the owner type).
    pub confirm: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        hint: &'static str,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            hint,
            retry_after_s: None,
            confirm: None,
        }
    }

    /// The JSON body every error has.
    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code, "message": self.message, "hint": self.hint});
        if let Some(token) = &self.confirm {
            e["confirm"] = json!(token);
        }
        json!({"error": e})
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session.required",
            "You are not logged in, or your session has ended.",
            "Log in again.",
        )
    }
    pub fn csrf() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "session.csrf_missing", "This change was sent without the page's security token.", "Reload the page and try again; API clients send the csrf_token from the session in the X-CSRF-Token header.")
    }
    pub fn cross_origin() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "request.cross_origin",
            "This request came from another web site.",
            "Open the dashboard directly at the box's own address.",
        )
    }
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "request.not_found",
            "There is nothing at this address.",
            "Check the address; the API's routes are listed at /api/v1/openapi.json.",
        )
    }
    pub fn method() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "request.method_not_allowed",
            "This address does not accept that method.",
            "Check the API documentation for the methods each route takes.",
        )
    }
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            format!("The request body is larger than {limit} bytes."),
            "Send a smaller request.",
        )
    }
    pub fn bad_body(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
            detail,
            "Send a JSON object (or a form) with the fields this route documents.",
        )
    }
    pub fn rate_limited(seconds: u64) -> ApiError {
        ApiError { retry_after_s: Some(seconds), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "session.rate_limited", format!("Too many failed logins; wait {seconds} s before trying again."), "Wait, then check the user name and password; an administrator can set a new password.") }
    }
    pub fn bad_host() -> ApiError {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "request.bad_host",
            "This request names a host that is not this box.",
            "Open the dashboard by the box's address or its name (NAME or NAME.local).",
        )
    }
    pub fn setup_required() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "setup.required",
            "This box has no administrator yet.",
            "Open the dashboard and create the first administrator on the setup page.",
        )
    }
    pub fn setup_not_local() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "setup.not_local",
            "Setup is only offered to computers on the box's local network.",
            "Open the dashboard from a computer on the same network as the box.",
        )
    }
    pub fn admin_only() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "session.admin_required",
            "Only an administrator can do this.",
            "Ask an administrator of this box.",
        )
    }
    pub fn power_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "system.power_unavailable",
            "This daemon does not control the machine's power.",
            "Restart or power off the machine itself.",
        )
    }
    pub fn storage_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage.unavailable",
            "This server does not manage disks (a development server without a box).",
            "Use the box's own dashboard to manage its disks.",
        )
    }
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        log::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "system.internal",
            "Something went wrong inside the box; nothing was changed.",
            "Try again; if it keeps happening, the system log names the cause.",
        )
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        use StatusCode as S;
        let msg = capitalise(&e.to_string());
        let (status, code, hint) = match e {
            AccountError::Name(NameError::Reserved(_)) => (S::UNPROCESSABLE_ENTITY, "name.reserved", "Choose another name; names the system uses, such as root or global, are reserved."),
            AccountError::Name(_) => (S::BAD_REQUEST, "name.invalid", "Use 1 to 32 characters: a lowercase letter first, then lowercase letters, digits, '_' or '-'."),
            AccountError::PasswordTooShort { .. } => (S::BAD_REQUEST, "user.password_too_short", "Choose a longer password; a few unrelated words make a strong one."),
            AccountError::PasswordTooLong { .. } => (S::BAD_REQUEST, "user.password_too_long", "Choose a shorter password."),
            AccountError::InvalidEmail(_) => (S::BAD_REQUEST, "user.email_invalid", "Enter an address like name@example.org, or leave it empty."),
            AccountError::InvalidFullName(_) => (S::BAD_REQUEST, "user.full_name_invalid", "Use at most 128 characters on one line."),
            AccountError::SetupDone => return ApiError::new(S::CONFLICT, "setup.already_done", "This box already has an administrator.", "Log in with an existing account."),
            AccountError::BadCredentials => return ApiError::new(S::UNAUTHORIZED, "session.bad_credentials", "The user name or password is wrong.", "Check both and try again; an administrator can set a new password for you."),
            AccountError::WrongCurrentPassword => (S::FORBIDDEN, "user.current_password_wrong", "Type your current password to confirm the change."),
            AccountError::NoSession => return ApiError::unauthenticated(),
            AccountError::NoSuchUser(_) => (S::NOT_FOUND, "user.not_found", "Check the name; the user list shows every account."),
            AccountError::UserExists(_) => (S::CONFLICT, "user.name_taken", "Choose another name; users and groups share one set of names."),
            AccountError::NoSuchGroup(_) => (S::NOT_FOUND, "group.not_found", "Check the name; the group list shows every group."),
            AccountError::GroupExists(_) => (S::CONFLICT, "group.name_taken", "Choose another name; users and groups share one set of names."),
            AccountError::NoSuchShare(_) => (S::NOT_FOUND, "share.not_found", "Check the name; the share list shows every share."),
            AccountError::ShareExists(_) => (S::CONFLICT, "share.name_taken", "Choose another name, or edit the existing share."),
            AccountError::LastAdmin(_) => (S::UNPROCESSABLE_ENTITY, "user.last_admin", "Make another account an enabled administrator first; a box always keeps one."),
            AccountError::InvalidSharePath(_) => (S::BAD_REQUEST, "share.path_invalid", "Give a folder relative to the volume, like Photos/2024: letters, digits, spaces, '_', '-' and '.', no '..'."),
            AccountError::NoSuchVolume(_) => (S::UNPROCESSABLE_ENTITY, "share.volume_not_found", "Choose one of the volumes the storage page lists."),
            AccountError::InvalidDescription(_) => (S::BAD_REQUEST, "share.description_invalid", "Use at most 256 characters on one line."),
            AccountError::Store(e) => return ApiError::internal(e),
            AccountError::Random => return ApiError::internal("random number generator failed"),
        };
        ApiError::new(status, code, msg, hint)
    }
}

impl From<cairn_storage::StorageError> for ApiError {
    fn from(e: cairn_storage::StorageError) -> ApiError {
        use cairn_storage::StorageError as E;
        use StatusCode as S;
        let msg = capitalise(&e.to_string());
        let confirm = match &e {
            E::ConfirmRequired { volume, .. } => Some(volume.clone()),
            _ => None,
        };
        let (status, code, hint) = match e {
            E::NoSuchVolume(_) => (S::NOT_FOUND, "volume.not_found", "Check the name; the storage page lists every volume and found array."),
            E::NoSuchDisk(_) => (S::UNPROCESSABLE_ENTITY, "disk.not_found", "Choose disks from GET /api/v1/disks (the id is the disk's serial)."),
            E::NoSuchJob(_) => (S::NOT_FOUND, "job.not_found", "Check the id; GET /api/v1/jobs lists recent jobs."),
            E::VolumeExists(_) => (S::CONFLICT, "volume.name_taken", "Choose another name for the volume."),
            E::InvalidName(_) => (S::BAD_REQUEST, "name.invalid", "Use 1 to 32 characters: a lowercase letter first, then lowercase letters, digits, '_' or '-'."),
            E::InvalidLevel(_) => (S::BAD_REQUEST, "volume.level_invalid", "Choose single, raid0, raid1, raid5, raid6 or raid10."),
            E::DiskCount { .. } => (S::UNPROCESSABLE_ENTITY, "volume.disk_count", "Choose more disks, or a level that fits the disks you have."),
            E::DiskTwice(_) => (S::BAD_REQUEST, "volume.disk_twice", "List each disk once."),
            E::BootMedium(_) => (S::UNPROCESSABLE_ENTITY, "disk.boot_medium", "Choose one of the data disks; the system disk is never used for volumes."),
            E::DiskInUse { .. } => (S::CONFLICT, "disk.in_use", "Choose a free disk, or delete the volume that uses this one first."),
            E::DiskTooSmall { .. } => (S::UNPROCESSABLE_ENTITY, "disk.too_small", "Choose a larger disk."),
            E::ConfirmRequired { .. } => (S::CONFLICT, "volume.confirm_required", "If that is what you want, send the volume's name as \"confirm\" (the dashboard asks you to type it)."),
            E::HasShares { .. } => (S::CONFLICT, "volume.has_shares", "Delete the shares on this volume, or move them, then delete the volume."),
            E::Busy(_) => (S::CONFLICT, "volume.busy", "Wait for the running work to finish (the storage page shows its progress) and try again."),
            E::NotMember { .. } => (S::UNPROCESSABLE_ENTITY, "volume.disk_not_member", "Choose one of the volume's own disks; GET /api/v1/volumes/{name} lists them."),
            E::Refused(_) => (S::UNPROCESSABLE_ENTITY, "volume.refused", "Nothing was changed; the storage page and event log say what the volume needs."),
            E::Tool { .. } => (S::INTERNAL_SERVER_ERROR, "storage.tool_failed", "Nothing more was changed; the storage event log has the tool's own words."),
            E::Store(e) => return ApiError::internal(e),
            E::Io(e) => return ApiError::internal(e),
        };
        ApiError {
            confirm,
            ..ApiError::new(status, code, msg, hint)
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => {
            f.to_uppercase().collect::<String>()
                + c.as_str()
                + if s.ends_with('.') { "" } else { "." }
        }
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
    "name.reserved",
    "name.invalid",
    "user.full_name_invalid",
    "user.current_password_wrong",
    "user.not_found",
    "user.name_taken",
    "user.last_admin",
    "group.not_found",
    "group.name_taken",
    "share.not_found",
    "share.name_taken",
    "share.path_invalid",
    "share.volume_not_found",
    "share.description_invalid",
    "session.rate_limited",
    "session.not_found",
    "request.bad_host",
    "system.hostname_invalid",
    "network.invalid",
    "network.nothing_to_confirm",
    "user.password_too_short",
    "user.password_too_long",
    "user.email_invalid",
    "user.password_mismatch",
    "system.power_unavailable",
    "system.internal",
    "storage.unavailable",
    "storage.tool_failed",
    "volume.not_found",
    "volume.name_taken",
    "volume.level_invalid",
    "volume.disk_count",
    "volume.disk_twice",
    "volume.confirm_required",
    "volume.has_shares",
    "volume.busy",
    "volume.disk_not_member",
    "volume.refused",
    "disk.not_found",
    "disk.boot_medium",
    "disk.in_use",
    "disk.too_small",
    "job.not_found",
];
