//! The Storage page: disks by bay, volumes with their state and progress, and every storage action as a plain
//! form. Destructive forms ask the owner to type the volume's name; the page refreshes itself while a job runs.

use crate::error::ApiError;
use crate::http::{self, esc, form_field, Resp};
use crate::pages::{layout, problem};
use crate::routes::{Caller, Ctx};
use crate::storage::{blocking, shares_on, storage};
use cairn_storage::{CreateRequest, DiskView, VolumeView};
use hyper::{Method, StatusCode};

fn csrf(c: &Caller) -> String {
    format!(
        r#"<input type="hidden" name="csrf_token" value="{}">"#,
        esc(&c.session.csrf_token)
    )
}

/// "2026-11-23 19:04 UTC": event times, in the box's clock (no time zone is configured yet).
pub(crate) fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
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

fn disk_row(d: &DiskView) -> String {
    let role = match d.disk.role {
        cairn_storage::DiskRole::Boot => "system disk".to_string(),
        cairn_storage::DiskRole::Free => "free".to_string(),
        _ => match (&d.in_use, &d.holds) {
            (Some(u), _) => format!("in use: {u}"),
            (None, Some(h)) => format!("holds {h}"),
            _ => "in use".to_string(),
        },
    };
    format!(
        "<tr><td>{bay}</td><td>{model}</td><td>{serial}</td><td>{size}</td><td>{role}</td><td class=\"opt\">{smart}</td></tr>",
        bay = d.disk.slot.map(|s| s.to_string()).unwrap_or_else(|| "–".into()),
        model = esc(&d.disk.model),
        serial = esc(&d.disk.serial),
        size = human(d.disk.size_bytes),
        role = esc(&role),
        smart = esc(&d.smart),
    )
}

fn volume_card(c: &Caller, v: &VolumeView, free: &[&DiskView], shares: &[String]) -> String {
    let n = esc(&v.name);
    let members: String = v
        .members
        .iter()
        .map(|m| {
            let fail = if m.state == "in_sync" && v.state == "clean" {
                format!(
                    r#"<form method="post" action="/storage/volumes/{n}/fail" class="inline">{csrf}<input type="hidden" name="disk" value="{id}"><button class="link">Mark failed</button></form>"#,
                    csrf = csrf(c),
                    id = esc(&m.id)
                )
            } else {
                String::new()
            };
            format!(
                "<li>{} · <b>{}</b> {fail}</li>",
                esc(&m.description),
                esc(&m.state.replace('_', " "))
            )
        })
        .collect();
    let job = match &v.job {
        Some(j) if j.state == "running" => format!(
            r#"<p>{kind}: {msg}</p><progress max="100" value="{p}" data-job="{id}">{p} %</progress> <span class="pct">{p} %</span>{eta}"#,
            kind = esc(&j.kind),
            msg = esc(&j.message),
            p = j.percent,
            id = esc(&j.id),
            eta = j
                .eta_s
                .map(|s| format!(" · about {} min left", s / 60 + 1))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let problem = v
        .problem
        .as_ref()
        .map(|p| format!(r#"<p class="problem" role="alert">{}</p>"#, esc(p)))
        .unwrap_or_default();
    let options: String = free
        .iter()
        .map(|d| {
            format!(
                r#"<option value="{}">{}</option>"#,
                esc(&d.disk.id),
                esc(&d.describe())
            )
        })
        .collect();
    let lost: String = v
        .members
        .iter()
        .filter(|m| m.state != "in_sync")
        .chain(v.members.iter().filter(|m| m.state == "in_sync"))
        .map(|m| {
            format!(
                r#"<option value="{}">{}</option>"#,
                esc(&m.id),
                esc(&m.description)
            )
        })
        .collect();
    if v.state == "found" {
        return format!(
            r#"<section class="card"><h2>Found: {n} <small>({level}, made by {origin})</small></h2>{problem}<ul>{members}</ul>
<form method="post" action="/storage/volumes/{n}/import" class="stack">{csrf}<label>Import as<input name="as" value="{n}" maxlength="32"></label><button type="submit">Import with its data</button></form></section>"#,
            level = esc(&v.level),
            origin = if v.origin == Some("cairn") {
                "a Cairn box"
            } else {
                "another Linux system"
            },
            csrf = csrf(c),
        );
    }
    let replace = if !free.is_empty() && matches!(v.state, "degraded" | "clean") {
        format!(
            r#"<form method="post" action="/storage/volumes/{n}/replace" class="stack">{csrf}<div class="grid2"><label>Replace<select name="failed">{lost}</select></label><label>with<select name="with">{options}</select></label></div><button type="submit">Replace and rebuild</button></form>"#,
            csrf = csrf(c)
        )
    } else {
        String::new()
    };
    let scrub = if v.state == "clean" && v.job.is_none() && v.level != "raid0" {
        format!(
            r#"<form method="post" action="/storage/volumes/{n}/scrub" class="inline">{csrf}<button type="submit">Scrub now</button></form>"#,
            csrf = csrf(c)
        )
    } else {
        String::new()
    };
    let delete = if shares.is_empty() {
        format!(
            r#"<details><summary>Delete this volume</summary><form method="post" action="/storage/volumes/{n}/delete" class="stack">{csrf}<label>Type <b>{n}</b> to erase it and all its data<input name="confirm" autocomplete="off" required></label><button type="submit" class="danger">Delete volume</button></form></details>"#,
            csrf = csrf(c)
        )
    } else {
        format!(
            "<p class=\"help\">Shares on this volume: {}. A volume with shares cannot be deleted.</p>",
            esc(&shares.join(", "))
        )
    };
    format!(
        r#"<section class="card"><h2>{n} <small>{level} · <span class="state">{state}</span></small></h2>{problem}
<p>{used} used of {size} · {free_b} free · {path}</p>{job}<ul>{members}</ul>
<p class="help">Last scrub: {scrub_at}</p>{scrub}{replace}{delete}</section>"#,
        level = esc(&v.level),
        state = v.state,
        used = human(v.used_bytes),
        size = human(v.size_bytes),
        free_b = human(v.free_bytes),
        path = esc(&v.path),
        scrub_at = match (v.last_scrub_s, v.last_mismatches) {
            (Some(_), Some(m)) => format!("{m} mismatched blocks"),
            _ => "not yet".into(),
        },
    )
}

async fn page(
    ctx: &Ctx<'_>,
    c: &Caller,
    e: Option<&ApiError>,
    note: &str,
) -> Result<Resp, ApiError> {
    let s = storage(ctx)?;
    let (disks, volumes, events) =
        blocking(s, |s| Ok((s.disks()?, s.volumes()?, s.events(30)?))).await?;
    let free: Vec<&DiskView> = disks
        .iter()
        .filter(|d| d.disk.role != cairn_storage::DiskRole::Boot && d.in_use.is_none())
        .collect();
    let mut cards = String::new();
    for v in &volumes {
        let shares = if v.state == "found" {
            vec![]
        } else {
            shares_on(ctx, &v.name)?
        };
        cards.push_str(&volume_card(c, v, &free, &shares));
    }
    let checkboxes: String = free
        .iter()
        .map(|d| {
            format!(
                r#"<label class="check"><input type="checkbox" name="disk" value="{}"> {} · {}{}</label>"#,
                esc(&d.disk.id),
                esc(&d.describe()),
                human(d.disk.size_bytes),
                d.holds.as_ref().map(|h| format!(" · holds {} (will be erased)", esc(h))).unwrap_or_default()
            )
        })
        .collect();
    let events: String = events
        .iter()
        .map(|ev| {
            format!(
                r#"<li class="{lvl}"><time data-s="{s}">{t}</time> {msg}{detail}</li>"#,
                lvl = esc(&ev.level),
                s = ev.time_s,
                t = utc(ev.time_s),
                msg = esc(&ev.message),
                detail = if ev.detail.is_empty() {
                    String::new()
                } else {
                    format!("<pre>{}</pre>", esc(&ev.detail))
                }
            )
        })
        .collect();
    let running = volumes
        .iter()
        .any(|v| v.job.as_ref().is_some_and(|j| j.state == "running"));
    let body = format!(
        r#"{refresh}{note}<section class="card"><h1>Storage</h1>
<table><thead><tr><th>Bay</th><th>Model</th><th>Serial</th><th>Size</th><th>Use</th><th class="opt">Health</th></tr></thead><tbody>{rows}</tbody></table></section>
{cards}
<section class="card"><h2>New volume</h2>{problem}{create}</section>
<section class="card"><h2>Events</h2><ul class="events">{events}</ul></section>"#,
        refresh = if running {
            r#"<meta http-equiv="refresh" content="3">"#
        } else {
            ""
        },
        note = if note.is_empty() {
            String::new()
        } else {
            format!(r#"<div class="notice" role="status">{}</div>"#, esc(note))
        },
        rows = disks.iter().map(disk_row).collect::<String>(),
        problem = problem(e),
        create = if free.is_empty() {
            "<p>No free disks. Put a disk in an empty bay to build a volume.</p>".to_string()
        } else {
            format!(
                r#"<form method="post" action="/storage/volumes" class="stack">{csrf}
<div class="grid2"><label>Name<input name="name" required maxlength="32" autocapitalize="none"></label>
<label>Layout<select name="level"><option value="single">Single disk</option><option value="raid1">RAID 1 (mirror)</option><option value="raid5" selected>RAID 5 (one disk may fail)</option><option value="raid6">RAID 6 (two disks may fail)</option><option value="raid10">RAID 10</option><option value="raid0">RAID 0 (no redundancy)</option></select></label></div>
<fieldset><legend>Disks</legend>{checkboxes}</fieldset>
<label>If a chosen disk holds data, type the volume's name again to erase it<input name="confirm" autocomplete="off"></label>
<button type="submit">Create volume</button></form>"#,
                csrf = csrf(c)
            )
        },
    );
    Ok(http::html(
        e.map(|e| e.status).unwrap_or(StatusCode::OK),
        layout("Storage", Some(&c.user), Some(&c.session.csrf_token), &body),
    ))
}

/// What the page says after a change, by the code in `?done=`.
const NOTES: &[(&str, &str)] = &[
    ("created", "The volume is being built; it is usable once mounted, and redundant when the job reaches 100 %."),
    ("deleted", "The volume was deleted and its disks are free."),
    ("replaced", "The rebuild started."),
    ("failed", "The disk was taken out of the volume."),
    ("scrub", "The scrub started."),
    ("imported", "The volume was imported with its data."),
];

/// Handles /storage pages; `None` when the path is not one of them.
pub(crate) async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    path: &str,
) -> Option<Result<Resp, ApiError>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.first() != Some(&"storage") {
        return None;
    }
    Some(handle(ctx, method, &segs).await)
}

async fn handle(ctx: &Ctx<'_>, method: &Method, segs: &[&str]) -> Result<Resp, ApiError> {
    let c = ctx.admin()?;
    let form = http::parse_form(&ctx.body);
    let f = |k: &str| form_field(&form, k).trim().to_string();
    let confirm = || Some(f("confirm")).filter(|s| !s.is_empty());
    let s = storage(ctx)?;
    let outcome: Result<&'static str, ApiError> = match (method, segs) {
        (&Method::GET, ["storage"]) => {
            let note = ctx
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("done="))
                .and_then(|code| NOTES.iter().find(|(c, _)| *c == code))
                .map(|(_, text)| *text)
                .unwrap_or("");
            return page(ctx, c, None, note).await;
        }
        (&Method::POST, ["storage", "volumes"]) => {
            let req = CreateRequest {
                name: f("name"),
                level: f("level"),
                disks: form
                    .iter()
                    .filter(|(k, _)| k == "disk")
                    .map(|(_, v)| v.clone())
                    .collect(),
                confirm: confirm(),
            };
            blocking(s, move |s| s.create(req)).await.map(|_| "created")
        }
        (&Method::POST, ["storage", "volumes", name, "delete"]) => {
            let shares = shares_on(ctx, name)?;
            let (n, conf) = (name.to_string(), confirm());
            let r = blocking(s, move |s| s.delete(&n, conf.as_deref(), &shares)).await;
            ctx.app.changed();
            r.map(|_| "deleted")
        }
        (&Method::POST, ["storage", "volumes", name, "replace"]) => {
            let (n, failed, with, conf) = (name.to_string(), f("failed"), f("with"), confirm());
            blocking(s, move |s| s.replace(&n, &failed, &with, conf.as_deref()))
                .await
                .map(|_| "replaced")
        }
        (&Method::POST, ["storage", "volumes", name, "fail"]) => {
            let (n, disk, by) = (name.to_string(), f("disk"), c.user.name.clone());
            blocking(s, move |s| s.fail(&n, &disk, &by))
                .await
                .map(|_| "failed")
        }
        (&Method::POST, ["storage", "volumes", name, "scrub"]) => {
            let n = name.to_string();
            blocking(s, move |s| s.scrub(&n)).await.map(|_| "scrub")
        }
        (&Method::POST, ["storage", "volumes", name, "import"]) => {
            let (n, as_name) = (name.to_string(), Some(f("as")).filter(|s| !s.is_empty()));
            let r = blocking(s, move |s| s.import(&n, as_name.as_deref())).await;
            ctx.app.changed();
            r.map(|_| "imported")
        }
        _ => return Err(ApiError::not_found()),
    };
    match outcome {
        // Post, then redirect: reloading the page (or its auto-refresh) never repeats the change.
        Ok(code) => Ok(http::redirect(&format!("/storage?done={code}"), None)),
        Err(e) if e.status.is_client_error() || e.code == "storage.tool_failed" => {
            page(ctx, c, Some(&e), "").await
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_as_owners_expect() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_460_278), "2026-11-23 18:57 UTC");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
