//! A real headless Chromium (Debian's `chromium`) driven through the DevTools protocol: just
//! what the console's tests need — open a page, evaluate script, wait for what a person would
//! see, take screenshots, add a virtual WebAuthn authenticator, and collect every console
//! message and uncaught exception.

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<serde_json::Value>>>>;

/// One browser with one page.
pub struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    out: tokio::sync::mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    next: std::sync::atomic::AtomicU64,
    session: String,
    pub shots: PathBuf,
}

fn chromium() -> String {
    std::env::var("DROVER_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

impl Browser {
    /// Starts a headless Chromium and opens a blank page in it.
    pub async fn launch(shots: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = std::process::Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium starts (Debian's chromium; .ci/test installs it)");
        // Chromium writes its DevTools port and browser path once it listens.
        let file = profile.path().join("DevToolsActivePort");
        let mut endpoint = None;
        for _ in 0..300 {
            if let Ok(t) = std::fs::read_to_string(&file) {
                let mut l = t.lines();
                if let (Some(port), Some(path)) = (l.next(), l.next()) {
                    endpoint = Some(format!("ws://127.0.0.1:{port}{path}"));
                    break;
                }
            }
            pause(100).await;
        }
        let endpoint = endpoint.expect("chromium opened its DevTools port");
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("DevTools websocket");
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let (p, e) = (Arc::clone(&pending), Arc::clone(&events));
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                    continue;
                };
                match v["id"].as_u64() {
                    Some(id) => {
                        if let Some(tx) = p.lock().expect("pending").remove(&id) {
                            let _ = tx.send(v);
                        }
                    }
                    None => e.lock().expect("events").push(v),
                }
            }
        });
        let mut b = Self {
            child,
            _profile: profile,
            out,
            pending,
            events,
            next: std::sync::atomic::AtomicU64::new(1),
            session: String::new(),
            shots: shots.to_owned(),
        };
        let target = b
            .send_to(
                None,
                "Target.createTarget",
                serde_json::json!({ "url": "about:blank" }),
            )
            .await;
        let attached = b
            .send_to(
                None,
                "Target.attachToTarget",
                serde_json::json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        b.session = attached["sessionId"].as_str().expect("session").to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.send(domain, serde_json::json!({})).await;
        }
        b
    }

    async fn send_to(
        &self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = serde_json::json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, tx);
        self.out
            .send(Message::Text(msg.to_string().into()))
            .expect("DevTools connection");
        let v = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer from chromium in 30 s"))
            .expect("answer");
        assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
        v["result"].clone()
    }

    /// A DevTools command to the page.
    pub async fn send(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let s = self.session.clone();
        self.send_to(Some(&s), method, params).await
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.send("Page.navigate", serde_json::json!({ "url": url }))
            .await;
        self.wait("the page loaded", "document.readyState === 'complete'")
            .await;
    }

    /// Evaluates `expr` in the page (awaiting a promise, as if a person had clicked), by value.
    pub async fn eval(&self, expr: &str) -> serde_json::Value {
        let r = self
            .send(
                "Runtime.evaluate",
                serde_json::json!({
                    "expression": expr,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                }),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "`{expr}` threw: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page (60 s at most), without reloading it.
    pub async fn wait(&self, what: &str, expr: &str) {
        for _ in 0..600 {
            let r = self
                .send(
                    "Runtime.evaluate",
                    serde_json::json!({ "expression": format!("!!({expr})"), "returnByValue": true }),
                )
                .await;
            if r["result"]["value"] == true {
                return;
            }
            pause(100).await;
        }
        let text = self
            .eval("document.body ? document.body.innerText : ''")
            .await;
        panic!("waited 60 s for {what} (`{expr}`); the page shows:\n{text}");
    }

    /// The text the page shows.
    pub async fn text(&self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A PNG of the page, written to the screenshots directory as `name.png`.
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let r = self
            .send(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("base64");
        std::fs::create_dir_all(&self.shots).expect("screenshots dir");
        std::fs::write(self.shots.join(format!("{name}.png")), &png).expect("screenshot");
        png
    }

    /// Emulates a phone-sized screen (or not).
    pub async fn phone(&self, on: bool) {
        if on {
            self.send(
                "Emulation.setDeviceMetricsOverride",
                serde_json::json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
            )
            .await;
        } else {
            self.send(
                "Emulation.clearDeviceMetricsOverride",
                serde_json::json!({}),
            )
            .await;
        }
    }

    /// A virtual platform authenticator (a passkey provider that a person's touch would
    /// confirm), as DevTools offers for testing WebAuthn.
    pub async fn virtual_authenticator(&self) -> String {
        self.send("WebAuthn.enable", serde_json::json!({ "enableUI": false }))
            .await;
        let r = self
            .send(
                "WebAuthn.addVirtualAuthenticator",
                serde_json::json!({ "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                } }),
            )
            .await;
        r["authenticatorId"]
            .as_str()
            .expect("authenticator")
            .to_owned()
    }

    /// Every console message, log entry and uncaught exception so far, as text.
    pub fn console_messages(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => Some(format!(
                    "console.{}: {}",
                    e["params"]["type"].as_str().unwrap_or("?"),
                    e["params"]["args"]
                )),
                Some("Runtime.exceptionThrown") => {
                    Some(format!("exception: {}", e["params"]["exceptionDetails"]))
                }
                Some("Log.entryAdded") => Some(format!(
                    "log {}: {} ({})",
                    e["params"]["entry"]["level"].as_str().unwrap_or("?"),
                    e["params"]["entry"]["text"].as_str().unwrap_or("?"),
                    e["params"]["entry"]["url"].as_str().unwrap_or("")
                )),
                _ => None,
            })
            .collect()
    }

    /// Forgets the messages collected so far (those of an expected event, such as a server
    /// restart the page reconnects from).
    pub fn clear_messages(&self) {
        self.events.lock().expect("events").clear();
    }

    /// Runs axe-core (from the npm registry; `.ci/test` fetches it) in the page and returns the
    /// serious and critical violations.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let path = std::env::var("DROVER_TEST_AXE").map_or_else(
            |_| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/axe-core/4.14.1/package/axe.min.js")
            },
            PathBuf::from,
        );
        let axe = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "axe-core at {}: {e} (.ci/test fetches it from the npm registry)",
                path.display()
            )
        });
        self.eval(&axe).await;
        let v = self
            .eval(
                "axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => v.id + ': ' + v.help + ' — ' + v.nodes.map(n => n.target.join(' ')).join(', ')))",
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits `ms` on the one clock.
pub async fn pause(ms: u64) {
    drover_engine::clock::Clock::sleep(&drover_engine::clock::SystemClock, ms).await;
}

/// Whether a PNG is a real picture of a page: a PNG, and of a size no blank render has.
pub fn looks_rendered(png: &[u8]) -> bool {
    png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000
}
