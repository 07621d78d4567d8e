//! A thin WebDriver client for Debian's chromedriver + headless Chromium: the few commands a browser test
//! needs (open, type, click, read, screenshot), as JSON over the harness's hyper client.

use cairn_qemu::HttpClient;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    client: HttpClient,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/bootstrap installs chromium-driver)");
        let client = HttpClient::new(port).with_timeout(Duration::from_secs(60));
        let until = Instant::now() + Duration::from_secs(20);
        while client
            .get("/status")
            .map(|r| r.status != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < until, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let r = client.post_json("/session", &caps, &[]).unwrap();
        assert_eq!(r.status, 200, "new session: {}", r.text());
        let session = r.json().unwrap()["value"]["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        Browser {
            driver,
            client,
            session,
            _profile: profile,
        }
    }

    /// A command that may fail while the page is changing (stale elements during a navigation).
    fn try_call(&self, method: &str, path: &str, body: Value) -> Option<Value> {
        let path = format!("/session/{}{path}", self.session);
        let r = self
            .client
            .request(
                method,
                &path,
                &[("content-type", "application/json")],
                serde_json::to_vec(&body).unwrap(),
            )
            .ok()?;
        (r.status == 200)
            .then(|| r.json().ok().map(|v| v["value"].clone()))
            .flatten()
    }

    /// The page's text, or None while it is being replaced.
    fn try_text(&self) -> Option<String> {
        let v = self.try_call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": "body"}),
        )?;
        let id = v[ELEMENT].as_str()?.to_string();
        self.try_call("GET", &format!("/element/{id}/text"), json!({}))?
            .as_str()
            .map(str::to_string)
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let r = self
            .client
            .request(
                method,
                &path,
                &[("content-type", "application/json")],
                serde_json::to_vec(&body).unwrap(),
            )
            .unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        r.json().unwrap()["value"].clone()
    }

    pub fn open(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", json!({}))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until the address contains `fragment` (a submitted form navigates asynchronously).
    pub fn wait_url(&self, fragment: &str) {
        let until = Instant::now() + Duration::from_secs(30);
        while !self.url().contains(fragment) {
            if Instant::now() > until {
                panic!(
                    "waited 30 s for an address with {fragment:?}; at {} showing:\n{}",
                    self.url(),
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the page shows `fragment`.
    pub fn wait_text(&self, fragment: &str) {
        let until = Instant::now() + Duration::from_secs(30);
        while !self.try_text().is_some_and(|t| t.contains(fragment)) {
            if Instant::now() > until {
                panic!(
                    "waited 30 s for the page to show {fragment:?}; at {} showing:\n{}",
                    self.url(),
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Types into the field matching `css`.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Chooses an option of a `<select>` by its value.
    pub fn select(&self, name: &str, value: &str) {
        self.click(&format!("select[name='{name}'] option[value='{value}']"));
    }

    /// The visible text of the page.
    pub fn text(&self) -> String {
        let id = self.find("body");
        self.call("GET", &format!("/element/{id}/text"), json!({}))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Saves a PNG screenshot.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let b64 = self.call("GET", "/screenshot", json!({}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .client
            .request("DELETE", &format!("/session/{}", self.session), &[], vec![]);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
