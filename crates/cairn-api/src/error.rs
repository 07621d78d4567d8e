//! The one place where failures become HTTP statuses and stable error codes.
//!
//! Handlers and controllers return [`Error`]: the typed error of a domain crate, or a [`RequestError`] of the
//! API's own. The table below gives each variant its status, code and hint in one `match` without a catch-all
//! arm, so a new error without an answer does not compile, and [`ALL_CODES`] is derived from the same table.
//! Every code is dotted and lowercase, listed in `docs/errors.md`, and never reused for another meaning.

use cairn_accounts::{AccountError, NameError};
use cairn_backup::BackupError;
use cairn_cloud::CloudError;
use cairn_firmware::install::InstallError;
use cairn_firmware::FirmwareError;
use cairn_reset::ResetError;
use cairn_storage::StorageError;
use cairn_store::unavailable::{RecoveryError, Unavailable};
use cairn_store::StoreError;
use cairn_system::{NetworkRule, SystemError};
use cairn_tls::CertError;
use hyper::StatusCode;
use serde_json::json;

/// Why a request was refused or failed, as the code knows it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    System(#[from] SystemError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Firmware(#[from] InstallError),
    #[error(transparent)]
    Reset(#[from] ResetError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Settings(#[from] StoreError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Refusals that belong to HTTP itself: sessions, tokens, bodies, addresses.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("you are not logged in, or your session has ended")]
    Unauthenticated,
    #[error("this change was sent without the page's security token")]
    CsrfMissing,
    #[error("this request came from another web site")]
    CrossOrigin,
    #[error("there is nothing at this address")]
    NotFound,
    #[error("this address does not accept that method")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    InvalidBody(String),
    #[error("too many failed logins; wait {0} s before trying again")]
    RateLimited(u64),
    #[error("a password from your address is being checked already")]
    LoginInProgress,
    #[error("the box is checking too many passwords right now")]
    LoginBusy(u64),
    #[error("this request names a host that is not this box")]
    BadHost,
    #[error("this box has no administrator yet")]
    SetupRequired,
    #[error("setup is only offered to computers on the box's local network")]
    SetupNotLocal,
    #[error("only an administrator can do this")]
    AdminOnly,
    #[error("the two passwords differ")]
    PasswordMismatch,
    #[error("you have no session with that id")]
    SessionNotFound,
    #[error("this server does not manage disks (a development server without a box)")]
    StorageUnavailable,
    #[error("the request did not arrive in time")]
    Timeout,
    #[error("this box has too many open connections from your address, or from everyone")]
    TooManyConnections,
    /// The box runs without its settings: nothing but health and the console's repair is answered.
    #[error("{0}")]
    SettingsUnavailable(Unavailable),
    #[error(
        "this server does not serve HTTPS (a development server started without --listen-tls)"
    )]
    TlsUnavailable,
    #[error("a firmware install is under way already")]
    FirmwareBusy,
    #[error("this server does not install firmware (a development server without root slots)")]
    FirmwareUnavailable,
    #[error("the update check failed: {0}")]
    UpdateCheck(String),
    #[error("no update source is configured")]
    NoUpdateSource,
    #[error("resets are unavailable while the settings are")]
    ResetUnavailable,
    #[error("the tier must be \"network\" or \"settings\"")]
    ResetTier,
    #[error("type the box's name, {0:?}, to confirm the reset")]
    ResetConfirm(String),
    #[error("{0}")]
    RestoreParts(String),
    #[error("the backup's passphrase is missing (the X-Cairn-Passphrase header)")]
    PassphraseMissing,
    /// A failure inside the box; the detail goes to the log, never to the client.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An internal failure (a task that panicked, a value that would not serialise).
    pub fn internal(detail: impl std::fmt::Display) -> Error {
        Error::Request(RequestError::Internal(detail.to_string()))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        entry(self).status
    }

    /// The error as the API answers it.
    pub fn render(&self) -> ApiError {
        let e = entry(self);
        let message = if e.code == INTERNAL {
            log::error!("internal error: {self}");
            "Something went wrong inside the box; nothing was changed.".to_string()
        } else {
            e.message
                .map(str::to_string)
                .unwrap_or_else(|| capitalise(&self.to_string()))
        };
        ApiError {
            status: e.status,
            code: e.code,
            message,
            hint: e.hint,
            retry_after_s: match self {
                Error::Request(RequestError::RateLimited(s) | RequestError::LoginBusy(s)) => {
                    Some(*s)
                }
                Error::Request(
                    RequestError::TooManyConnections | RequestError::LoginInProgress,
                ) => Some(1),
                Error::Cloud(CloudError::RateLimited { retry_after_s }) => Some(*retry_after_s),
                _ => None,
            },
            confirm: match self {
                Error::Storage(StorageError::ConfirmRequired { volume, .. }) => {
                    Some(volume.clone())
                }
                Error::Storage(StorageError::UnreadableConfirmRequired { token, .. }) => {
                    Some(token.clone())
                }
                Error::Recovery(RecoveryError::ConfirmRequired { word }) => Some(word.clone()),
                _ => None,
            },
        }
    }
}

/// An error as the API answers it: status, stable code, a sentence, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: &'static str,
    /// Seconds before a retry can succeed (429, 503), sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
    /// For a change that erases data: the token to send back as `confirm` (the volume's name, or for an
    /// unreadable disk the words naming it, which the dashboard has the owner type).
    pub confirm: Option<String>,
}

impl ApiError {
    /// The JSON body every error has.
    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code, "message": self.message, "hint": self.hint});
        if let Some(token) = &self.confirm {
            e["confirm"] = json!(token);
        }
        json!({"error": e})
    }
}

struct Entry {
    status: StatusCode,
    code: &'static str,
    hint: &'static str,
    /// A fixed sentence instead of the error's own words (where those would say too much or too little).
    message: Option<&'static str>,
}

const INTERNAL: &str = "system.internal";
const NAME_HINT: &str =
    "Use 1 to 32 characters: a lowercase letter first, then lowercase letters, digits, '_' or '-'.";
const INTERNAL_HINT: &str = "Try again; if it keeps happening, the system log names the cause.";
const FULL_HINT: &str = "Free space on the settings partition: remove files from shares on the system volume (or whatever else was put there), then try again. Logging in still works.";
const DAMAGED_HINT: &str = "The record named in the message is damaged; the rest of the settings are used. Restore it from a settings backup, or delete and recreate it.";
const REPAIR_HINT: &str = "At the box's console run `cairn ctl config repair`; if that cannot help, `cairn ctl config format` erases the settings (never the data volumes).";

/// Builds [`entry`] and [`ALL_CODES`] from one list of `pattern => (STATUS, "code", hint[, message])`.
macro_rules! error_table {
    ($( $pat:pat => ($status:ident, $code:expr, $hint:expr $(, $message:expr)?) ),* $(,)?) => {
        fn entry(e: &Error) -> Entry {
            match e {
                $( $pat => Entry {
                    status: StatusCode::$status,
                    code: $code,
                    hint: $hint,
                    message: None $( .or(Some($message)) )?,
                }, )*
            }
        }

        /// Every code this API can answer with, for the test that keeps `docs/errors.md` complete.
        pub const ALL_CODES: &[&str] = &[ $( $code ),* ];
    };
}

use AccountError as A;
use BackupError as B;
use CertError as T;
use CloudError as K;
use Error::{
    Account, Backup, Certificate, Cloud, Firmware, Recovery, Request, Reset, Settings, Storage,
    System,
};
use FirmwareError as F;
use InstallError as I;
use NetworkRule as N;
use RecoveryError as C;
use RequestError as R;
use ResetError as E;
use StorageError as S;
use StoreError as D;
use SystemError as Y;
use Unavailable as U;

error_table! {
    Request(R::Unauthenticated) => (UNAUTHORIZED, "session.required", "Log in again."),
    Request(R::CsrfMissing) => (FORBIDDEN, "session.csrf_missing", "Reload the page and try again; API clients send the csrf_token from the session in the X-CSRF-Token header."),
    Request(R::CrossOrigin) => (FORBIDDEN, "request.cross_origin", "Open the dashboard directly at the box's own address."),
    Request(R::NotFound) => (NOT_FOUND, "request.not_found", "Check the address; the API's routes are listed at /api/v1/openapi.json."),
    Request(R::MethodNotAllowed) => (METHOD_NOT_ALLOWED, "request.method_not_allowed", "Check the API documentation for the methods each route takes."),
    Request(R::TooLarge(_)) => (PAYLOAD_TOO_LARGE, "request.too_large", "Send a smaller request."),
    Request(R::InvalidBody(_)) => (BAD_REQUEST, "request.invalid_body", "Send a JSON object (or a form) with the fields this route documents."),
    Request(R::RateLimited(_)) => (TOO_MANY_REQUESTS, "session.rate_limited", "Wait, then check the user name and password; an administrator can set a new password."),
    Request(R::LoginInProgress) => (TOO_MANY_REQUESTS, "session.login_in_progress", "Wait for the answer to the login already sent from this address, then try again."),
    Request(R::LoginBusy(_)) => (SERVICE_UNAVAILABLE, "session.busy", "Try again in a few seconds; if it keeps happening, someone on the network may be guessing passwords (the system log lists the checks)."),
    Request(R::BadHost) => (MISDIRECTED_REQUEST, "request.bad_host", "Open the dashboard by the box's address or its name (NAME or NAME.local)."),
    Request(R::SetupRequired) => (CONFLICT, "setup.required", "Open the dashboard and create the first administrator on the setup page."),
    Request(R::SetupNotLocal) => (FORBIDDEN, "setup.not_local", "Open the dashboard from a computer on the same network as the box."),
    Request(R::AdminOnly) => (FORBIDDEN, "session.admin_required", "Ask an administrator of this box."),
    Request(R::PasswordMismatch) => (BAD_REQUEST, "user.password_mismatch", "Type the same password in both fields."),
    Request(R::SessionNotFound) => (NOT_FOUND, "session.not_found", "List your sessions with GET /api/v1/me/sessions."),
    Request(R::StorageUnavailable) => (SERVICE_UNAVAILABLE, "storage.unavailable", "Use the box's own dashboard to manage its disks."),
    Request(R::Timeout) => (REQUEST_TIMEOUT, "request.timeout", "Send the whole request at once; a slow or interrupted connection may need a retry."),
    Request(R::TooManyConnections) => (SERVICE_UNAVAILABLE, "request.too_many_connections", "Try again in a moment; if it persists, a computer on your network is holding many connections to the box."),
    Request(R::SettingsUnavailable(U::NoPartition)) => (SERVICE_UNAVAILABLE, "settings.no_partition", "The boot disk lacks its settings partition: write the firmware image to it again. Data volumes are on other disks and stay as they are."),
    Request(R::SettingsUnavailable(U::Unreadable { .. })) => (SERVICE_UNAVAILABLE, "settings.unreadable", "The boot disk fails to read: replace it and restore a settings backup; data volumes are on other disks. From the console, `cairn ctl config repair` may still save the settings."),
    Request(R::SettingsUnavailable(U::Unrecognised { .. })) => (SERVICE_UNAVAILABLE, "settings.unrecognised", REPAIR_HINT),
    Request(R::SettingsUnavailable(U::Unmountable { .. })) => (SERVICE_UNAVAILABLE, "settings.unmountable", REPAIR_HINT),
    Request(R::SettingsUnavailable(U::CannotOpen { .. })) => (SERVICE_UNAVAILABLE, "settings.cannot_open", REPAIR_HINT),
    Request(R::SettingsUnavailable(U::Missing { .. })) => (SERVICE_UNAVAILABLE, "settings.missing", "Restore a settings backup, or at the box's console run `cairn ctl config format` to start with new settings (data volumes are kept and can be imported)."),
    Request(R::TlsUnavailable) => (SERVICE_UNAVAILABLE, "certificate.unavailable", "Use the box's own dashboard to manage its certificate."),
    Request(R::FirmwareBusy) => (CONFLICT, "firmware.busy", "Wait for the install under way to finish (its job shows the progress), then try again."),
    Request(R::FirmwareUnavailable) => (SERVICE_UNAVAILABLE, "firmware.unavailable", "Install firmware on the box itself; a development server has no root slots."),
    Request(R::UpdateCheck(_)) => (BAD_GATEWAY, "firmware.check_failed", "Nothing was changed. Check the box's network and the update source's address on the System page, then try again."),
    Request(R::NoUpdateSource) => (CONFLICT, "firmware.no_update_source", "Set the address of a signed update index on the System page (update_url), or install a bundle file by hand."),
    Request(R::Internal(_)) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),
    Request(R::ResetUnavailable) => (SERVICE_UNAVAILABLE, "reset.unavailable", REPAIR_HINT),
    Request(R::ResetTier) => (BAD_REQUEST, "reset.tier_invalid", "Choose network (network settings, host name and administrator passwords) or settings (every setting; data volumes are kept)."),
    Request(R::ResetConfirm(_)) => (CONFLICT, "reset.confirm_required", "Nothing was changed. Type the box's name exactly as the System page shows it."),

    Request(R::RestoreParts(_)) => (BAD_REQUEST, "backup.parts_invalid", "Name the parts to restore as ?parts=network,users,shares (any of them), or leave it out for all."),
    Request(R::PassphraseMissing) => (BAD_REQUEST, "backup.passphrase_missing", "Send the passphrase the backup was made with in the X-Cairn-Passphrase header."),
    Backup(B::PassphraseTooShort(_)) => (BAD_REQUEST, "backup.passphrase_too_short", "Choose a passphrase of at least 8 characters; you need it to restore the file, so keep it with the file's copies."),
    Backup(B::NotABackup(_)) => (UNPROCESSABLE_ENTITY, "backup.not_a_backup", "Nothing was changed. Choose a file made by Backup on a Cairn box's System page (.cairn-backup)."),
    Backup(B::TooLarge(_)) => (PAYLOAD_TOO_LARGE, "backup.too_large", "Nothing was changed. This is not a settings backup: those are far smaller."),
    Backup(B::Truncated) => (UNPROCESSABLE_ENTITY, "backup.truncated", "Nothing was changed. The file is cut short: copy the whole file again and restore it once more."),
    Backup(B::Damaged(_)) => (UNPROCESSABLE_ENTITY, "backup.damaged", "Nothing was changed. The file is damaged; restore another copy of it."),
    Backup(B::CannotOpen) => (UNPROCESSABLE_ENTITY, "backup.cannot_open", "Nothing was changed. Check the passphrase (the one typed when the backup was made); if it is right, the file was changed since: restore another copy."),
    Backup(B::TooNew { .. }) => (UNPROCESSABLE_ENTITY, "backup.too_new", "Nothing was changed. Update this box to the firmware that made the backup (or newer), then restore it."),
    Backup(B::Random) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),
    Settings(D::Full { .. }) => (INSUFFICIENT_STORAGE, "settings.full", FULL_HINT),
    Settings(D::Snapshot(cairn_store::snapshot::SnapshotError::TooNew { .. }) | D::TooNew { .. }) => (UNPROCESSABLE_ENTITY, "backup.too_new", "Nothing was changed. Update this box to the firmware that made the backup (or newer), then restore it."),
    Settings(_) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),
    Cloud(K::ClockUnknown { .. }) => (CONFLICT, "cloud.clock_unknown", "Nothing was stored. The box's clock is not set, so a code would show a wrong expiry: check that the box reaches a time server (the DNS server in Network settings), then try again."),
    Cloud(K::TooManyPending) => (CONFLICT, "cloud.too_many_pending", "Nothing was stored. Use or remove one of the codes waiting (they are listed with their expiry), then issue a new one."),
    Cloud(K::RateLimited { .. }) => (TOO_MANY_REQUESTS, "cloud.rate_limited", "Nothing was stored. Wait as long as Retry-After says, then issue a new code."),
    Cloud(K::NoSuchPairing(_)) => (NOT_FOUND, "cloud.no_such_pairing", "List the pairings with GET /api/v1/cloud/pairings; it may have been removed already."),
    Cloud(K::Store(D::Full { .. })) => (INSUFFICIENT_STORAGE, "settings.full", FULL_HINT),
    Cloud(K::Random | K::Store(_)) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),

    Reset(E::NotAReset(_)) => (BAD_REQUEST, "reset.tier_invalid", "Choose network or settings."),
    Reset(E::NothingToUndo) => (CONFLICT, "reset.nothing_to_undo", "The settings from before the last reset were dismissed or never kept; restore a settings backup instead."),
    Reset(E::Snapshot(cairn_store::snapshot::SnapshotError::NoRoom { .. }) | E::Store(D::Full { .. })) => (INSUFFICIENT_STORAGE, "settings.full", FULL_HINT),
    Reset(E::Snapshot(cairn_store::snapshot::SnapshotError::Damaged { .. })) => (UNPROCESSABLE_ENTITY, "reset.kept_settings_damaged", "The settings kept from before the reset are damaged and were not used; nothing was changed. Restore a settings backup instead."),
    Reset(E::Store(_) | E::Snapshot(_) | E::Accounts(_) | E::Io { .. }) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),

    Account(A::Name(NameError::Reserved(_))) => (UNPROCESSABLE_ENTITY, "name.reserved", "Choose another name; names the system uses, such as root or global, are reserved."),
    Account(A::Name(_)) => (BAD_REQUEST, "name.invalid", NAME_HINT),
    Account(A::PasswordTooShort { .. }) => (BAD_REQUEST, "user.password_too_short", "Choose a longer password; a few unrelated words make a strong one."),
    Account(A::PasswordTooLong { .. }) => (BAD_REQUEST, "user.password_too_long", "Choose a shorter password."),
    Account(A::InvalidEmail(_)) => (BAD_REQUEST, "user.email_invalid", "Enter an address like name@example.org, or leave it empty."),
    Account(A::InvalidFullName(_)) => (BAD_REQUEST, "user.full_name_invalid", "Use at most 128 characters on one line."),
    Account(A::SetupNotAdmin(_)) => (CONFLICT, "setup.not_admin", "Name an administrator, or a new account, to set the administrator password."),
    Account(A::SetupDone) => (CONFLICT, "setup.already_done", "Log in with an existing account.", "This box already has an administrator."),
    Account(A::BadCredentials) => (UNAUTHORIZED, "session.bad_credentials", "Check both and try again; an administrator can set a new password for you.", "The user name or password is wrong."),
    Account(A::WrongCurrentPassword) => (FORBIDDEN, "user.current_password_wrong", "Type your current password to confirm the change."),
    Account(A::NoSession) => (UNAUTHORIZED, "session.required", "Log in again.", "You are not logged in, or your session has ended."),
    Account(A::NoSuchUser(_)) => (NOT_FOUND, "user.not_found", "Check the name; the user list shows every account."),
    Account(A::UserExists(_)) => (CONFLICT, "user.name_taken", "Choose another name; users and groups share one set of names."),
    Account(A::NoSuchGroup(_)) => (NOT_FOUND, "group.not_found", "Check the name; the group list shows every group."),
    Account(A::GroupExists(_)) => (CONFLICT, "group.name_taken", "Choose another name; users and groups share one set of names."),
    Account(A::NoSuchShare(_)) => (NOT_FOUND, "share.not_found", "Check the name; the share list shows every share."),
    Account(A::ShareExists(_)) => (CONFLICT, "share.name_taken", "Choose another name, or edit the existing share."),
    Account(A::LastAdmin(_)) => (UNPROCESSABLE_ENTITY, "user.last_admin", "Make another account an enabled administrator first; a box always keeps one."),
    Account(A::InvalidSharePath(_)) => (BAD_REQUEST, "share.path_invalid", "Give a folder relative to the volume, like Photos/2024: letters, digits, spaces, '_', '-' and '.', no '..'."),
    Account(A::NoSuchVolume(_)) => (UNPROCESSABLE_ENTITY, "share.volume_not_found", "Choose one of the volumes the storage page lists."),
    Account(A::InvalidDescription(_)) => (BAD_REQUEST, "share.description_invalid", "Use at most 256 characters on one line."),
    Account(A::Store(D::Full { .. })) => (INSUFFICIENT_STORAGE, "settings.full", FULL_HINT),
    Account(A::Store(D::Corrupt { .. })) => (INTERNAL_SERVER_ERROR, "settings.record_damaged", DAMAGED_HINT),
    Account(A::Store(_) | A::Random) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),

    Storage(S::NoSuchVolume(_)) => (NOT_FOUND, "volume.not_found", "Check the name; the storage page lists every volume and found array."),
    Storage(S::NoSuchDisk(_)) => (UNPROCESSABLE_ENTITY, "disk.not_found", "Choose disks from GET /api/v1/disks (the id is the disk's serial)."),
    Storage(S::NoSuchJob(_)) => (NOT_FOUND, "job.not_found", "Check the id; GET /api/v1/jobs lists recent jobs."),
    Storage(S::VolumeExists(_)) => (CONFLICT, "volume.name_taken", "Choose another name for the volume."),
    Storage(S::InvalidName(_)) => (BAD_REQUEST, "name.invalid", NAME_HINT),
    Storage(S::InvalidLevel(_)) => (BAD_REQUEST, "volume.level_invalid", "Choose single, raid0, raid1, raid5, raid6 or raid10."),
    Storage(S::DiskCount { .. }) => (UNPROCESSABLE_ENTITY, "volume.disk_count", "Choose more disks, or a level that fits the disks you have."),
    Storage(S::DiskTwice(_)) => (BAD_REQUEST, "volume.disk_twice", "List each disk once."),
    Storage(S::BootMedium(_)) => (UNPROCESSABLE_ENTITY, "disk.boot_medium", "Choose one of the data disks; the system disk is never used for volumes."),
    Storage(S::DiskInUse { .. }) => (CONFLICT, "disk.in_use", "Choose a free disk, or delete the volume that uses this one first."),
    Storage(S::DiskTooSmall { .. }) => (UNPROCESSABLE_ENTITY, "disk.too_small", "Choose a larger disk."),
    Storage(S::ConfirmRequired { .. }) => (CONFLICT, "volume.confirm_required", "If that is what you want, send the volume's name as \"confirm\" (the dashboard asks you to type it)."),
    Storage(S::UnreadableConfirmRequired { .. }) => (CONFLICT, "disk.unreadable", "The disk may be failing, or hold data Cairn cannot see: check it in another computer, or choose another disk. To erase it anyway, send the words the message gives as \"confirm\" (the dashboard asks you to type them)."),
    Storage(S::DiskChanged { .. }) => (CONFLICT, "disk.changed", "A disk was swapped while the change was under way; look at the disks page again and repeat the change with the disks as they are now."),
    Storage(S::HasShares { .. }) => (CONFLICT, "volume.has_shares", "Delete the shares on this volume, or move them, then delete the volume."),
    Storage(S::Busy(_)) => (CONFLICT, "volume.busy", "Wait for the running work to finish (the storage page shows its progress) and try again."),
    Storage(S::NotMember { .. }) => (UNPROCESSABLE_ENTITY, "volume.disk_not_member", "Choose one of the volume's own disks; GET /api/v1/volumes/{name} lists them."),
    Storage(S::Refused(_)) => (UNPROCESSABLE_ENTITY, "volume.refused", "Nothing was changed; the storage page and event log say what the volume needs."),
    Storage(S::Tool { .. }) => (INTERNAL_SERVER_ERROR, "storage.tool_failed", "Nothing more was changed; the storage event log has the tool's own words."),
    Storage(S::Store(D::Full { .. })) => (INSUFFICIENT_STORAGE, "settings.full", FULL_HINT),
    Storage(S::Store(_) | S::Io(_)) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),

    System(Y::HostnameInvalid(_)) => (BAD_REQUEST, "system.hostname_invalid", "Use 1 to 63 letters, digits and '-', not starting or ending with '-'."),
    System(Y::NetworkInvalid(N::TooManyDns)) => (BAD_REQUEST, "network.invalid", "Remove some DNS servers."),
    System(Y::NetworkInvalid(N::DhcpTakesNoAddress)) => (BAD_REQUEST, "network.invalid", "Leave them out, or choose static mode."),
    System(Y::NetworkInvalid(N::StaticNeedsAddress)) => (BAD_REQUEST, "network.invalid", "Give both, for example 192.168.1.20 and 24."),
    System(Y::NetworkInvalid(N::PrefixUnusable(_))) => (BAD_REQUEST, "network.invalid", "Use a prefix from 8 to 30; most home networks use 24."),
    System(Y::NetworkInvalid(N::AddressUnusable(_))) => (BAD_REQUEST, "network.invalid", "Use an address from your network's range, such as 192.168.1.20."),
    System(Y::NetworkInvalid(N::NetworkOrBroadcast { .. })) => (BAD_REQUEST, "network.invalid", "Pick an address inside the range, not its first or last."),
    System(Y::NetworkInvalid(N::GatewayOffNetwork { .. })) => (BAD_REQUEST, "network.invalid", "The gateway (your router) must be in the same range as the box."),
    System(Y::NetworkInvalid(N::NotAnAddress)) => (BAD_REQUEST, "network.invalid", "Check the address and gateway fields."),
    System(Y::NothingToConfirm) => (CONFLICT, "network.nothing_to_confirm", "It may have been rolled back already; look at the network settings and change them again."),
    System(Y::PowerUnavailable) => (SERVICE_UNAVAILABLE, "system.power_unavailable", "Restart or power off the machine itself."),
    System(Y::Store(D::Full { .. })) => (INSUFFICIENT_STORAGE, "settings.full", FULL_HINT),
    System(Y::Store(_)) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),

    Recovery(C::NoPartition) => (UNPROCESSABLE_ENTITY, "config.no_partition", "Write the firmware image to the boot disk again; data volumes are on other disks."),
    Recovery(C::NotNeeded) => (CONFLICT, "config.not_needed", "Nothing to do: the settings partition is mounted and the settings open."),
    Recovery(C::ConsoleOnly) => (FORBIDDEN, "config.console_only", "Run `cairn ctl config repair` (or `format`) at the box's serial console."),
    Recovery(C::ConfirmRequired { .. }) => (CONFLICT, "config.confirm_required", "If you want to erase the settings (data volumes are kept), send the word as \"confirm\"; `cairn ctl config format` asks you to type it."),
    Recovery(C::CheckFailed(_)) => (UNPROCESSABLE_ENTITY, "config.repair_failed", "Nothing was formatted. Restore a settings backup after `cairn ctl config format`, or replace the boot disk."),
    Recovery(C::FormatFailed(_)) => (UNPROCESSABLE_ENTITY, "config.format_failed", "The boot disk may be failing: replace it and write the firmware image again."),
    Recovery(C::MountFailed(_)) => (UNPROCESSABLE_ENTITY, "config.mount_failed", "Try `cairn ctl config repair` again; if it keeps failing, `cairn ctl config format` (the settings are erased, data volumes kept)."),
    Recovery(C::SettingsLost) => (UNPROCESSABLE_ENTITY, "config.settings_lost", "Restore a settings backup after `cairn ctl config format`, or format and set the box up again; data volumes are kept and can be imported."),
    Recovery(C::StillCannotOpen(_)) => (UNPROCESSABLE_ENTITY, "config.still_unusable", "`cairn ctl config format` erases the settings and starts afresh (data volumes are kept and can be imported)."),
    Certificate(T::NoCertificate) => (BAD_REQUEST, "certificate.missing", "Paste the certificate chain in PEM form: blocks from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, the box's own certificate first."),
    Certificate(T::NoKey) => (BAD_REQUEST, "certificate.key_missing", "Paste the private key in PEM form (-----BEGIN PRIVATE KEY-----), without a passphrase."),
    Certificate(T::SeveralKeys(_)) => (BAD_REQUEST, "certificate.several_keys", "Paste only the private key of the box's own certificate."),
    Certificate(T::Pem(_)) => (BAD_REQUEST, "certificate.pem_invalid", "Paste the whole PEM text, every line from -----BEGIN to -----END, unchanged."),
    Certificate(T::Unreadable { .. }) => (UNPROCESSABLE_ENTITY, "certificate.unreadable", "Export the certificate again as PEM (X.509, base64) from where it was issued."),
    Certificate(T::KeyUnsupported(_)) => (UNPROCESSABLE_ENTITY, "certificate.key_unsupported", "Use an unencrypted ECDSA (P-256 or P-384), Ed25519 or RSA (2048 bits or more) key."),
    Certificate(T::KeyMismatch) => (UNPROCESSABLE_ENTITY, "certificate.key_mismatch", "Upload the private key that was made together with this certificate (the certificate's own key, not its issuer's); nothing was changed."),
    Certificate(T::NotYetValid { .. }) => (UNPROCESSABLE_ENTITY, "certificate.not_yet_valid", "Upload it once it is valid, or check the box's clock."),
    Certificate(T::Expired { .. }) => (UNPROCESSABLE_ENTITY, "certificate.expired", "Renew the certificate with its issuer, then upload the new one."),
    Certificate(T::ChainOrder { .. }) => (UNPROCESSABLE_ENTITY, "certificate.chain_order", "Put the box's own certificate first, then its issuer, then that one's issuer."),
    Certificate(T::Generate(_) | T::Io { .. }) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),

    Firmware(I::Bundle(F::BadSignature { .. } | F::MalformedSignature(_))) => (UNPROCESSABLE_ENTITY, "firmware.bad_signature", "Nothing was written. Download the bundle again from where it was published; a bundle changed after signing is never installed."),
    Firmware(I::Bundle(F::UnknownKey { .. })) => (UNPROCESSABLE_ENTITY, "firmware.unknown_key", "Nothing was written. Install a bundle signed with a key this firmware trusts (development images trust the development key, release images the release key)."),
    Firmware(I::Bundle(F::Truncated(_))) => (BAD_REQUEST, "firmware.truncated", "The bundle ended early, so the new slot was left out of the boot order. Upload the whole file again."),
    Firmware(I::Bundle(F::DigestMismatch { .. } | F::PayloadSize { .. })) => (UNPROCESSABLE_ENTITY, "firmware.digest_mismatch", "The bundle was damaged on its way, so the new slot was left out of the boot order. Download it again and upload it once more."),
    Firmware(I::Bundle(F::BadMagic { .. } | F::HeaderTooLarge { .. } | F::MalformedManifest(_) | F::UnsupportedFormat { .. } | F::InvalidVersion(_) | F::InvalidName(_) | F::TrailingData | F::PayloadUnfinished { .. }) | I::BadManifest(_)) => (UNPROCESSABLE_ENTITY, "firmware.invalid_bundle", "Upload a Cairn firmware bundle (.cfw), as `make bundle` or a release writes it."),
    Firmware(I::WrongBoard { .. }) => (UNPROCESSABLE_ENTITY, "firmware.wrong_board", "Nothing was written. Download the bundle made for this box's board (the System page names it)."),
    Firmware(I::BelowFloor { .. }) => (UNPROCESSABLE_ENTITY, "firmware.below_floor", "Nothing was written. The running firmware does not go back below its floor (older versions lack fixes it depends on); install a newer version."),
    Firmware(I::FailedBefore(_)) => (CONFLICT, "firmware.failed_before", "This version failed its health check on this box and the box went back. To try it once more anyway, send it again with ?insist=1 (the dashboard asks)."),
    Firmware(I::NoSpace { .. }) => (INSUFFICIENT_STORAGE, "firmware.no_space", "Nothing was written. Free space on the settings partition (files on the system volume's shares), then try again."),
    Firmware(I::BootFull { .. }) => (INSUFFICIENT_STORAGE, "firmware.boot_full", "The new slot was left out of the boot order. Restart the box (it checks and repairs its boot partition as it starts) and install again; if it keeps happening, the boot medium is too small for this bundle."),
    Firmware(I::Migration(_)) => (UNPROCESSABLE_ENTITY, "firmware.migration_refused", "The new slot was left out of the boot order and the settings are unchanged. The new firmware's settings migrations would fail or drop settings (the firmware page shows the report); install a version that migrates them, or report it to the firmware's makers."),
    Firmware(I::TooLarge { .. }) => (UNPROCESSABLE_ENTITY, "firmware.too_large", "Nothing was written. This bundle does not fit this box's root slots; install one made for this board."),
    Firmware(I::ReadBack(_)) => (INTERNAL_SERVER_ERROR, "firmware.read_back", "The new slot read back differently from what was written and was left out of the boot order. Try again; if it keeps happening, the boot medium is failing."),
    Firmware(I::BootState(_)) => (INTERNAL_SERVER_ERROR, "firmware.boot_state", "The boot state on the boot partition could not be changed; the box still boots its running slot. Try again; the system log names the cause."),
    Firmware(I::Stopped) => (SERVICE_UNAVAILABLE, "firmware.stopped", "The install was stopped before the new slot became bootable. Start it again."),
    Firmware(I::UnknownSlot | I::TargetInUse(_) | I::Io { .. } | I::Bundle(F::NoTrustedKeys { .. } | F::InvalidPublicKey { .. } | F::InvalidSigningKey(_) | F::PartitionTooSmall { .. } | F::File { .. } | F::Io(_))) => (INTERNAL_SERVER_ERROR, INTERNAL, INTERNAL_HINT),
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
