//! The dashboard's handlers: server-rendered pages, plain HTML forms that work without JavaScript and read
//! well on a phone. Each form posts back to its page; an error re-renders the form with message, hint and
//! code; a success redirects (post, redirect, get), so a reload never repeats a change. Access is the route
//! table's; rules are the controllers'.

pub(crate) mod accounts;
pub(crate) mod firmware;
pub(crate) mod session;
pub(crate) mod storage;
pub(crate) mod system;

use crate::auth::Caller;
use crate::error::Error;
use crate::http::{self, esc, Resp};
use cairn_accounts::{Role, Session, User};
use hyper::StatusCode;

/// A posted form, read once: fields as typed, trimmed, or left out when empty.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn of(ctx: &crate::auth::Ctx) -> Form {
        Form(http::parse_form(&ctx.body))
    }

    /// The field as typed (passwords, free text), empty when absent.
    pub(crate) fn get(&self, key: &str) -> String {
        http::form_field(&self.0, key).to_string()
    }

    /// The field without surrounding white space (names, addresses).
    pub(crate) fn trimmed(&self, key: &str) -> String {
        http::form_field(&self.0, key).trim().to_string()
    }

    /// The trimmed field, or `None` when it was left empty.
    pub(crate) fn optional(&self, key: &str) -> Option<String> {
        Some(self.trimmed(key)).filter(|s| !s.is_empty())
    }

    /// Every value of a repeated field (checkboxes).
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A page for the logged-in caller.
pub(crate) fn page(c: &Caller, title: &str, status: StatusCode, body: String) -> Resp {
    http::html(
        status,
        layout(title, Some(&c.user), Some(&c.session.csrf_token), &body),
    )
}

/// The hidden field that carries the session's CSRF token in every form.
pub(crate) fn csrf_field(c: &Caller) -> String {
    format!(
        r#"<input type="hidden" name="csrf_token" value="{}">"#,
        esc(&c.session.csrf_token)
    )
}

/// A status line after a change.
pub(crate) fn notice_line(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(r#"<div class="notice" role="status">{}</div>"#, esc(text))
    }
}

/// The status a re-rendered form answers with: the error's, or 200.
pub(crate) fn status_of(e: Option<&Error>) -> StatusCode {
    e.map(Error::status).unwrap_or(StatusCode::OK)
}

/// "1.5 GiB": sizes as owners read them.
pub(crate) fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub(crate) fn layout(title: &str, user: Option<&User>, csrf: Option<&str>, body: &str) -> String {
    let links = match user {
        Some(u) if u.role == Role::Admin => {
            r#"<a href="/">Home</a><a href="/users">Users</a><a href="/groups">Groups</a><a href="/shares">Shares</a><a href="/storage">Storage</a><a href="/system">System</a><a href="/me">My account</a>"#
        }
        Some(_) => r#"<a href="/me">My account</a>"#,
        None => "",
    };
    let nav = match (user, csrf) {
        (Some(u), Some(token)) => format!(
            r#"<nav><span class="links">{links}</span><span class="who">{name} · {role}</span><form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{token}"><button class="link">Log out</button></form></nav>"#,
            name = esc(&u.name),
            role = if u.role == Role::Admin {
                "administrator"
            } else {
                "user"
            },
            token = esc(token),
        ),
        _ => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Cairn</title>
<link rel="stylesheet" href="/static/cairn.css">
</head>
<body>
<header><a class="brand" href="/"><span class="mark">▲</span> Cairn</a>{nav}</header>
<main>
{body}
</main>
<footer>Cairn NAS firmware</footer>
</body>
</html>
"#,
        title = esc(title),
    )
}

/// An error inside a page: message, what to do, and the stable code for searching.
pub(crate) fn problem(e: Option<&Error>) -> String {
    match e.map(Error::render) {
        Some(e) => format!(
            r#"<div class="problem" role="alert"><strong>{}</strong><p>{}</p><code>{}</code></div>"#,
            esc(&e.message),
            esc(e.hint),
            esc(e.code)
        ),
        None => String::new(),
    }
}

/// First-boot setup: the only page before an administrator exists.
pub(crate) fn setup(e: Option<&Error>, username: &str, email: &str, admin_reset: bool) -> String {
    let lead = if admin_reset {
        r#"<h1>Set an administrator password</h1>
<p class="lead" id="admin-password-reset">The reset pin cleared the administrator passwords; every other user, share and volume is as it was. Type an administrator's user name and a new password (or a new name to make another administrator).</p>"#
    } else {
        r#"<h1>Welcome to your Cairn box</h1>
<p class="lead">Create the administrator account. There is no default password: this account is the only way in, so keep its password somewhere safe.</p>"#
    };
    let body = format!(
        r#"<section class="card">
{lead}
{problem}
<form method="post" action="/setup" class="stack">
<label>User name<input name="username" value="{username}" required maxlength="32" pattern="[a-z][a-z0-9_\-]{{0,31}}" autocomplete="username" autocapitalize="none" spellcheck="false"></label>
<p class="help">Lowercase letters, digits, '_' and '-', starting with a letter.</p>
<label>E-mail (optional)<input name="email" type="email" value="{email}" autocomplete="email"></label>
<label>Password<input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
<label>Password again<input name="password_again" type="password" required minlength="8" autocomplete="new-password"></label>
<button type="submit">Create administrator</button>
</form>
</section>"#,
        problem = problem(e),
        username = esc(username),
        email = esc(email),
    );
    layout("Set up", None, None, &body)
}

pub(crate) fn login(e: Option<&Error>, username: &str, admin_reset: bool) -> String {
    let reset = if admin_reset {
        r#"<p class="problem" id="admin-password-reset">The reset pin cleared the administrator passwords. <a href="/setup">Set an administrator password</a>; other users log in as before.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"<section class="card narrow">
<h1>Log in</h1>
{reset}{problem}
<form method="post" action="/login" class="stack">
<label>User name<input name="username" value="{username}" required autocomplete="username" autocapitalize="none" spellcheck="false" autofocus></label>
<label>Password<input name="password" type="password" required autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form>
<p class="help">Forgot the password? An administrator can set a new one; on the box's serial console, <code>cairn ctl user passwd NAME</code> always can.</p>
</section>"#,
        problem = problem(e),
        username = esc(username),
    );
    layout("Log in", None, None, &body)
}

fn duration(seconds: u64) -> String {
    let (d, h, m) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// After a reset (the pin or the System page): what it did, and the offer to put the settings back.
fn reset_notice(r: &cairn_reset::LastReset, csrf: &str) -> String {
    let what = match r.tier {
        cairn_reset::Tier::Network => "the network settings, the box's name and the administrator passwords were reset; users, groups, shares and volumes were kept",
        _ => "every setting was reset; the data volumes were not touched (import them on the Storage page if they show as found)",
    };
    let by = match r.trigger {
        cairn_reset::Trigger::Pin => "the reset pin",
        cairn_reset::Trigger::Dashboard => "the System page",
    };
    let undo = if r.undo_available {
        format!(
            r#"<div class="row"><form method="post" action="/system/reset/undo"><input type="hidden" name="csrf_token" value="{t}"><button>Restore the settings from before the reset</button></form><form method="post" action="/system/reset/dismiss"><input type="hidden" name="csrf_token" value="{t}"><button class="secondary">Keep the reset</button></form></div>"#,
            t = esc(csrf)
        )
    } else {
        String::new()
    };
    format!(
        r#"<div class="problem" role="alert" id="settings-reset"><strong>The settings were reset</strong> by {by}: {what}. {more}{undo}</div>"#,
        more = if r.undo_available {
            "The settings from before are kept until you choose."
        } else {
            ""
        },
    )
}

/// The dashboard's front page.
pub(crate) fn home(
    user: &User,
    session: &Session,
    health: &serde_json::Value,
    last_update: Option<&serde_json::Value>,
    last_reset: Option<&cairn_reset::LastReset>,
) -> String {
    let reset_notice = last_reset.map_or(String::new(), |r| reset_notice(r, &session.csrf_token));
    let rolled_back = last_update
        .filter(|l| l["outcome"] == "rolled_back")
        .map_or(String::new(), |l| {
            format!(
                r#"<div class="problem" role="alert" id="update-rolled-back"><strong>The update to version {} did not start properly</strong> (it failed its health check in slot {}, {}), so the box went back to the version it ran before, with its settings as they were. It will not install that version again by itself. <a href="/system#firmware">Firmware</a></div>"#,
                esc(l["version"].as_str().unwrap_or("?")),
                esc(&l["slot"].as_str().unwrap_or("?").to_uppercase()),
                esc(l["at"].as_str().unwrap_or("")),
            )
        });
    let admin_tools = if user.role == Role::Admin {
        format!(
            r#"<section class="card">
<h2>Power</h2>
<p>Services stop and settings are written out before the box restarts or powers off.</p>
<div class="row">
<form method="post" action="/system/reboot"><input type="hidden" name="csrf_token" value="{t}"><button class="secondary">Restart</button></form>
<form method="post" action="/system/poweroff"><input type="hidden" name="csrf_token" value="{t}"><button class="secondary">Power off</button></form>
</div>
</section>"#,
            t = esc(&session.csrf_token)
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"{reset_notice}{rolled_back}<section class="card">
<h1>Hello, {name}</h1>
<dl class="facts">
<dt>Board</dt><dd>{board}</dd>
<dt>Firmware</dt><dd>{version}</dd>
<dt>Up for</dt><dd>{uptime}</dd>
</dl>
</section>
{admin_tools}"#,
        name = esc(if user.full_name.is_empty() {
            &user.name
        } else {
            &user.full_name
        }),
        board = esc(health["board"].as_str().unwrap_or("")),
        version = esc(health["version"].as_str().unwrap_or("")),
        uptime = duration(health["uptime_s"].as_u64().unwrap_or(0)),
    );
    layout("Home", Some(user), Some(&session.csrf_token), &body)
}

/// A message after an action, with a way back.
pub(crate) fn notice(user: &User, title: &str, text: &str) -> String {
    let body = format!(
        r#"<section class="card"><h1>{}</h1><p>{}</p></section>"#,
        esc(title),
        esc(text)
    );
    layout(title, Some(user), None, &body)
}

/// An error page: the message, what to do, and the stable code for searching.
pub(crate) fn error(e: &Error, user: Option<&User>) -> String {
    let body = format!(
        r#"<section class="card">{}<p><a href="/">Back to the dashboard</a></p></section>"#,
        problem(Some(e))
    );
    layout("Problem", user, None, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_owners_expect() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human(5 * 1024_u64.pow(4)), "5.0 TiB");
    }
}
