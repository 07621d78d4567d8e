//! The System page: host name, network settings (applied on trial, kept once confirmed) and the HTTPS
//! certificate (its fingerprint, the owner's own, or back to one of the box's own).

use super::firmware::Checked;
use super::{csrf_field, page, problem, status_of, Form};
use crate::auth::{Caller, Ctx, Params};
use crate::controller::certificate as cert;
use crate::controller::system as ctl;
use crate::error::Error;
use crate::http::{self, esc, Resp};
use cairn_system::{Mode, NetworkRule, NetworkSettings, SystemError};

pub(crate) async fn system(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    system_page(ctx, ctx.caller()?, None, &Checked::Not).await
}

pub(crate) async fn rename(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let name = Form::of(ctx).trimmed("hostname");
    match ctl::set_hostname(&ctx.app, name).await {
        Ok(()) => Ok(http::redirect("/system?saved=1", None)),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

/// The form's fields as settings; a field that is not an address is refused rather than dropped.
fn settings_from_form(form: &Form) -> Result<NetworkSettings, Error> {
    let f = |k: &str| form.trimmed(k);
    if f("mode") != "static" {
        return Ok(NetworkSettings::default());
    }
    let ip = |k: &str| -> Result<Option<std::net::Ipv4Addr>, Error> {
        match f(k) {
            v if v.is_empty() => Ok(None),
            v => v
                .parse()
                .map(Some)
                .map_err(|_| SystemError::NetworkInvalid(NetworkRule::NotAnAddress).into()),
        }
    };
    Ok(NetworkSettings {
        mode: Mode::Static,
        address: ip("address")?,
        prefix: f("prefix").parse().ok(),
        gateway: ip("gateway")?,
        dns: f("dns")
            .split([',', ' '])
            .filter_map(|d| d.trim().parse().ok())
            .collect(),
    })
}

pub(crate) async fn change_network(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let result = match settings_from_form(&Form::of(ctx)) {
        Ok(settings) => ctl::change_network(&ctx.app, settings).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(http::redirect("/system", None)),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

pub(crate) async fn confirm_network(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    match ctl::confirm_network(&ctx.app).await {
        Ok(_) => Ok(http::redirect("/system", None)),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

pub(crate) async fn install_certificate(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let form = Form::of(ctx);
    match cert::install(&ctx.app, form.get("certificate"), form.get("key")).await {
        Ok(_) => Ok(http::redirect("/system", None)),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

pub(crate) async fn regenerate_certificate(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    match cert::regenerate(&ctx.app).await {
        Ok(_) => Ok(http::redirect("/system", None)),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

/// The page, with `e` shown at its top and the Firmware section's update check result.
pub(crate) async fn system_page(
    ctx: &Ctx,
    c: &Caller,
    e: Option<&Error>,
    checked: &Checked,
) -> Result<Resp, Error> {
    let body = format!(
        r#"<section class="card"><h1>System</h1>{problem}
<form method="post" action="/system" class="stack">{csrf}
<label>Host name<input name="hostname" value="{h}" maxlength="63" autocapitalize="none"></label>
<p class="help">The box answers to this name and NAME.local. Renaming keeps everyone logged in.</p>
<button type="submit">Save</button></form></section>
{network}
{certificate}
{firmware}
{settings}"#,
        problem = problem(e),
        csrf = csrf_field(c),
        h = esc(&ctl::hostname(&ctx.app)),
        network = network_section(ctx, c),
        certificate = certificate_section(ctx, c),
        firmware = super::firmware::section(ctx, c, checked).await,
        settings = settings_section(c, &ctl::hostname(&ctx.app)),
    );
    Ok(page(c, "System", status_of(e), body))
}

fn network_section(ctx: &Ctx, c: &Caller) -> String {
    let view = ctl::network(&ctx.app);
    let current = view.confirmed;
    let pending = match view.pending.map(|t| t.confirm_by_s) {
        Some(by) => format!(
            r#"<div class="notice" role="status">New network settings are on trial. Unless they are confirmed within {left} s, the previous ones come back by themselves.
<form method="post" action="/system/network/confirm" data-auto-confirm>{csrf}<button type="submit">Keep the new settings</button></form></div>"#,
            left = by.saturating_sub(cairn_system::clock::now_s()),
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

/// Backup (a file encrypted with a passphrase), restore (checked first: the page shows what would change) and
/// the dashboard's reset, which needs the box's name typed (docs/reset.md).
fn settings_section(c: &Caller, hostname: &str) -> String {
    format!(
        r#"<section class="card" id="settings"><h2>Settings backup and reset</h2>
<form method="post" action="/system/backup" class="stack">{csrf}
<label>Passphrase for the backup<input name="passphrase" type="password" required minlength="8" autocomplete="new-password"></label>
<label>Passphrase again<input name="passphrase_again" type="password" required minlength="8" autocomplete="new-password"></label>
<p class="help">The file holds your users' password hashes, so it is encrypted with this passphrase. Keep the passphrase with the file: without it the file cannot be restored.</p>
<button type="submit">Download a settings backup</button></form>
<form class="stack" data-settings-restore>{csrf}
<label>Backup file<input type="file" name="file" required></label>
<label>Its passphrase<input name="passphrase" type="password" required autocomplete="off"></label>
<fieldset><legend>Restore</legend>
<label><input type="checkbox" name="part" value="users" checked> Users and groups</label>
<label><input type="checkbox" name="part" value="shares" checked> Shares</label>
<label><input type="checkbox" name="part" value="network"> Network settings and name (the box restarts)</label></fieldset>
<div class="problem" role="alert" hidden></div>
<pre class="restore-changes" hidden></pre>
<div class="row"><button type="submit">Check what would change</button><button type="button" class="restore-now" hidden>Restore</button></div></form>
<form method="post" action="/system/reset" class="stack">{csrf}
<fieldset><legend>Reset</legend>
<label><input type="radio" name="tier" value="network" checked> Network, name and administrator passwords (users, shares and volumes are kept)</label>
<label><input type="radio" name="tier" value="settings"> Every setting (data volumes and their files are kept, and can be imported)</label></fieldset>
<label>Type the box's name, <code>{name}</code>, to confirm<input name="confirm" autocomplete="off" autocapitalize="none"></label>
<p class="help">The settings from before are kept: the front page offers to put them back after the restart. The reset pin does the same without a login (hold 4 s or 10 s).</p>
<button type="submit" class="danger">Reset and restart</button></form>
</section>"#,
        csrf = csrf_field(c),
        name = esc(hostname),
    )
}

/// The backup as a download, or the page with why not.
pub(crate) async fn backup(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let form = Form::of(ctx);
    let passphrase = form.get("passphrase");
    if passphrase != form.get("passphrase_again") {
        let e = crate::error::RequestError::PasswordMismatch.into();
        return system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await;
    }
    match crate::controller::backup::backup(&ctx.app, passphrase).await {
        Ok((bytes, name)) => Ok(http::download(bytes, &name)),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

/// The dashboard's reset: typed confirmation, then the restart.
pub(crate) async fn reset(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let form = Form::of(ctx);
    match ctl::reset(&ctx.app, &form.trimmed("tier"), &form.trimmed("confirm")).await {
        Ok(_) => Ok(http::html(
            hyper::StatusCode::ACCEPTED,
            super::notice(
                &ctx.caller()?.user,
                "Resetting",
                "The settings were reset and the box is restarting. Its front page will offer to put the old settings back.",
            ),
        )),
        Err(e) => system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

/// The served certificate's fingerprint (to compare with what a browser shows before trusting it), the
/// upload form and the way back to a certificate of the box's own.
fn certificate_section(ctx: &Ctx, c: &Caller) -> String {
    let Ok(info) = cert::current(&ctx.app) else {
        return r#"<section class="card"><h2>HTTPS certificate</h2><p>This server does not serve HTTPS.</p></section>"#.into();
    };
    let source = match info.source {
        cairn_tls::Source::Generated => "Made by this box (self-signed)",
        cairn_tls::Source::Uploaded => "Uploaded by an administrator",
    };
    format!(
        r#"<section class="card"><h2>HTTPS certificate</h2>
<dl class="facts">
<dt>SHA-256 fingerprint</dt><dd><code class="fingerprint" id="tls-fingerprint">{fp}</code></dd>
<dt>Source</dt><dd>{source}</dd>
<dt>Names</dt><dd>{names}</dd>
<dt>Issued by</dt><dd>{issuer}</dd>
<dt>Valid</dt><dd>{from} until {until}</dd>
</dl>
<p class="help">A browser warns about a certificate the box made itself: before you accept it, check that the fingerprint it shows is this one. The serial console shows it too (<code>cairn ctl certificate</code>).</p>
<form method="post" action="/system/certificate" class="stack">{csrf}
<label>Certificate chain (PEM, this box's certificate first, then its issuers)<textarea name="certificate" rows="6" spellcheck="false"></textarea></label>
<label>Private key (PEM, without a passphrase)<textarea name="key" rows="6" spellcheck="false" autocomplete="off"></textarea></label>
<p class="help">The key must belong to the certificate and the certificate must be valid now. It is served from the next connection on.</p>
<button type="submit">Upload certificate</button></form>
<form method="post" action="/system/certificate/generate">{csrf}<button type="submit" class="secondary">Go back to a new certificate made by this box</button></form>
</section>"#,
        fp = esc(&info.fingerprint_sha256),
        names = esc(&info.names.join(", ")),
        issuer = esc(&info.issuer),
        from = esc(&cairn_tls::format_time(info.not_before_s)),
        until = esc(&cairn_tls::format_time(info.not_after_s)),
        csrf = csrf_field(c),
    )
}
