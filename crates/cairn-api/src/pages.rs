//! Server-rendered pages: plain HTML forms that work without JavaScript and read well on a phone.

use crate::error::ApiError;
use crate::http::esc;
use cairn_accounts::{Role, Session, User};

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

pub(crate) fn problem(e: Option<&ApiError>) -> String {
    match e {
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
pub fn setup(e: Option<&ApiError>, username: &str, email: &str) -> String {
    let body = format!(
        r#"<section class="card">
<h1>Welcome to your Cairn box</h1>
<p class="lead">Create the administrator account. There is no default password: this account is the only way in, so keep its password somewhere safe.</p>
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

pub fn login(e: Option<&ApiError>, username: &str) -> String {
    let body = format!(
        r#"<section class="card narrow">
<h1>Log in</h1>
{problem}
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

/// The dashboard's front page.
pub fn home(user: &User, session: &Session, health: &serde_json::Value) -> String {
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
        r#"<section class="card">
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
pub fn notice(user: &User, title: &str, text: &str) -> String {
    let body = format!(
        r#"<section class="card"><h1>{}</h1><p>{}</p></section>"#,
        esc(title),
        esc(text)
    );
    layout(title, Some(user), None, &body)
}

/// An error page: the message, what to do, and the stable code for searching.
pub fn error(e: &ApiError, user: Option<&User>) -> String {
    let body = format!(
        r#"<section class="card">{}<p><a href="/">Back to the dashboard</a></p></section>"#,
        problem(Some(e))
    );
    layout("Problem", user, None, &body)
}
