//! A server with the dashboard and a client that behaves like a browser where it matters: it
//! does not follow redirects (tests look at them), keeps the session cookie it was given, and
//! sends an `Origin` with its form posts.

#![allow(dead_code)]

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::server::{Options, SECRET, Server, start_with};

pub struct Dash {
    pub server: Server,
    web: reqwest::Client,
    /// `promptq_session=<token>` once logged in.
    pub cookie: Option<String>,
}

/// An answer as a browser sees it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Vec<String>,
    pub content_type: Option<String>,
    pub csp: Option<String>,
    pub text: String,
}

impl Page {
    /// Asserts a redirect to `path` (303 See Other).
    pub fn assert_redirect(&self, path: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{self:?}");
        assert_eq!(self.location.as_deref(), Some(path), "{self:?}");
    }

    /// Asserts an HTML page with `status`.
    pub fn assert_html(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let kind = self.content_type.as_deref().unwrap_or_default();
        assert!(kind.starts_with("text/html"), "{self:?}");
        assert!(self.text.starts_with("<!doctype html>"), "{self:?}");
        &self.text
    }
}

pub async fn start(db: TestDb, args: &[&str]) -> Dash {
    start_options(db, false, args).await
}

/// A server without CRON_SECRET (loopback development).
pub async fn start_open(db: TestDb) -> Dash {
    start_options(db, true, &[]).await
}

async fn start_options(db: TestDb, open: bool, args: &[&str]) -> Dash {
    let options = Options {
        open,
        dashboard: true,
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..Options::default()
    };
    let server = start_with(db, options).await;
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    Dash {
        server,
        web,
        cookie: None,
    }
}

async fn read(response: reqwest::Response) -> Page {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let location = header(LOCATION);
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let csp = header(reqwest::header::CONTENT_SECURITY_POLICY);
    let set_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    Page {
        status: response.status(),
        location,
        set_cookie,
        content_type,
        csp,
        text: response.text().await.expect("read the body"),
    }
}

impl Dash {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// `GET path` with the session cookie, if any.
    pub async fn get(&self, path: &str) -> Page {
        let mut request = self.web.get(self.url(path));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        read(request.send().await.expect("GET")).await
    }

    /// `GET path` with the session cookie and this `Accept` header, as a browser sends it.
    pub async fn get_accepting(&self, path: &str, accept: &str) -> Page {
        let mut request = self
            .web
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, accept);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        read(request.send().await.expect("GET")).await
    }

    /// `GET path` with this exact `Cookie` header.
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> Page {
        let request = self.web.get(self.url(path)).header(COOKIE, cookie);
        read(request.send().await.expect("GET")).await
    }

    /// A form post from one of the dashboard's own pages (its `Origin`), with the session.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.server.base.clone();
        self.post_from(path, form, Some(&origin)).await
    }

    /// A form post with the given `Origin` header (none for `None`), with the session.
    pub async fn post_from(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self
            .web
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(form));
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        read(request.send().await.expect("POST")).await
    }

    /// Logs in with the right secret and keeps the cookie.
    pub async fn login(&mut self) -> Page {
        let answer = self.post("/login", &[("secret", SECRET)]).await;
        answer.assert_redirect("/");
        let cookie = answer
            .set_cookie
            .iter()
            .find(|c| c.starts_with("promptq_session="))
            .expect("a session cookie");
        let pair = cookie.split(';').next().expect("name=value").to_owned();
        self.cookie = Some(pair);
        answer
    }

    /// A job's status as the API reports it.
    pub async fn job_status(&self, id: i64) -> String {
        let detail = self.server.get(&format!("/api/jobs/{id}")).await;
        detail.assert_ok()["job"]["status"]
            .as_str()
            .expect("a status")
            .to_owned()
    }
}

/// `application/x-www-form-urlencoded`, as a browser encodes a form.
fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (byte as char).to_string()
                }
                b' ' => "+".to_owned(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What [`seed_finished_batch`] made.
pub struct Seeded {
    pub batch_key: String,
    pub succeeded: Vec<i64>,
    pub failed: Vec<i64>,
}

/// A prompt written to test escaping.
pub const HOSTILE_PROMPT: &str = "<script>alert(\"pwned\")</script> Which CRM & why?";
/// A model name written to test escaping.
pub const HOSTILE_MODEL: &str = "<img src=x onerror=alert(1)>";

/// Two mock models, one that always fails (`failRate: 1`, with `--max-attempts 1` the job is
/// failed at once) under a hostile name, and a hostile prompt with two runs: a batch of four
/// jobs, processed to the end through the API.
pub async fn seed_finished_batch(dash: &Dash) -> Seeded {
    let server = &dash.server;
    server.model("steady", json!({})).await;
    server.model(HOSTILE_MODEL, json!({"failRate": 1})).await;
    server.prompt(HOSTILE_PROMPT, 2).await;
    let batch_key = server.cron().await;
    let mut seeded = Seeded {
        batch_key: batch_key.clone(),
        succeeded: Vec::new(),
        failed: Vec::new(),
    };
    for id in server.job_ids(&batch_key).await {
        let report = server.post("/api/jobs/process", json!({"jobId": id})).await;
        match report.assert_ok()["status"].as_str() {
            Some("succeeded") => seeded.succeeded.push(id),
            Some("failed") => seeded.failed.push(id),
            other => panic!("job {id} ended {other:?} (is --max-attempts 1 set?)"),
        }
    }
    assert_eq!((seeded.succeeded.len(), seeded.failed.len()), (2, 2));
    seeded
}

/// The settings every seeded test uses: one attempt per job.
pub const ONE_ATTEMPT: &[&str] = &["--max-attempts", "1"];

pub fn value_of(page: &Page) -> Value {
    serde_json::from_str(&page.text).unwrap_or(Value::Null)
}
