//! Pairing codes over HTTP: a code with its real expiry or an error and nothing stored; removal at once.

mod common;

use common::*;
use serde_json::json;

#[test]
fn pairing_codes_are_issued_bounded_and_removed_locally() {
    let b = start_box(&["A"], &[]);
    let (owner, token) = set_up(&b.server);
    let post = || {
        owner
            .request(
                "POST",
                "/api/v1/cloud/pairings",
                &[
                    ("content-type", "application/json"),
                    ("x-csrf-token", &token),
                ],
                b"{}".to_vec(),
            )
            .unwrap()
    };
    let r = post();
    assert_eq!(r.status, 201, "{}", r.text());
    let issued = r.json().unwrap();
    let code = issued["code"].as_str().unwrap();
    assert!(cairn_cloud::normalise(code).is_some(), "{issued}");
    let expires = issued["expires_at"].as_str().unwrap();
    assert!(
        expires.starts_with("20") && expires.ends_with('Z'),
        "a real expiry: {issued}"
    );
    assert_eq!(issued["state"], "pending");

    let list = owner.get("/api/v1/cloud/pairings").unwrap().json().unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(
        list[0].get("code").is_none(),
        "the code is shown once, never listed: {list}"
    );
    assert!(!list.to_string().contains(code));

    for _ in 1..cairn_cloud::pairings::MAX_PENDING {
        assert_eq!(post().status, 201);
    }
    assert_error(&post(), 409, "cloud.too_many_pending");
    let count = || {
        owner
            .get("/api/v1/cloud/pairings")
            .unwrap()
            .json()
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        count(),
        cairn_cloud::pairings::MAX_PENDING,
        "a refused code stores nothing"
    );

    let id = issued["id"].as_str().unwrap();
    let delete = |id: &str| {
        owner
            .request(
                "DELETE",
                &format!("/api/v1/cloud/pairings/{id}"),
                &[("x-csrf-token", &token)],
                vec![],
            )
            .unwrap()
    };
    let r = delete(id);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(count(), cairn_cloud::pairings::MAX_PENDING - 1);
    assert_error(&delete(id), 404, "cloud.no_such_pairing");
    assert_error(&delete("..%2F..%2Fetc"), 404, "cloud.no_such_pairing");
    let _ = json!({});
}
