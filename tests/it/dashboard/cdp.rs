//! A very small Chrome DevTools Protocol client: enough to start a headless Chromium, open a
//! page, type, click at an element's place, read the DOM and take a screenshot.
//!
//! The browser runs with a fresh profile in a temporary directory and without background
//! networking (it would otherwise flood the closed network here), and is killed when the
//! [`Browser`] drops, whatever happened. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The longest any single step may take.
pub const STEP: Duration = Duration::from_secs(20);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Chromium, where Debian puts it (or `PROMPTQ_CHROMIUM`).
pub fn find_chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PROMPTQ_CHROMIUM")
        && !path.is_empty()
    {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Kills the process when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium with one page attached.
pub struct Browser {
    socket: Socket,
    session: String,
    next_id: u64,
    // Dropped in this order: the process first, then its profile directory.
    _process: Killed,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch(chromium: &Path) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("profile dir: {e}"))?;
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,1000",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
        let mut process = Killed(child);
        let stderr = process.0.stderr.take().ok_or("no stderr")?;
        let (found, endpoint) = mpsc::channel();
        // Reads the endpoint line, then keeps draining so that the browser never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let url = endpoint
            .recv_timeout(STEP)
            .map_err(|_| "Chromium did not announce its DevTools endpoint in time".to_owned())?;
        let (socket, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(&url))
            .await
            .map_err(|_| "connecting to DevTools timed out".to_owned())?
            .map_err(|e| format!("cannot connect to DevTools at {url}: {e}"))?;
        let mut browser = Browser {
            socket,
            session: String::new(),
            next_id: 0,
            _process: process,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"].as_str().ok_or("no targetId")?.to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_owned();
        Ok(browser)
    }

    /// Sends one command (to the page once attached) and waits for its answer, skipping the
    /// events in between.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("{method}: send: {e}"))?;
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .map_err(|_| format!("{method}: no answer in time"))?;
            let frame = match next {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(format!("{method}: {e}")),
                None => return Err(format!("{method}: the browser closed the connection")),
            };
            let Message::Text(text) = frame else { continue };
            let answer: Value =
                serde_json::from_str(text.as_str()).map_err(|e| format!("{method}: {e}"))?;
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }

    pub async fn navigate(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({"url": url})).await?;
        Ok(())
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is truthy in a loaded document (navigations in between are
    /// expected: an evaluation that fails because the page is changing counts as "not yet").
    pub async fn wait_for(&mut self, expression: &str, what: &str) -> Result<Value, String> {
        let check = format!("document.readyState === 'complete' && ({expression})");
        let deadline = Instant::now() + STEP;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(value) = self.eval(&check).await {
                let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                    && value != json!("")
                    && value != json!(0);
                if truthy {
                    return Ok(value);
                }
                last = value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let at = self.eval("location.href").await.unwrap_or_default();
        Err(format!(
            "timed out waiting for {what} (last {last}, at {at})"
        ))
    }

    /// Puts the focus in the element and types `text` into it.
    pub async fn type_into(&mut self, selector: &str, text: &str) -> Result<(), String> {
        let found = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; e.focus(); return true; }})()",
                json!(selector)
            ))
            .await?;
        if found != json!(true) {
            return Err(format!("no element {selector} to type into"));
        }
        self.call("Input.insertText", json!({"text": text})).await?;
        Ok(())
    }

    /// A real mouse click in the middle of the element, as a user would.
    pub async fn click(&mut self, selector: &str) -> Result<(), String> {
        let place = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 const x = r.x + r.width / 2, y = r.y + r.height / 2; \
                 const hit = document.elementFromPoint(x, y); \
                 return {{x, y, hit: hit && (e.contains(hit) ? '' : hit.outerHTML.slice(0, 200))}}; }})()",
                json!(selector)
            ))
            .await?;
        let (Some(x), Some(y)) = (place["x"].as_f64(), place["y"].as_f64()) else {
            return Err(format!("no element {selector} to click"));
        };
        // A user's click lands on whatever is on top there: make sure it is the element.
        if let Some(other) = place["hit"].as_str().filter(|hit| !hit.is_empty()) {
            return Err(format!("{selector} is covered at its centre by {other}"));
        }
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await?;
        }
        Ok(())
    }

    /// Makes the page `width` CSS pixels wide, as a phone (`mobile`: the viewport meta tag
    /// applies) or a desktop window would.
    pub async fn set_width(&mut self, width: u32, mobile: bool) -> Result<(), String> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": if mobile { 844 } else { 900 },
                   "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await?;
        Ok(())
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("screenshot: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}
