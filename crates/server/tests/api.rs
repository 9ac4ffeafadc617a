//! The HTTP API over real HTTP against a server started in the test: auth, users and
//! tokens, the workspace lifecycle, ownership, and the operations endpoints.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_testkit::SourceRepo;
use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn operations_endpoints_answer() {
    let server = TestServer::start().await;
    let anonymous = server.anonymous();
    assert_eq!(anonymous.get("/healthz").await, (StatusCode::OK, json!("ok")));
    assert_eq!(anonymous.get("/readyz").await, (StatusCode::OK, json!("ready")));
    let (status, openapi) = anonymous.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in
        ["/api/workspaces", "/api/workspaces/{id}", "/api/workspaces/{id}/git", "/api/me", "/api/users"]
    {
        assert!(openapi["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
}

#[tokio::test]
async fn every_api_call_needs_a_valid_token() {
    let server = TestServer::start().await;
    for (api, label) in
        [(server.anonymous(), "no token"), (server.as_user("berth_not_a_real_token"), "bad token")]
    {
        for (method, path) in [
            (Method::GET, "/api/me"),
            (Method::GET, "/api/workspaces"),
            (Method::POST, "/api/workspaces"),
            (Method::POST, "/api/tokens"),
            (Method::POST, "/api/users"),
        ] {
            let (status, body) = api.send(api.request(method.clone(), path).json(&json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{label} {method} {path}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn users_and_tokens() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let (status, me) = admin.get("/api/me").await;
    assert_eq!(
        (status, me["name"].as_str(), me["role"].as_str()),
        (StatusCode::OK, Some("admin"), Some("admin"))
    );

    let (status, created) = admin.post("/api/users", json!({ "name": "alice" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user"]["role"], "member");
    let alice = server.as_user(created["token"].as_str().unwrap());
    assert_eq!(alice.get("/api/me").await.1["name"], "alice");

    let (status, refused) = alice.post("/api/users", json!({ "name": "mallory", "role": "admin" })).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));

    let (status, again) = admin.post("/api/users", json!({ "name": "alice" })).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("name_taken")));

    let (status, token) = alice.post("/api/tokens", json!(null)).await;
    assert_eq!(status, StatusCode::CREATED);
    let second = server.as_user(token["token"].as_str().unwrap());
    assert_eq!(second.get("/api/me").await.1["name"], "alice");
}

#[tokio::test]
async fn the_login_link_sets_a_cookie_that_authenticates() {
    let server = TestServer::start().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response =
        http.get(format!("{}/login?token={}", server.url, common::ADMIN_TOKEN)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let me = http.get(format!("{}/api/me", server.url)).header("cookie", pair).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let refused = http.get(format!("{}/login?token=wrong", server.url)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(reqwest::header::SET_COOKIE).is_none());
    // A browser goes back to the sign-in page, which says why.
    let refused = http
        .get(format!("{}/login?token=wrong", server.url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert_eq!(refused.headers()[reqwest::header::LOCATION], "/signin?refused=1");
    assert!(refused.headers().get(reqwest::header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_workspace_goes_from_creation_to_deletion() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;

    let ready = alice.create_settled(json!({ "repo": source.url(), "name": "demo" })).await;
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(ready["branch"], "main");
    assert_eq!(ready["active_session"], json!(null));
    let id = ready["id"].as_str().unwrap().to_owned();
    // A directory of the server is never pushed to: the answer says so, and so does push.
    assert_eq!(ready["pushable"], false, "{ready}");
    let (status, refused) = alice.post(&format!("/api/workspaces/{id}/push"), json!(null)).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("push_failed")));

    let (status, list) = alice.get("/api/workspaces").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 1);

    let response =
        alice.request(Method::GET, &format!("/api/workspaces/{id}/init-log")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let log = response.text().await.unwrap();
    assert!(log.contains("Cloning into"), "{log}");
    assert!(
        !log.contains(server.data.path().to_str().unwrap()),
        "the log must not reveal the data directory"
    );

    let checkout = server.data.path().join("workspaces").join(&id);
    std::fs::write(checkout.join("draft.txt"), "unsaved\n").unwrap();
    let (status, git) = alice.get(&format!("/api/workspaces/{id}/git")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        git,
        json!({ "branch": "main", "head": source.head(), "clean": false,
        "uncommitted": ["draft.txt"], "unpushed_commits": 0 })
    );

    let (status, refused) = alice.delete(&format!("/api/workspaces/{id}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["error"]["code"], "unsaved_work");
    assert_eq!(refused["error"]["git"]["uncommitted"], json!(["draft.txt"]));
    assert!(checkout.join("draft.txt").exists());

    let (status, deleted) = alice.delete(&format!("/api/workspaces/{id}?force=true")).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({ "deleted": id })));
    assert!(!checkout.exists());
    assert_eq!(alice.get(&format!("/api/workspaces/{id}")).await.0, StatusCode::NOT_FOUND);
    assert!(source.path.join("README.md").exists(), "the remote is never touched");
}

#[tokio::test]
async fn a_failed_clone_is_reported_and_can_be_retried_or_deleted() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let failed = alice.create_settled(json!({ "repo": "http://127.0.0.1:9/missing.git" })).await;
    assert_eq!(failed["state"], "error");
    assert!(failed["error"].as_str().unwrap().contains("127.0.0.1"));
    let id = failed["id"].as_str().unwrap();

    let (status, refused) = alice.get(&format!("/api/workspaces/{id}/git")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("workspace_not_ready"))
    );

    let (status, retried) = alice.post(&format!("/api/workspaces/{id}/retry"), json!(null)).await;
    assert_eq!((status, retried["state"].as_str()), (StatusCode::ACCEPTED, Some("initialising")));
    assert_eq!(alice.settled(id).await["state"], "error");

    let (status, _) = alice.delete(&format!("/api/workspaces/{id}")).await;
    assert_eq!(status, StatusCode::OK, "a workspace in error has nothing to lose");
}

#[tokio::test]
async fn one_user_never_reaches_another_users_workspace() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let ready = alice.create_settled(json!({ "repo": source.url() })).await;
    let id = ready["id"].as_str().unwrap();

    for (method, path) in [
        (Method::GET, format!("/api/workspaces/{id}")),
        (Method::GET, format!("/api/workspaces/{id}/init-log")),
        (Method::GET, format!("/api/workspaces/{id}/git")),
        (Method::POST, format!("/api/workspaces/{id}/retry")),
        (Method::DELETE, format!("/api/workspaces/{id}?force=true")),
    ] {
        let (status, body) = bob.send(bob.request(method.clone(), &path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(bob.get("/api/workspaces").await.1, json!({ "workspaces": [] }));
    // The admin, too, sees only their own workspaces.
    assert_eq!(server.admin().get(&format!("/api/workspaces/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(alice.get(&format!("/api/workspaces/{id}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn names_are_unique_per_user_and_derived_when_missing() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let first = alice.create_settled(json!({ "repo": source.url() })).await;
    let second = alice.create_settled(json!({ "repo": source.url() })).await;
    assert_eq!((first["name"].as_str(), second["name"].as_str()), (Some("demo"), Some("demo-2")));
    let (status, taken) =
        alice.post("/api/workspaces", json!({ "repo": source.url(), "name": "demo" })).await;
    assert_eq!((status, taken["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("name_taken")));
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_with_the_envelope() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let (status, body) = admin.get("/api/nothing-here").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = admin.send(admin.request(Method::PUT, "/api/workspaces")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (status, body) = admin.get("/api/workspaces/..%2F..%2Fetc").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

/// On PostgreSQL, a database that goes away: `readyz` says so and a request that needs it
/// is answered `503 store_unavailable` — never a panic, never `500`.
#[tokio::test]
async fn a_database_that_goes_away_answers_503_store_unavailable() {
    let Some(postgres) = berth_testkit::PostgresDatabase::create() else { return };
    let proxy = berth_testkit::CuttableProxy::start(&postgres.address).await;
    let url = postgres.url_via(&proxy.address);
    let server = TestServer::start_with(|config| config.database_url = url).await;
    let alice = server.member("alice").await;
    assert_eq!(server.anonymous().get("/readyz").await.0, StatusCode::OK);
    proxy.cut().await;

    let (status, body) = server.anonymous().get("/readyz").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable"))
    );
    let (status, body) =
        alice.post("/api/workspaces", json!({ "repo": "https://example.com/o/r.git", "name": "x" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")),
        "{body}"
    );
}

/// A replica cut off from its database for longer than its lease abandons its sessions
/// (another replica may be ending them); when the database answers again, it ends the
/// ones nobody ended (`replica_lost`) rather than leaving them live without an owner.
#[tokio::test]
async fn a_replica_cut_off_from_its_database_past_its_lease_leaves_no_session_live_without_an_owner() {
    let Some(postgres) = berth_testkit::PostgresDatabase::create() else { return };
    let proxy = berth_testkit::CuttableProxy::start(&postgres.address).await;
    let address = proxy.address.clone();
    let url = postgres.url_via(&address);
    let server = TestServer::start_with(|config| {
        config.database_url = url;
        config.replica.lease = std::time::Duration::from_secs(1);
    })
    .await;
    let alice = server.member("alice").await;
    let source = berth_testkit::SourceRepo::new();
    let workspace = alice.ready_workspace(&source.url(), "demo").await;
    let (status, opened) = alice.post(&format!("/api/workspaces/{workspace}/open"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();

    proxy.cut().await;
    server.until_no_sandbox_runs().await;
    let _back = berth_testkit::CuttableProxy::start_on(&address, &postgres.address).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, shown) = alice.get(&format!("/api/sessions/{session}")).await;
        if shown["state"] == "ended" {
            assert_eq!(shown["end_reason"], "replica_lost", "{shown}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the abandoned session stayed live: {shown}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
