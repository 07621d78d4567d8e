//! The Users, Groups and Shares pages, and everyone's own account page.

use super::{csrf_field, human, notice_line, page, problem, status_of, Form};
use crate::auth::{Caller, Ctx, Params};
use crate::controller::accounts::{self as ctl, MePatch};
use crate::controller::storage::mounted_volumes;
use crate::error::{Error, RequestError};
use crate::http::{self, esc, Resp};
use cairn_accounts::{Access, Level, NewShare, NewUser, Role, SharePatch, User, UserPatch};

fn redirect_to(to: String) -> Resp {
    http::redirect(&to, None)
}

pub(crate) async fn users(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    users_page(ctx, ctx.caller()?, None, "")
}

pub(crate) async fn create_user(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let new = NewUser {
        name: f.trimmed("name"),
        full_name: f.get("full_name"),
        email: f.trimmed("email"),
        role: parse_role(&f.get("role")),
        enabled: true,
        password: f.get("password"),
    };
    match ctl::create_user(&ctx.app, new).await {
        Ok(u) => Ok(redirect_to(format!("/users/{}?created=1", u.name))),
        Err(e) => users_page(ctx, ctx.caller()?, Some(&e), ""),
    }
}

pub(crate) async fn user(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    user_page(ctx.caller()?, &ctl::user(&ctx.app, p.get("name"))?, None)
}

pub(crate) async fn update_user(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let user = ctl::user(&ctx.app, p.get("name"))?;
    let f = Form::of(ctx);
    let password = f.get("password");
    let patch = UserPatch {
        full_name: Some(f.get("full_name")),
        email: Some(f.trimmed("email")),
        role: Some(parse_role(&f.get("role"))),
        enabled: Some(f.get("enabled") == "on"),
        password: (!password.is_empty()).then_some(password),
    };
    match ctl::update_user(&ctx.app, &user.name, patch).await {
        Ok(u) => Ok(redirect_to(format!("/users/{}?saved=1", u.name))),
        Err(e) => user_page(ctx.caller()?, &user, Some(&e)),
    }
}

pub(crate) async fn delete_user(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    match ctl::delete_user(&ctx.app, p.get("name")).await {
        Ok(()) => Ok(redirect_to("/users".into())),
        Err(e) => user_page(
            ctx.caller()?,
            &ctl::user(&ctx.app, p.get("name"))?,
            Some(&e),
        ),
    }
}

pub(crate) async fn groups(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    groups_page(ctx, ctx.caller()?, None)
}

pub(crate) async fn create_group(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let members = parse_members(&f.get("members"));
    match ctl::create_group(&ctx.app, &f.trimmed("name"), members).await {
        Ok(_) => Ok(redirect_to("/groups".into())),
        Err(e) => groups_page(ctx, ctx.caller()?, Some(&e)),
    }
}

pub(crate) async fn update_group(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let members = parse_members(&Form::of(ctx).get("members"));
    match ctl::update_group(&ctx.app, p.get("name"), members).await {
        Ok(_) => Ok(redirect_to("/groups".into())),
        Err(e) => groups_page(ctx, ctx.caller()?, Some(&e)),
    }
}

pub(crate) async fn delete_group(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    match ctl::delete_group(&ctx.app, p.get("name")).await {
        Ok(()) => Ok(redirect_to("/groups".into())),
        Err(e) => groups_page(ctx, ctx.caller()?, Some(&e)),
    }
}

pub(crate) async fn shares(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    shares_page(ctx, ctx.caller()?, None).await
}

pub(crate) async fn create_share(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let path = f.trimmed("path");
    let volume = f.get("volume");
    let new = NewShare {
        name: f.trimmed("name"),
        description: f.get("description"),
        volume: (!volume.is_empty()).then_some(volume),
        path: (!path.is_empty()).then_some(path),
        guest: f.get("guest") == "on",
        access: Access::default(),
    };
    match ctl::create_share(&ctx.app, new).await {
        Ok(s) => Ok(redirect_to(format!("/shares/{}?created=1", s.name))),
        Err(e) => shares_page(ctx, ctx.caller()?, Some(&e)).await,
    }
}

pub(crate) async fn share(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    share_page(ctx, ctx.caller()?, p.get("name"), None)
}

pub(crate) async fn update_share(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let name = p.get("name");
    let f = Form::of(ctx);
    let mut access = Access::default();
    for u in ctl::users(&ctx.app)? {
        if let Some(l) = parse_level(&f.get(&format!("user:{}", u.name))) {
            access.users.insert(u.name, l);
        }
    }
    for g in ctl::groups(&ctx.app)? {
        if let Some(l) = parse_level(&f.get(&format!("group:{}", g.name))) {
            access.groups.insert(g.name, l);
        }
    }
    let patch = SharePatch {
        description: Some(f.get("description")),
        guest: Some(f.get("guest") == "on"),
        access: Some(access),
    };
    match ctl::update_share(&ctx.app, name, patch).await {
        Ok(_) => Ok(redirect_to(format!("/shares/{name}?saved=1"))),
        Err(e) => share_page(ctx, ctx.caller()?, name, Some(&e)),
    }
}

pub(crate) async fn delete_share(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ctl::delete_share(&ctx.app, p.get("name")).await?;
    Ok(redirect_to("/shares".into()))
}

pub(crate) async fn me(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    me_page(ctx, ctx.caller()?, None)
}

pub(crate) async fn update_me(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let patch = MePatch {
        email: Some(f.trimmed("email")),
        full_name: Some(f.get("full_name")),
        ..MePatch::default()
    };
    let c = ctx.caller()?;
    match ctl::update_me(ctx, patch).await {
        Ok(()) => Ok(redirect_to("/me?saved=profile".into())),
        Err(e) => me_page(ctx, c, Some(&e)),
    }
}

pub(crate) async fn change_password(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let c = ctx.caller()?;
    if f.get("password") != f.get("password_again") {
        return me_page(ctx, c, Some(&RequestError::PasswordMismatch.into()));
    }
    let patch = MePatch {
        password: Some(f.get("password")),
        current_password: Some(f.get("current_password")),
        ..MePatch::default()
    };
    match ctl::update_me(ctx, patch).await {
        Ok(()) => Ok(redirect_to("/me?saved=password".into())),
        Err(e) => me_page(ctx, c, Some(&e)),
    }
}

pub(crate) async fn revoke_session(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    // A session already gone needs no error: the page lists what is left.
    ctl::revoke_session(&ctx.app, &ctx.caller()?.user.name, p.get("id")).await?;
    Ok(redirect_to("/me".into()))
}

fn parse_members(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

fn role_select(selected: Role) -> String {
    let opt = |r: Role, label: &str| {
        format!(
            r#"<option value="{v}"{s}>{label}</option>"#,
            v = if r == Role::Admin { "admin" } else { "user" },
            s = if r == selected { " selected" } else { "" }
        )
    };
    format!(
        r#"<select name="role">{}{}</select>"#,
        opt(Role::User, "User"),
        opt(Role::Admin, "Administrator")
    )
}

fn parse_role(v: &str) -> Role {
    if v == "admin" {
        Role::Admin
    } else {
        Role::User
    }
}

fn level_select(name: &str, current: Option<Level>) -> String {
    let opt = |v: &str, label: &str, on: bool| {
        format!(
            r#"<option value="{v}"{}>{label}</option>"#,
            if on { " selected" } else { "" }
        )
    };
    format!(
        r#"<select name="{}">{}{}{}</select>"#,
        esc(name),
        opt("none", "No access", current.is_none()),
        opt("read", "Read", current == Some(Level::Read)),
        opt("write", "Read and write", current == Some(Level::Write))
    )
}

fn parse_level(v: &str) -> Option<Level> {
    match v {
        "read" => Some(Level::Read),
        "write" => Some(Level::Write),
        _ => None,
    }
}

fn users_page(ctx: &Ctx, c: &Caller, e: Option<&Error>, note: &str) -> Result<Resp, Error> {
    let rows: String = ctl::users(&ctx.app)?
        .iter()
        .map(|u| {
            format!(
                r#"<tr><td><a href="/users/{n}">{n}</a></td><td class="opt">{full}</td><td class="opt">{email}</td><td>{role}</td><td>{state}</td></tr>"#,
                n = esc(&u.name),
                full = esc(&u.full_name),
                email = esc(&u.email),
                role = if u.role == Role::Admin { "Administrator" } else { "User" },
                state = if u.enabled { "Enabled" } else { "Disabled" }
            )
        })
        .collect();
    let body = format!(
        r#"<section class="card"><h1>Users</h1>{note}
<table><thead><tr><th>Name</th><th class="opt">Full name</th><th class="opt">E-mail</th><th>Role</th><th>State</th></tr></thead><tbody>{rows}</tbody></table></section>
<section class="card"><h2>Add a user</h2>{problem}
<form method="post" action="/users" class="stack">{csrf}
<div class="grid2"><label>User name<input name="name" required maxlength="32" autocapitalize="none" spellcheck="false"></label>
<label>Full name<input name="full_name" maxlength="128"></label></div>
<div class="grid2"><label>E-mail<input name="email" type="email"></label><label>Role{role}</label></div>
<label>Password<input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
<p class="help">The same password works for the dashboard and for file sharing (SMB).</p>
<button type="submit">Add user</button></form></section>"#,
        note = notice_line(note),
        problem = problem(e),
        csrf = csrf_field(c),
        role = role_select(Role::User),
    );
    Ok(page(c, "Users", status_of(e), body))
}

fn user_page(c: &Caller, u: &User, e: Option<&Error>) -> Result<Resp, Error> {
    let body = format!(
        r#"<section class="card"><h1>User {n}</h1>{problem}
<form method="post" action="/users/{n}" class="stack">{csrf}
<div class="grid2"><label>Full name<input name="full_name" value="{full}" maxlength="128"></label>
<label>E-mail<input name="email" type="email" value="{email}"></label></div>
<div class="grid2"><label>Role{role}</label>
<label class="check"><input type="checkbox" name="enabled"{enabled}> Enabled (may log in and use shares)</label></div>
<label>New password<input name="password" type="password" minlength="8" autocomplete="new-password"></label>
<p class="help">Leave empty to keep the current password. A new one applies to the dashboard and SMB at once and ends this user's other sessions.</p>
<button type="submit">Save</button></form></section>
<section class="card"><h2>Delete</h2><p>Removes the account, its group memberships, its share access and its sessions. Files stay.</p>
<form method="post" action="/users/{n}/delete">{csrf}<button class="danger">Delete {n}</button></form></section>"#,
        n = esc(&u.name),
        problem = problem(e),
        csrf = csrf_field(c),
        full = esc(&u.full_name),
        email = esc(&u.email),
        role = role_select(u.role),
        enabled = if u.enabled { " checked" } else { "" },
    );
    Ok(page(c, &format!("User {}", u.name), status_of(e), body))
}

fn groups_page(ctx: &Ctx, c: &Caller, e: Option<&Error>) -> Result<Resp, Error> {
    let rows: String = ctl::groups(&ctx.app)?
        .iter()
        .map(|g| {
            format!(
                r#"<tr><td>{n}</td><td><form method="post" action="/groups/{n}" class="row">{csrf}<input name="members" value="{m}" aria-label="Members of {n}"><button class="secondary">Save</button></form></td>
<td><form method="post" action="/groups/{n}/delete">{csrf}<button class="secondary">Delete</button></form></td></tr>"#,
                n = esc(&g.name),
                m = esc(&g.members.join(", ")),
                csrf = csrf_field(c)
            )
        })
        .collect();
    let body = format!(
        r#"<section class="card"><h1>Groups</h1>{problem}<p class="lead">Give a group access to a share and every member gets it.</p>
<table><thead><tr><th>Group</th><th>Members (comma-separated)</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>
<section class="card"><h2>Add a group</h2><form method="post" action="/groups" class="stack">{csrf}
<label>Group name<input name="name" required maxlength="32" autocapitalize="none"></label>
<label>Members<input name="members" placeholder="alice, bob"></label><button type="submit">Add group</button></form></section>"#,
        problem = problem(e),
        csrf = csrf_field(c)
    );
    Ok(page(c, "Groups", status_of(e), body))
}

/// " · 1.2 GiB, measured 3 min ago": the last figure of the space a share's folder takes (counted up to a
/// limit, then shown as a floor) and its age; the walk itself runs in the background.
fn usage_text(figure: Option<ctl::Figure>, now_s: u64) -> String {
    let Some(figure) = figure else {
        return r#" · <span class="help">being measured</span>"#.into();
    };
    let age = ctl::age(now_s.saturating_sub(figure.measured_s));
    match figure.usage {
        ctl::ShareUsage::Counted { bytes, complete } => format!(
            r#" · {}{} <span class="help">measured {age}</span>"#,
            if complete { "" } else { "over " },
            human(bytes)
        ),
        ctl::ShareUsage::VolumeUnavailable => " · volume not available".into(),
        ctl::ShareUsage::NoFolder => String::new(),
    }
}

/// The volumes a new share may go on: data volumes that are mounted, then the small system volume.
async fn volume_options(ctx: &Ctx) -> String {
    let mut out = String::new();
    for name in mounted_volumes(&ctx.app).await {
        out.push_str(&format!(r#"<option value="{0}">{0}</option>"#, esc(&name)));
    }
    out.push_str(r#"<option value="system">system (small, on the settings partition)</option>"#);
    out
}

async fn shares_page(ctx: &Ctx, c: &Caller, e: Option<&Error>) -> Result<Resp, Error> {
    let shares = ctl::shares(&ctx.app)?;
    let now = cairn_accounts::now_s();
    let used: Vec<String> = ctl::share_usages(&ctx.app, &shares)
        .into_iter()
        .map(|f| usage_text(f, now))
        .collect();
    let rows: String = shares
        .iter()
        .zip(used)
        .map(|(s, used)| {
            let who = s.access.users.len() + s.access.groups.len();
            format!(
                r#"<tr><td><a href="/shares/{n}">{n}</a></td><td class="opt">{d}</td><td>{vol}{used}</td><td>{who} {entries}{guest}</td></tr>"#,
                n = esc(&s.name),
                vol = esc(&s.volume),
                d = esc(&s.description),
                entries = if who == 1 { "entry" } else { "entries" },
                guest = if s.guest { ", guests may read" } else { "" }
            )
        })
        .collect();
    let body = format!(
        r#"<section class="card"><h1>Shares</h1>
<table><thead><tr><th>Share</th><th class="opt">Description</th><th>Volume · used</th><th>Access</th></tr></thead><tbody>{rows}</tbody></table></section>
<section class="card"><h2>Add a share</h2>{problem}<form method="post" action="/shares" class="stack">{csrf}
<div class="grid2"><label>Share name<input name="name" required maxlength="32" autocapitalize="none"></label>
<label>Folder<input name="path" placeholder="same as the name"></label></div>
<label>Volume<select name="volume">{volumes}</select></label>
<label>Description<input name="description" maxlength="256"></label>
<label class="check"><input type="checkbox" name="guest"> Guests without an account may read</label>
<p class="help">Nobody has access until you give it on the share's page.</p>
<button type="submit">Add share</button></form></section>"#,
        problem = problem(e),
        csrf = csrf_field(c),
        volumes = volume_options(ctx).await,
    );
    Ok(page(c, "Shares", status_of(e), body))
}

fn share_page(ctx: &Ctx, c: &Caller, name: &str, e: Option<&Error>) -> Result<Resp, Error> {
    let share = ctl::share(&ctx.app, name)?;
    let users: String = ctl::users(&ctx.app)?
        .iter()
        .map(|u| {
            format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&u.name),
                level_select(
                    &format!("user:{}", u.name),
                    share.access.users.get(&u.name).copied()
                )
            )
        })
        .collect();
    let groups: String = ctl::groups(&ctx.app)?
        .iter()
        .map(|g| {
            format!(
                "<tr><td>@{}</td><td>{}</td></tr>",
                esc(&g.name),
                level_select(
                    &format!("group:{}", g.name),
                    share.access.groups.get(&g.name).copied()
                )
            )
        })
        .collect();
    let body = format!(
        r#"<section class="card"><h1>Share {n}</h1>{problem}
<p class="lead">Folder <code>{path}</code> on volume {volume}. On Windows: <code>\\&lt;box&gt;\{n}</code>; on macOS and Linux: <code>smb://&lt;box&gt;/{n}</code>.</p>
<form method="post" action="/shares/{n}" class="stack">{csrf}
<label>Description<input name="description" value="{d}" maxlength="256"></label>
<label class="check"><input type="checkbox" name="guest"{guest}> Guests without an account may read</label>
<table><thead><tr><th>Who</th><th>Access</th></tr></thead><tbody>{users}{groups}</tbody></table>
<button type="submit">Save</button></form></section>
<section class="card"><h2>Delete</h2><p>Stops sharing the folder. Its files stay on the volume.</p>
<form method="post" action="/shares/{n}/delete">{csrf}<button class="danger">Delete share {n}</button></form></section>"#,
        n = esc(&share.name),
        problem = problem(e),
        path = esc(&share.path),
        volume = esc(&share.volume),
        csrf = csrf_field(c),
        d = esc(&share.description),
        guest = if share.guest { " checked" } else { "" },
    );
    Ok(page(
        c,
        &format!("Share {}", share.name),
        status_of(e),
        body,
    ))
}

fn me_page(ctx: &Ctx, c: &Caller, e: Option<&Error>) -> Result<Resp, Error> {
    let (user, access) = ctl::me(&ctx.app, c)?;
    let shares: String = access
        .iter()
        .map(|(s, l)| {
            format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(s),
                if *l == Level::Write {
                    "Read and write"
                } else {
                    "Read"
                }
            )
        })
        .collect();
    let shares = if shares.is_empty() {
        "<tr><td colspan=\"2\">No shares yet: ask an administrator.</td></tr>".to_string()
    } else {
        shares
    };
    let sessions: String = ctl::sessions_of(&ctx.app, &user.name)?
        .iter()
        .map(|s| {
            let action = if s.id == c.session.id {
                "This browser".to_string()
            } else {
                format!(r#"<form method="post" action="/me/sessions/{}/revoke">{}<button class="secondary">Log out</button></form>"#, esc(&s.id), csrf_field(c))
            };
            format!("<tr><td>{}</td><td>{}</td></tr>", esc(&s.client), action)
        })
        .collect();
    let body = format!(
        r#"<section class="card"><h1>My account: {n}</h1>{problem}
<form method="post" action="/me" class="stack">{csrf}
<div class="grid2"><label>Full name<input name="full_name" value="{full}" maxlength="128"></label>
<label>E-mail<input name="email" type="email" value="{email}"></label></div>
<button type="submit">Save</button></form></section>
<section class="card"><h2>Password</h2><form method="post" action="/me/password" class="stack">{csrf}
<label>Current password<input name="current_password" type="password" required autocomplete="current-password"></label>
<div class="grid2"><label>New password<input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
<label>New password again<input name="password_again" type="password" required minlength="8" autocomplete="new-password"></label></div>
<p class="help">One password for the dashboard and file sharing. Your other sessions end when it changes.</p>
<button type="submit">Change password</button></form></section>
<section class="card"><h2>My shares</h2><table><tbody>{shares}</tbody></table></section>
<section class="card"><h2>Where I am logged in</h2><table><tbody>{sessions}</tbody></table></section>"#,
        n = esc(&user.name),
        problem = problem(e),
        csrf = csrf_field(c),
        full = esc(&user.full_name),
        email = esc(&user.email),
    );
    Ok(http::with_retry_after(
        page(c, "My account", status_of(e), body),
        e,
    ))
}
