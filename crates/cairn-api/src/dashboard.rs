//! The dashboard's management pages: users, groups, shares, system, and every user's own account page.
//! Plain forms posting back to the same address; an error re-renders the form with message, hint and code.

use crate::error::ApiError;
use crate::http::{self, esc, form_field, Resp};
use crate::pages::{layout, problem};
use crate::resources::{blocking, update_me, MePatch};
use crate::routes::{Caller, Ctx};
use crate::system;
use cairn_accounts::{Access, Level, NewShare, NewUser, Role, SharePatch, User, UserPatch};
use hyper::{Method, StatusCode};

fn page_with(c: &Caller, title: &str, status: StatusCode, body: String) -> Resp {
    http::html(
        status,
        layout(title, Some(&c.user), Some(&c.session.csrf_token), &body),
    )
}

fn csrf_field(c: &Caller) -> String {
    format!(
        r#"<input type="hidden" name="csrf_token" value="{}">"#,
        esc(&c.session.csrf_token)
    )
}

fn notice(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(r#"<div class="notice" role="status">{}</div>"#, esc(text))
    }
}

fn redirect_to(to: String) -> Resp {
    http::redirect(&to, None)
}

/// Members typed as "alice, bob" or "alice bob".
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

/// Handles dashboard pages beyond home, setup and login. `None` when the path is not one of them.
pub(crate) async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    path: &str,
) -> Option<Result<Resp, ApiError>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let known = matches!(
        segs.first(),
        Some(&("users" | "groups" | "shares" | "system" | "me"))
    );
    if !known || segs.len() > 4 || matches!(segs.as_slice(), ["system", "reboot" | "poweroff"]) {
        return None;
    }
    Some(handle(ctx, method, &segs).await)
}

async fn handle(ctx: &Ctx<'_>, method: &Method, segs: &[&str]) -> Result<Resp, ApiError> {
    let c = ctx.caller()?;
    let form = http::parse_form(&ctx.body);
    let f = |k: &str| form_field(&form, k).to_string();
    match (method, segs) {
        (&Method::GET, ["me"]) => me_page(ctx, c, None, ""),
        (&Method::POST, ["me"]) => {
            let patch = MePatch {
                email: Some(f("email").trim().to_string()),
                full_name: Some(f("full_name")),
                password: None,
                current_password: None,
            };
            match update_me(ctx, patch).await {
                Ok(()) => Ok(redirect_to("/me?saved=profile".into())),
                Err(e) => me_page(ctx, c, Some(&e), ""),
            }
        }
        (&Method::POST, ["me", "password"]) => {
            if f("password") != f("password_again") {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "user.password_mismatch",
                    "The two new passwords differ.",
                    "Type the same new password in both fields.",
                );
                return me_page(ctx, c, Some(&e), "");
            }
            let patch = MePatch {
                email: None,
                full_name: None,
                password: Some(f("password")),
                current_password: Some(f("current_password")),
            };
            match update_me(ctx, patch).await {
                Ok(()) => Ok(redirect_to("/me?saved=password".into())),
                Err(e) => me_page(ctx, c, Some(&e), ""),
            }
        }
        (&Method::POST, ["me", "sessions", id, "revoke"]) => {
            ctx.app.accounts.revoke_session(&c.user.name, id)?;
            Ok(redirect_to("/me".into()))
        }
        _ => admin_pages(ctx, method, segs, &f).await,
    }
}

async fn admin_pages(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
    f: &(dyn Fn(&str) -> String + Sync),
) -> Result<Resp, ApiError> {
    let c = ctx.admin()?;
    let accounts = &ctx.app.accounts;
    match (method, segs) {
        (&Method::GET, ["users"]) => users_page(ctx, c, None, ""),
        (&Method::POST, ["users"]) => {
            let new = NewUser {
                name: f("name").trim().to_string(),
                full_name: f("full_name"),
                email: f("email").trim().to_string(),
                role: parse_role(&f("role")),
                enabled: true,
                password: f("password"),
            };
            let a = accounts.clone();
            match blocking(move || a.create_user(new)).await {
                Ok(u) => {
                    ctx.app.changed();
                    Ok(redirect_to(format!("/users/{}?created=1", u.name)))
                }
                Err(e) => users_page(ctx, c, Some(&e), ""),
            }
        }
        (&Method::GET, ["users", name]) => {
            let user = accounts.require_user(name)?;
            user_page(c, &user, None)
        }
        (&Method::POST, ["users", name]) => {
            let user = accounts.require_user(name)?;
            let password = f("password");
            let patch = UserPatch {
                full_name: Some(f("full_name")),
                email: Some(f("email").trim().to_string()),
                role: Some(parse_role(&f("role"))),
                enabled: Some(f("enabled") == "on"),
                password: (!password.is_empty()).then_some(password),
            };
            let (a, n) = (accounts.clone(), name.to_string());
            match blocking(move || a.update_user(&n, patch)).await {
                Ok(u) => {
                    ctx.app.changed();
                    Ok(redirect_to(format!("/users/{}?saved=1", u.name)))
                }
                Err(e) => user_page(c, &user, Some(&e)),
            }
        }
        (&Method::POST, ["users", name, "delete"]) => match accounts.delete_user(name) {
            Ok(()) => {
                ctx.app.changed();
                Ok(redirect_to("/users".into()))
            }
            Err(e) => {
                let user = accounts.require_user(name)?;
                user_page(c, &user, Some(&ApiError::from(e)))
            }
        },
        (&Method::GET, ["groups"]) => groups_page(ctx, c, None),
        (&Method::POST, ["groups"]) => {
            let members = parse_members(&f("members"));
            match accounts.create_group(f("name").trim(), &members) {
                Ok(_) => {
                    ctx.app.changed();
                    Ok(redirect_to("/groups".into()))
                }
                Err(e) => groups_page(ctx, c, Some(&ApiError::from(e))),
            }
        }
        (&Method::POST, ["groups", name]) => {
            let members = parse_members(&f("members"));
            match accounts.update_group(name, &members) {
                Ok(_) => {
                    ctx.app.changed();
                    Ok(redirect_to("/groups".into()))
                }
                Err(e) => groups_page(ctx, c, Some(&ApiError::from(e))),
            }
        }
        (&Method::POST, ["groups", name, "delete"]) => match accounts.delete_group(name) {
            Ok(()) => {
                ctx.app.changed();
                Ok(redirect_to("/groups".into()))
            }
            Err(e) => groups_page(ctx, c, Some(&ApiError::from(e))),
        },
        (&Method::GET, ["shares"]) => shares_page(ctx, c, None),
        (&Method::POST, ["shares"]) => {
            let path = f("path");
            let volume = f("volume");
            let volume = (!volume.is_empty()).then_some(volume);
            if let Err(e) = crate::resources::check_volume(ctx, volume.as_deref()) {
                return shares_page(ctx, c, Some(&e));
            }
            let new = NewShare {
                name: f("name").trim().to_string(),
                description: f("description"),
                volume,
                path: (!path.trim().is_empty()).then(|| path.trim().to_string()),
                guest: f("guest") == "on",
                access: Access::default(),
            };
            match accounts.create_share(new) {
                Ok(s) => {
                    ctx.app.changed();
                    Ok(redirect_to(format!("/shares/{}?created=1", s.name)))
                }
                Err(e) => shares_page(ctx, c, Some(&ApiError::from(e))),
            }
        }
        (&Method::GET, ["shares", name]) => share_page(ctx, c, name, None),
        (&Method::POST, ["shares", name]) => {
            let mut access = Access::default();
            for u in accounts.users()? {
                if let Some(l) = parse_level(&f(&format!("user:{}", u.name))) {
                    access.users.insert(u.name, l);
                }
            }
            for g in accounts.groups()? {
                if let Some(l) = parse_level(&f(&format!("group:{}", g.name))) {
                    access.groups.insert(g.name, l);
                }
            }
            let patch = SharePatch {
                description: Some(f("description")),
                guest: Some(f("guest") == "on"),
                access: Some(access),
            };
            match accounts.update_share(name, patch) {
                Ok(_) => {
                    ctx.app.changed();
                    Ok(redirect_to(format!("/shares/{name}?saved=1")))
                }
                Err(e) => share_page(ctx, c, name, Some(&ApiError::from(e))),
            }
        }
        (&Method::POST, ["shares", name, "delete"]) => {
            accounts.delete_share(name)?;
            ctx.app.changed();
            Ok(redirect_to("/shares".into()))
        }
        (&Method::GET, ["system"]) => system_page(ctx, c, None),
        (&Method::POST, ["system", "network"]) => {
            let ip = |k: &str| f(k).trim().parse().ok();
            let settings = if f("mode") == "static" {
                crate::network::NetworkSettings {
                    mode: crate::network::Mode::Static,
                    address: ip("address"),
                    prefix: f("prefix").trim().parse().ok(),
                    gateway: ip("gateway"),
                    dns: f("dns")
                        .split([',', ' '])
                        .filter_map(|d| d.trim().parse().ok())
                        .collect(),
                }
            } else {
                crate::network::NetworkSettings::default()
            };
            let bad_field = settings.mode == crate::network::Mode::Static
                && ((settings.address.is_none() && !f("address").trim().is_empty())
                    || (settings.gateway.is_none() && !f("gateway").trim().is_empty()));
            if bad_field {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "network.invalid",
                    "An address is not written as four numbers like 192.168.1.20.",
                    "Check the address and gateway fields.",
                );
                return system_page(ctx, c, Some(&e));
            }
            match crate::network::change(&ctx.shared, settings) {
                Ok(_) => Ok(redirect_to("/system".into())),
                Err(e) => system_page(ctx, c, Some(&e)),
            }
        }
        (&Method::POST, ["system", "network", "confirm"]) => match crate::network::confirm(ctx.app)
        {
            Ok(_) => Ok(redirect_to("/system".into())),
            Err(e) => system_page(ctx, c, Some(&e)),
        },
        (&Method::POST, ["system"]) => match system::update(
            ctx.app,
            system::SystemPatch {
                hostname: Some(f("hostname").trim().to_string()),
            },
        ) {
            Ok(()) => Ok(redirect_to("/system?saved=1".into())),
            Err(e) => system_page(ctx, c, Some(&e)),
        },
        _ => Err(ApiError::not_found()),
    }
}

fn parse_level(v: &str) -> Option<Level> {
    match v {
        "read" => Some(Level::Read),
        "write" => Some(Level::Write),
        _ => None,
    }
}

fn status_of(e: Option<&ApiError>) -> StatusCode {
    e.map(|e| e.status).unwrap_or(StatusCode::OK)
}

fn users_page(ctx: &Ctx, c: &Caller, e: Option<&ApiError>, note: &str) -> Result<Resp, ApiError> {
    let rows: String = ctx
        .app
        .accounts
        .users()?
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
        note = notice(note),
        problem = problem(e),
        csrf = csrf_field(c),
        role = role_select(Role::User),
    );
    Ok(page_with(c, "Users", status_of(e), body))
}

fn user_page(c: &Caller, u: &User, e: Option<&ApiError>) -> Result<Resp, ApiError> {
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
    Ok(page_with(
        c,
        &format!("User {}", u.name),
        status_of(e),
        body,
    ))
}

fn groups_page(ctx: &Ctx, c: &Caller, e: Option<&ApiError>) -> Result<Resp, ApiError> {
    let rows: String = ctx
        .app
        .accounts
        .groups()?
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
    Ok(page_with(c, "Groups", status_of(e), body))
}

/// " · 1.2 GiB": space a share's folder takes (counted up to 100,000 entries, then shown as a floor).
fn share_usage(ctx: &Ctx, share: &cairn_accounts::Share) -> String {
    let used = crate::resources::share_dir(ctx, share)
        .map(|dir| cairn_storage::manager::used_bytes(&dir, 100_000));
    match used {
        Some((bytes, complete)) => format!(
            " · {}{}",
            if complete { "" } else { "over " },
            crate::storage_page::human(bytes)
        ),
        None if share.volume != cairn_accounts::SYSTEM_VOLUME
            && !ctx
                .app
                .storage
                .as_ref()
                .is_some_and(|s| s.mounted_roots().contains_key(&share.volume)) =>
        {
            " · volume not available".into()
        }
        None => String::new(),
    }
}

/// The volumes a new share may go on: data volumes that are mounted, then the small system volume.
fn volume_options(ctx: &Ctx) -> String {
    let mut out = String::new();
    if let Some(s) = &ctx.app.storage {
        for name in s.mounted_roots().keys() {
            out.push_str(&format!(r#"<option value="{0}">{0}</option>"#, esc(name)));
        }
    }
    out.push_str(r#"<option value="system">system (small, on the settings partition)</option>"#);
    out
}

fn shares_page(ctx: &Ctx, c: &Caller, e: Option<&ApiError>) -> Result<Resp, ApiError> {
    let shares = ctx.app.accounts.shares()?;
    // Counting space walks each folder: on long lists it is left to each share's page and the API.
    let many = shares.len() > 100;
    let rows: String = shares
        .iter()
        .map(|s| {
            let who = s.access.users.len() + s.access.groups.len();
            format!(
                r#"<tr><td><a href="/shares/{n}">{n}</a></td><td class="opt">{d}</td><td>{vol}{used}</td><td>{who} {entries}{guest}</td></tr>"#,
                n = esc(&s.name),
                vol = esc(&s.volume),
                used = if many { String::new() } else { share_usage(ctx, s) },
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
        volumes = volume_options(ctx),
    );
    Ok(page_with(c, "Shares", status_of(e), body))
}

fn share_page(ctx: &Ctx, c: &Caller, name: &str, e: Option<&ApiError>) -> Result<Resp, ApiError> {
    let accounts = &ctx.app.accounts;
    let share = accounts.require_share(name)?;
    let users: String = accounts
        .users()?
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
    let groups: String = accounts
        .groups()?
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
    Ok(page_with(
        c,
        &format!("Share {}", share.name),
        status_of(e),
        body,
    ))
}

fn system_page(ctx: &Ctx, c: &Caller, e: Option<&ApiError>) -> Result<Resp, ApiError> {
    let body = format!(
        r#"<section class="card"><h1>System</h1>{problem}
<form method="post" action="/system" class="stack">{csrf}
<label>Host name<input name="hostname" value="{h}" maxlength="63" autocapitalize="none"></label>
<p class="help">The box answers to this name and NAME.local. Renaming keeps everyone logged in.</p>
<button type="submit">Save</button></form></section>
{network}"#,
        problem = problem(e),
        csrf = csrf_field(c),
        h = esc(&system::hostname(ctx.app)),
        network = network_section(ctx, c),
    );
    Ok(page_with(c, "System", status_of(e), body))
}

fn me_page(ctx: &Ctx, c: &Caller, e: Option<&ApiError>, note: &str) -> Result<Resp, ApiError> {
    // The page re-reads the account: a change just made must show.
    let user = ctx
        .app
        .accounts
        .user(&c.user.name)?
        .unwrap_or_else(|| c.user.clone());
    let shares: String = ctx
        .app
        .accounts
        .access_of(&user.name)?
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
    let sessions: String = ctx
        .app
        .accounts
        .sessions_of(&user.name)?
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
    let _ = note;
    Ok(page_with(c, "My account", status_of(e), body))
}

fn network_section(ctx: &Ctx, c: &Caller) -> String {
    use crate::network::Mode;
    let v = crate::network::describe(ctx.app).unwrap_or_default();
    let current = crate::network::confirmed(ctx.app);
    let pending = match v.get("confirm_by").and_then(|t| t.as_u64()) {
        Some(by) => format!(
            r#"<div class="notice" role="status">New network settings are on trial. Unless they are confirmed within {left} s, the previous ones come back by themselves.
<form method="post" action="/system/network/confirm" data-auto-confirm>{csrf}<button type="submit">Keep the new settings</button></form></div>"#,
            left = by.saturating_sub(cairn_accounts::now_s()),
            csrf = csrf_field(c)
        ),
        None => String::new(),
    };
    let opt = |v: &str, label: &str, on: bool| {
        format!(
            r#"<option value="{v}"{}>{label}</option>"#,
            if on { " selected" } else { "" }
        )
    };
    let show = |a: Option<String>| esc(&a.unwrap_or_default());
    format!(
        r#"<section class="card"><h2>Network</h2>{pending}
<form method="post" action="/system/network" class="stack">{csrf}
<label>Address<select name="mode">{dhcp}{fixed}</select></label>
<div class="grid2"><label>Address (static)<input name="address" value="{addr}" inputmode="decimal"></label>
<label>Prefix length<input name="prefix" value="{prefix}" inputmode="numeric"></label></div>
<div class="grid2"><label>Gateway<input name="gateway" value="{gw}" inputmode="decimal"></label>
<label>DNS servers<input name="dns" value="{dns}"></label></div>
<p class="help">A change applies at once and is kept only when confirmed within 120 s, so a mistake can never lock you out. Sessions stay valid at the new address.</p>
<button type="submit">Apply</button></form>
<script src="/static/cairn.js"></script></section>"#,
        csrf = csrf_field(c),
        dhcp = opt("dhcp", "Automatic (DHCP)", current.mode == Mode::Dhcp),
        fixed = opt("static", "Static", current.mode == Mode::Static),
        addr = show(current.address.map(|a| a.to_string())),
        prefix = show(current.prefix.map(|p| p.to_string())),
        gw = show(current.gateway.map(|g| g.to_string())),
        dns = esc(&current
            .dns
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")),
    )
}
