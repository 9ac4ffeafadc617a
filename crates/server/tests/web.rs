//! What the web UI stands on: the page shell and embedded assets with their security
//! headers, the cookie refused for requests from other origins (another site, the
//! previews' origin), workspace settings, and the dashboard's change feed.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_testkit::{SourceRepo, git};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn every_screen_is_the_page_shell_with_a_strict_content_policy() {
    let server = TestServer::start().await;
    let source = SourceRepo::new();
    let workspace = server.admin().ready_workspace(&source.url(), "demo").await;
    let previews = server.admin().previews(&workspace).await;
    let preview_port = previews.base.rsplit(':').next().unwrap().to_owned();
    for path in ["/", "/account", "/admin", "/signin", "/workspaces/w_anything", "/workspaces/w_x/settings"] {
        let response = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(
            policy.contains(&format!("frame-src 'self' http://*.preview.localhost:{preview_port};")),
            "only previews (and the redirect that leads to one) are framed: {policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(body.contains("/assets/v/") && body.contains("/app.js\""), "{body}");
    }

    // The page names its assets under this build's version: kept for good.
    let page = reqwest::get(format!("{}/", server.url)).await.unwrap().text().await.unwrap();
    let script =
        page.split('"').find(|part| part.starts_with("/assets/v/") && part.ends_with("/app.js")).unwrap();
    let kept = reqwest::get(format!("{}{script}", server.url)).await.unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(kept.headers()["cache-control"], "public, max-age=31536000, immutable");
    // An older page's version gets today's file, revalidated.
    let older = reqwest::get(format!("{}/assets/v/0000/app.js", server.url)).await.unwrap();
    assert_eq!(
        (older.status(), older.headers()["cache-control"].to_str().unwrap()),
        (StatusCode::OK, "no-cache")
    );

    let http = reqwest::Client::new();
    for (asset, kind) in
        [("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")]
    {
        let response = http.get(format!("{}/assets/{asset}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(kind), "{asset}");
        let etag = response.headers()["etag"].clone();
        let again = http
            .get(format!("{}/assets/{asset}", server.url))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
    }
    for missing in ["/assets/nothing.js", "/assets/../Cargo.toml", "/assets/%2e%2e/Cargo.toml"] {
        let response = http.get(format!("{}{missing}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_login_cookie_counts_only_for_requests_from_berths_own_origin() {
    let server = TestServer::start().await;
    let preview_origin = "http://w_0123456789abcdefghjk.preview.localhost:7071";
    let cookie = berth_testkit::sign_in_cookie(&server.url, common::ADMIN_TOKEN).await;
    let http = reqwest::Client::new();
    let post = |origin: Option<&str>| {
        let mut request = http.post(format!("{}/api/tokens", server.url)).header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };

    for foreign in ["http://evil.example", preview_origin, "null"] {
        let refused = post(Some(foreign)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{foreign}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "cross_origin", "{foreign}");
    }
    let accepted = post(Some(&server.url)).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED, "berth's own pages");
    let accepted = post(None).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED, "no browser page sent it");

    // A token in the header is no ambient credential: any origin may use it.
    let bearer = http
        .post(format!("{}/api/tokens", server.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::CREATED);
    // A plain read answers (the browser keeps the answer from the other origin).
    let read = http
        .get(format!("{}/api/me", server.url))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    // A WebSocket is no plain read: the live channel refuses the cookie from elsewhere.
    let source = SourceRepo::new();
    let workspace = server.admin().ready_workspace(&source.url(), "demo").await;
    let (status, opened) = server.admin().open(&workspace).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap();
    let live = format!("{}/api/sessions/{session}/live", server.url.replace("http://", "ws://"));
    let connect = |origin: String| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(live.clone())
                .unwrap();
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match connect(preview_origin.to_owned()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        other => panic!("a preview page attached to the live channel: {:?}", other.map(|_| ())),
    }
    assert!(connect(server.url.clone()).await.is_ok(), "berth's own page attaches");
    server.stop().await;
}

#[tokio::test]
async fn settings_rename_change_the_agent_and_switch_the_branch() {
    let server = TestServer::start().await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "demo").await;
    alice.ready_workspace(&source.url(), "other").await;
    let patch = |body: Value| {
        alice.send(alice.request(reqwest::Method::PATCH, &format!("/api/workspaces/{id}")).json(&body))
    };

    let (status, renamed) = patch(json!({ "name": "renamed", "agent": "my-agent --acp" })).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["agent"].as_str()),
        (Some("renamed"), Some("my-agent --acp"))
    );
    let (status, reset) = patch(json!({ "agent": "" })).await;
    assert_eq!((status, &reset["agent"]), (StatusCode::OK, &Value::Null), "empty: the installation's agent");
    assert_eq!(reset["name"], "renamed", "fields not given stay");

    for (body, expected_status, code) in [
        (json!({ "name": "other" }), StatusCode::CONFLICT, "name_taken"),
        (json!({ "name": "../escape" }), StatusCode::BAD_REQUEST, "invalid_name"),
        (json!({ "branch": "--upload-pack=touch /tmp/x" }), StatusCode::BAD_REQUEST, "invalid_branch"),
        (json!({ "branch": "no-such-branch" }), StatusCode::CONFLICT, "branch_switch_failed"),
        (json!({ "owner": "someone" }), StatusCode::BAD_REQUEST, "invalid_request"),
    ] {
        let (status, body_answer) = patch(body.clone()).await;
        assert_eq!((status, body_answer["error"]["code"].as_str()), (expected_status, Some(code)), "{body}");
    }

    // The branch switch moves the checkout; git's own refusal keeps uncommitted work.
    let (status, switched) = patch(json!({ "branch": "feature" })).await;
    assert_eq!((status, switched["branch"].as_str()), (StatusCode::OK, Some("feature")), "{switched}");
    let checkout = server.checkout(&id);
    assert_eq!(git(&checkout, &["rev-parse", "--abbrev-ref", "HEAD"]), "feature");
    std::fs::write(checkout.join("README.md"), "changed here\n").unwrap();
    git(&source.path, &["checkout", "--quiet", "-b", "elsewhere"]);
    std::fs::write(source.path.join("README.md"), "changed there\n").unwrap();
    git(&source.path, &["commit", "--quiet", "-am", "elsewhere"]);
    git(&checkout, &["fetch", "--quiet", "origin"]);
    let (status, refused) = patch(json!({ "branch": "elsewhere" })).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("branch_switch_failed"))
    );
    assert_eq!(std::fs::read_to_string(checkout.join("README.md")).unwrap(), "changed here\n");
    std::fs::write(checkout.join("README.md"), "# demo\n").unwrap();

    // Not under a live session's feet; never another user's workspace.
    let (status, _) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, busy) = patch(json!({ "branch": "main" })).await;
    assert_eq!((status, busy["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("workspace_active")));
    let bob = server.member("bob").await;
    let (status, _) = bob
        .send(
            bob.request(reqwest::Method::PATCH, &format!("/api/workspaces/{id}"))
                .json(&json!({ "name": "mine" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// A client of the change feed: reads server-sent events and keeps all it read.
struct Feed {
    response: reqwest::Response,
    buffer: String,
    transcript: String,
}

impl Feed {
    async fn subscribe(api: &common::Api) -> Feed {
        Feed::subscribe_to(api, "/api/workspaces/changes").await
    }

    async fn subscribe_to(api: &common::Api, path: &str) -> Feed {
        let response = api.request(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Feed { response, buffer: String::new(), transcript: String::new() }
    }

    /// The data of the next event of `kind`.
    async fn next(&mut self, kind: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    self.transcript.push_str(&block);
                    let event = block.lines().find_map(|line| line.strip_prefix("event: "));
                    let data = block.lines().find_map(|line| line.strip_prefix("data: "));
                    if event == Some(kind) {
                        return serde_json::from_str(data.unwrap()).unwrap();
                    }
                }
                let chunk = self.response.chunk().await.unwrap().expect("the feed is open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no '{kind}' event"))
    }

    /// The next list in which the first workspace is ready.
    async fn until_first_ready(&mut self) -> Value {
        loop {
            let list = self.next("workspaces").await;
            if list["workspaces"][0]["state"] == "ready" {
                return list;
            }
        }
    }
}

#[tokio::test]
async fn the_change_feed_follows_the_callers_workspaces_only() {
    let server = TestServer::start().await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let mut alice_feed = Feed::subscribe(&alice).await;
    let mut bob_feed = Feed::subscribe(&bob).await;
    assert_eq!(alice_feed.next("workspaces").await, json!({ "workspaces": [] }));
    assert_eq!(bob_feed.next("workspaces").await, json!({ "workspaces": [] }));

    let id = alice.ready_workspace(&source.url(), "demo").await;
    let list = alice_feed.until_first_ready().await;
    assert_eq!(list["workspaces"][0]["id"], id);
    let changed = alice_feed.next("changed").await;
    assert_eq!(changed["workspace_id"], id);

    // Bob's feed never names Alice's workspace. His own workspace comes after hers, so
    // anything about hers would have come first.
    let own = bob.ready_workspace(&source.url(), "his").await;
    let bob_list = bob_feed.until_first_ready().await;
    assert_eq!(bob_list["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(bob_list["workspaces"][0]["id"], own);
    assert!(!bob_feed.transcript.contains(&id), "{}", bob_feed.transcript);

    let (status, _) = server.anonymous().get("/api/workspaces/changes").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_admins_feed_follows_every_users_sessions_and_members_are_refused() {
    let server = TestServer::start().await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "hers").await;
    let mut feed = Feed::subscribe_to(&server.admin(), "/api/admin/sessions/changes").await;
    assert_eq!(feed.next("sessions").await, json!({ "sessions": [] }));

    let (status, opened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap();
    let listed = loop {
        let list = feed.next("sessions").await;
        if list["sessions"].as_array().is_some_and(|sessions| !sessions.is_empty()) {
            break list;
        }
    };
    assert_eq!(listed["sessions"][0]["id"], session);
    assert_eq!(
        (listed["sessions"][0]["user_name"].as_str(), listed["sessions"][0]["workspace_name"].as_str()),
        (Some("alice"), Some("hers"))
    );
    let (status, _) = alice.post(&format!("/api/sessions/{session}/close"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    while feed.next("sessions").await != json!({ "sessions": [] }) {}

    let (status, refused) = alice.get("/api/admin/sessions/changes").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    server.stop().await;
}
