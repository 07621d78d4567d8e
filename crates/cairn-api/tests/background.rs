//! Blocking work never holds up the server: while a change's aftermath (the SMB render on a slow box) runs,
//! and while share usage is being measured, other requests are answered at once.

mod common;

use cairn_qemu::HttpClient;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_slow_render_after_a_change_does_not_hold_up_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    let rendering = Arc::new(AtomicBool::new(false));
    let during = rendering.clone();
    let app = app_on(store).with_change_hook(Box::new(move |_| {
        during.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(3));
        during.store(false, Ordering::SeqCst);
    }));
    let server = serve_app(dir, app);
    let (admin, token) = set_up(&server);
    let changer = admin.clone();
    let change = std::thread::spawn(move || {
        changer
            .post_json(
                "/api/v1/groups",
                &json!({"name": "staff"}),
                &[("x-csrf-token", &token)],
            )
            .unwrap()
    });
    let until = Instant::now() + Duration::from_secs(10);
    while !rendering.load(Ordering::SeqCst) {
        assert!(Instant::now() < until, "the render never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let other = HttpClient::new(server.port);
    for path in ["/api/v1/health", "/users", "/shares"] {
        let started = Instant::now();
        let r = admin.get(path).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            started.elapsed() < Duration::from_millis(500) && rendering.load(Ordering::SeqCst),
            "{path} waited for the render: {:?}",
            started.elapsed()
        );
        let _ = other.get("/api/v1/health").unwrap();
    }
    assert_eq!(
        change.join().unwrap().status,
        201,
        "the change itself waits for its render"
    );
}

#[test]
fn the_shares_page_answers_at_once_and_says_a_figure_is_still_being_measured() {
    let server = start();
    let (admin, token) = set_up(&server);
    let r = admin
        .post_json(
            "/api/v1/shares",
            &json!({"name": "photos", "volume": "system"}),
            &[("x-csrf-token", &token)],
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let page = admin.get("/shares").unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("being measured") || page.text().contains("measured just now"),
        "{}",
        page.text()
    );
    // The API waits a moment for a figure; on this host the system volume's folder does not exist.
    let share = admin.get("/api/v1/shares/photos").unwrap();
    assert_eq!(share.status, 200, "{}", share.text());
    assert_eq!(share.json().unwrap()["name"], "photos");
}
