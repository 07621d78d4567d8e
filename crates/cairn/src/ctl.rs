//! `cairn ctl`: the console's way to manage the box, over the daemon's root-only control socket.
//! Same operations and errors as the HTTP API (it is the same router); `--json` prints the API's answers.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::ExitCode;

/// Where the daemon listens for `cairn ctl`.
pub const SOCKET: &str = "/run/cairn/ctl.sock";

pub const USAGE: &str = "usage: cairn ctl [--json] [--socket PATH] <command>

  health                                  version, board, uptime, setup state
  setup NAME [--email E]                  create the first administrator (password from stdin)
  user list
  user show NAME
  user add NAME [--admin] [--email E] [--full-name F]   (password from stdin)
  user set NAME [--email E] [--full-name F] [--admin|--user] [--enable|--disable]
  user passwd NAME                        set a new password (read from stdin): the rescue path
  user del NAME
  group list | group add NAME [MEMBER...] | group set NAME [MEMBER...] | group del NAME
  share list | share show NAME | share del NAME
  share add NAME [--volume V] [--path P] [--description D]
  share grant NAME user:U=read|write|none ... group:G=read|write|none ...
  disks                                   disks by bay, with role and contents
  volume list | volume show NAME
  volume create NAME LEVEL DISK... [--confirm NAME]   LEVEL: single raid0 raid1 raid5 raid6 raid10
  volume delete NAME --confirm NAME       erases the volume's data (refused while shares live on it)
  volume fail NAME DISK | volume replace NAME FAILED_DISK NEW_DISK [--confirm NAME]
  volume scrub NAME | volume import NAME [--as NEW_NAME]
  job ID | jobs | events                  storage jobs (progress from the kernel) and the event log
  system                                  host name, version, uptime
  hostname NAME                           rename the box
  reset undo | reset keep                 after a reset (the pin or the dashboard): put the settings from
                                          before it back (the box restarts), or keep the reset
  network                                 network settings (and a change on trial)
  network dhcp                            back to DHCP, on trial like any change: the rescue path
  network confirm                         keep the change on trial (else it rolls back by itself)
  config repair                           settings unavailable: check and repair the settings partition
  config format [--confirm WORD]          settings unavailable: erase the settings partition (asks for
                                          the word; data volumes are never touched)

  certificate                             the HTTPS certificate: SHA-256 fingerprint, source, names, validity
  certificate install CHAIN.pem KEY.pem   serve your own certificate chain and key (checked to match)
  certificate generate                    back to a new certificate made by the box itself

  firmware status                         both root slots (version, booted|good|bad|empty), the pending update,
                                          the last update's outcome
  firmware install FILE|URL [--insist]    install a signed bundle (.cfw) into the slot not running, streamed
                                          from FILE or downloaded from an https:// (or http://) URL on the way
                                          (HTTPS trusts the CAs in /etc/ssl/certs/ca-certificates.crt; the
                                          bundle's own signature is what the box checks), and follow its job;
                                          --insist for a version that failed here before. The new slot runs
                                          after a reboot
  firmware check                          the update index at the configured update source: newer version?";

struct Request {
    method: &'static str,
    path: String,
    body: Option<Value>,
    /// A file streamed as the body (`application/octet-stream`) instead of `body`.
    upload: Option<String>,
}

fn req(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Request {
    Request {
        method,
        path: path.into(),
        body,
        upload: None,
    }
}

fn read_password() -> Result<String, String> {
    eprint!("password: ");
    read_line()
}

/// The word that confirms formatting, from `--confirm` or typed at the prompt.
fn read_format_confirmation(given: Option<String>) -> Result<String, String> {
    if let Some(word) = given {
        return Ok(word);
    }
    eprint!(
        "This erases every setting of this box (users, shares, network); data volumes are not touched.\nType {} to go on: ",
        cairn_store::unavailable::FORMAT_CONFIRM
    );
    read_line()
}

fn read_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Takes `--flag VALUE` out of args.
fn take(args: &mut Vec<String>, flag: &str) -> Option<String> {
    let i = args.iter().position(|a| a == flag)?;
    if i + 1 < args.len() {
        let v = args.remove(i + 1);
        args.remove(i);
        Some(v)
    } else {
        args.remove(i);
        None
    }
}

fn take_switch(args: &mut Vec<String>, flag: &str) -> bool {
    match args.iter().position(|a| a == flag) {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    }
}

fn plan(
    mut args: Vec<String>,
    share_lookup: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<Request, String> {
    let words: Vec<String> = args.iter().take(2).cloned().collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let name = |args: &Vec<String>, i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing NAME\n{USAGE}"))
    };
    Ok(match w.as_slice() {
        ["health", ..] => req("GET", "/api/v1/health", None),
        ["setup", ..] => {
            let email = take(&mut args, "--email").unwrap_or_default();
            let n = name(&args, 1)?;
            req(
                "POST",
                "/api/v1/setup",
                Some(json!({"username": n, "password": read_password()?, "email": email})),
            )
        }
        ["user", "list"] => req("GET", "/api/v1/users", None),
        ["user", "show"] => req("GET", format!("/api/v1/users/{}", name(&args, 2)?), None),
        ["user", "add"] => {
            let admin = take_switch(&mut args, "--admin");
            let email = take(&mut args, "--email").unwrap_or_default();
            let full = take(&mut args, "--full-name").unwrap_or_default();
            let n = name(&args, 2)?;
            let role = if admin { "admin" } else { "user" };
            req(
                "POST",
                "/api/v1/users",
                Some(
                    json!({"name": n, "email": email, "full_name": full, "role": role, "password": read_password()?}),
                ),
            )
        }
        ["user", "set"] => {
            let mut patch = serde_json::Map::new();
            if let Some(e) = take(&mut args, "--email") {
                patch.insert("email".into(), e.into());
            }
            if let Some(f) = take(&mut args, "--full-name") {
                patch.insert("full_name".into(), f.into());
            }
            if take_switch(&mut args, "--admin") {
                patch.insert("role".into(), "admin".into());
            }
            if take_switch(&mut args, "--user") {
                patch.insert("role".into(), "user".into());
            }
            if take_switch(&mut args, "--enable") {
                patch.insert("enabled".into(), true.into());
            }
            if take_switch(&mut args, "--disable") {
                patch.insert("enabled".into(), false.into());
            }
            req(
                "PATCH",
                format!("/api/v1/users/{}", name(&args, 2)?),
                Some(Value::Object(patch)),
            )
        }
        ["user", "passwd"] => {
            let n = name(&args, 2)?;
            req(
                "PATCH",
                format!("/api/v1/users/{n}"),
                Some(json!({"password": read_password()?})),
            )
        }
        ["user", "del"] => req("DELETE", format!("/api/v1/users/{}", name(&args, 2)?), None),
        ["group", "list"] => req("GET", "/api/v1/groups", None),
        ["group", "add"] => req(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": name(&args, 2)?, "members": args[3..].to_vec()})),
        ),
        ["group", "set"] => req(
            "PATCH",
            format!("/api/v1/groups/{}", name(&args, 2)?),
            Some(json!({"members": args[3..].to_vec()})),
        ),
        ["group", "del"] => req(
            "DELETE",
            format!("/api/v1/groups/{}", name(&args, 2)?),
            None,
        ),
        ["share", "list"] => req("GET", "/api/v1/shares", None),
        ["share", "show"] => req("GET", format!("/api/v1/shares/{}", name(&args, 2)?), None),
        ["share", "add"] => {
            let path = take(&mut args, "--path");
            let volume = take(&mut args, "--volume");
            let description = take(&mut args, "--description").unwrap_or_default();
            let mut body = json!({"name": name(&args, 2)?, "description": description});
            if let Some(p) = path {
                body["path"] = p.into();
            }
            if let Some(v) = volume {
                body["volume"] = v.into();
            }
            req("POST", "/api/v1/shares", Some(body))
        }
        ["share", "del"] => req(
            "DELETE",
            format!("/api/v1/shares/{}", name(&args, 2)?),
            None,
        ),
        ["share", "grant"] => {
            let share = name(&args, 2)?;
            let mut access = share_lookup(&share)?["access"].clone();
            for grant in &args[3..] {
                let (who, level) = grant
                    .split_once('=')
                    .ok_or(format!("{grant:?}: write user:NAME=read|write|none"))?;
                let (kind, n) = match who.split_once(':') {
                    Some(("user", n)) => ("users", n),
                    Some(("group", n)) => ("groups", n),
                    _ => return Err(format!("{who:?}: write user:NAME or group:NAME")),
                };
                match level {
                    "none" => {
                        access[kind].as_object_mut().map(|m| m.remove(n));
                    }
                    "read" | "write" => access[kind][n] = level.into(),
                    _ => return Err(format!("{level:?}: use read, write or none")),
                }
            }
            req(
                "PATCH",
                format!("/api/v1/shares/{share}"),
                Some(json!({"access": access})),
            )
        }
        ["disks", ..] => req("GET", "/api/v1/disks", None),
        ["volume", "list"] => req("GET", "/api/v1/volumes", None),
        ["volume", "show"] => req("GET", format!("/api/v1/volumes/{}", name(&args, 2)?), None),
        ["volume", "create", ..] => {
            let confirm = take(&mut args, "--confirm");
            let (vol, level) = (name(&args, 2)?, name(&args, 3)?);
            let disks: Vec<String> = args.iter().skip(4).cloned().collect();
            let mut body = json!({"name": vol, "level": level, "disks": disks});
            if let Some(c) = confirm {
                body["confirm"] = c.into();
            }
            req("POST", "/api/v1/volumes", Some(body))
        }
        ["volume", "delete", ..] => {
            let confirm = take(&mut args, "--confirm");
            req(
                "DELETE",
                format!("/api/v1/volumes/{}", name(&args, 2)?),
                Some(json!({"confirm": confirm})),
            )
        }
        ["volume", "fail", ..] => req(
            "POST",
            format!("/api/v1/volumes/{}/fail", name(&args, 2)?),
            Some(json!({"disk": name(&args, 3)?})),
        ),
        ["volume", "replace", ..] => {
            let confirm = take(&mut args, "--confirm");
            let mut body = json!({"failed": name(&args, 3)?, "with": name(&args, 4)?});
            if let Some(c) = confirm {
                body["confirm"] = c.into();
            }
            req(
                "POST",
                format!("/api/v1/volumes/{}/replace", name(&args, 2)?),
                Some(body),
            )
        }
        ["volume", "scrub", ..] => req(
            "POST",
            format!("/api/v1/volumes/{}/scrub", name(&args, 2)?),
            Some(json!({})),
        ),
        ["volume", "import", ..] => {
            let as_name = take(&mut args, "--as");
            let body = match as_name {
                Some(a) => json!({"as": a}),
                None => json!({}),
            };
            req(
                "POST",
                format!("/api/v1/volumes/{}/import", name(&args, 2)?),
                Some(body),
            )
        }
        ["job", ..] => req("GET", format!("/api/v1/jobs/{}", name(&args, 1)?), None),
        ["jobs", ..] => req("GET", "/api/v1/jobs", None),
        ["events", ..] => req("GET", "/api/v1/storage/events", None),
        ["system", ..] => req("GET", "/api/v1/system", None),
        ["reset", "undo"] => req("POST", "/api/v1/system/reset/undo", Some(json!({}))),
        ["reset", "keep"] => req("POST", "/api/v1/system/reset/dismiss", Some(json!({}))),
        ["hostname", ..] => req(
            "PATCH",
            "/api/v1/system",
            Some(json!({"hostname": name(&args, 1)?})),
        ),
        ["network", "dhcp"] => req("PUT", "/api/v1/network", Some(json!({"mode": "dhcp"}))),
        ["network", "confirm"] => req("POST", "/api/v1/network/confirm", Some(json!({}))),
        ["network"] => req("GET", "/api/v1/network", None),
        ["config", "repair"] => req("POST", "/api/v1/config/repair", Some(json!({}))),
        ["config", "format"] => {
            let given = take(&mut args, "--confirm");
            req(
                "POST",
                "/api/v1/config/format",
                Some(json!({"confirm": read_format_confirmation(given)?})),
            )
        }
        ["certificate"] => req("GET", "/api/v1/system/certificate", None),
        ["certificate", "install"] => {
            let read = |i: usize| {
                let path = name(&args, i)?;
                std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
            };
            req(
                "PUT",
                "/api/v1/system/certificate",
                Some(json!({"certificate": read(2)?, "key": read(3)?})),
            )
        }
        ["certificate", "generate"] => req("DELETE", "/api/v1/system/certificate", None),
        ["firmware", "status"] => req("GET", "/api/v1/firmware", None),
        ["firmware", "check"] => req("GET", "/api/v1/firmware/check", None),
        ["firmware", "install", ..] => {
            let insist = take_switch(&mut args, "--insist");
            let source = name(&args, 2)?;
            let mut r = req(
                "POST",
                if insist {
                    "/api/v1/firmware?insist=1"
                } else {
                    "/api/v1/firmware"
                },
                None,
            );
            r.upload = Some(source);
            r
        }
        _ => return Err(USAGE.to_string()),
    })
}

/// A GET over the control socket.
pub async fn get(socket: &str, path: &str) -> Result<(u16, Value), String> {
    send(socket, &req("GET", path, None)).await
}

async fn send(socket: &str, r: &Request) -> Result<(u16, Value), String> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        format!("cannot reach the daemon at {socket}: {e} (is it running? are you root?)")
    })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let (body, content_type) = match &r.upload {
        Some(source) => (
            crate::ctl_firmware::bundle_body(source).await?,
            "application/octet-stream",
        ),
        None => {
            let json = r.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
            (
                Full::new(Bytes::from(json))
                    .map_err(|never| match never {})
                    .boxed(),
                "application/json",
            )
        }
    };
    let request = hyper::Request::builder()
        .method(r.method)
        .uri(&r.path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(body)
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

fn human(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(human_line).collect::<Vec<_>>().join("\n"),
        Value::Object(_) => human_line(v),
        other => other.to_string(),
    }
}

fn human_line(v: &Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    if let Value::String(s) = v {
                        s.clone()
                    } else {
                        v.to_string()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("  "),
        None => v.to_string(),
    }
}

/// Health carries the settings' state: the console says plainly when they are unavailable, and what to do.
fn warn_if_settings_unavailable(v: &Value) {
    let s = &v["settings"];
    if s["available"] == false {
        eprintln!(
            "SETTINGS UNAVAILABLE: {}\nhint: {} ({})",
            s["message"].as_str().unwrap_or(""),
            s["hint"].as_str().unwrap_or(""),
            s["code"].as_str().unwrap_or("")
        );
    }
    if let Some(keys) = s["damaged_records"].as_array().filter(|k| !k.is_empty()) {
        eprintln!("damaged settings records (skipped): {keys:?}");
    }
}

pub fn run(args: &[String]) -> ExitCode {
    let mut args = args.to_vec();
    let as_json = take_switch(&mut args, "--json");
    let socket = take(&mut args, "--socket").unwrap_or_else(|| SOCKET.to_string());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cairn ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let lookup_socket = socket.clone();
        let lookup = move |share: &str| -> Result<Value, String> {
            let r = req("GET", format!("/api/v1/shares/{share}"), None);
            let s = lookup_socket.clone();
            let handle = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(send(&s, &r))
            });
            match handle.join().map_err(|_| "lookup failed".to_string())?? {
                (200, v) => Ok(v),
                (_, v) => Err(v["error"]["message"]
                    .as_str()
                    .unwrap_or("share not found")
                    .to_string()),
            }
        };
        let request = match plan(args, &lookup) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let sent = match send(&socket, &request).await {
            Ok((202, value)) if request.upload.is_some() => {
                crate::ctl_firmware::follow(&socket, &value).await
            }
            other => other,
        };
        match sent {
            Ok((status, value)) if status < 300 => {
                println!(
                    "{}",
                    if as_json {
                        value.to_string()
                    } else {
                        human(&value)
                    }
                );
                warn_if_settings_unavailable(&value);
                ExitCode::SUCCESS
            }
            Ok((_, value)) => {
                if as_json {
                    println!("{value}");
                } else {
                    let e = &value["error"];
                    eprintln!(
                        "error: {}\nhint: {} ({})",
                        e["message"].as_str().unwrap_or("unknown"),
                        e["hint"].as_str().unwrap_or(""),
                        e["code"].as_str().unwrap_or("")
                    );
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("cairn ctl: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
