//! A person's display name and email: set on the account (`PATCH /api/me`), checked, and
//! carried by every commit — berth's own (`POST …/commit`) and the agent's own `git
//! commit` inside its sandbox, which has no identity configured but the person's.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_sandbox::{Isolation, Network};
use berth_testkit::{SourceRepo, git, have_program};
use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn patch_me(api: &common::Api, body: Value) -> (StatusCode, Value) {
    api.send(api.request(Method::PATCH, "/api/me").json(&body)).await
}

#[tokio::test]
async fn a_person_sets_a_display_name_and_email_and_bad_ones_are_refused() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let (_, me) = alice.get("/api/me").await;
    assert_eq!((me["display_name"].as_str(), me["email"].as_str()), (Some(""), Some("")), "{me}");
    assert_eq!(me["managed_by_provider"], false);

    let (status, me) =
        patch_me(&alice, json!({ "display_name": "Alice Liddell", "email": "alice@example.com" })).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["display_name"].as_str(), me["email"].as_str()),
        (Some("Alice Liddell"), Some("alice@example.com"))
    );
    // A field left out is kept.
    let (_, me) = patch_me(&alice, json!({ "display_name": "Alice L." })).await;
    assert_eq!(me["email"], "alice@example.com", "{me}");

    for (body, code) in [
        (json!({ "email": "not-an-address" }), "invalid_email"),
        (json!({ "email": "a@b\nBcc: x@y" }), "invalid_email"),
        (json!({ "display_name": "Eve <eve@example.com>" }), "invalid_display_name"),
        (json!({ "nickname": "x" }), "invalid_request"),
        (json!([]), "invalid_request"),
    ] {
        let (status, answer) = patch_me(&alice, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let (_, me) = alice.get("/api/me").await;
    assert_eq!(
        (me["display_name"].as_str(), me["email"].as_str()),
        (Some("Alice L."), Some("alice@example.com"))
    );
    // Nobody else's changed.
    let (_, admin) = server.admin().get("/api/me").await;
    assert_eq!(admin["display_name"], "", "{admin}");
}

#[tokio::test]
async fn berths_commit_and_the_agents_own_commit_carry_the_person() {
    if !have_program("bwrap", "scripts/test.sh") {
        return;
    }
    let server = TestServer::start_with(|config| {
        config.isolation = Isolation::Bwrap;
        config.network = Network::Isolated;
    })
    .await;
    let alice = server.member("alice").await;
    let (status, _) =
        patch_me(&alice, json!({ "display_name": "Alice Liddell", "email": "alice@example.com" })).await;
    assert_eq!(status, StatusCode::OK);
    let source = SourceRepo::new();
    let id = alice.ready_workspace(&source.url(), "identity").await;
    let checkout = server.checkout(&id);

    // berth's commit.
    std::fs::write(checkout.join("by-berth.txt"), "x\n").unwrap();
    let (status, committed) =
        alice.post(&format!("/api/workspaces/{id}/commit"), json!({ "message": "by berth" })).await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    let people = "%an <%ae> / %cn <%ce>";
    assert_eq!(
        git(&checkout, &["log", "-1", &format!("--format={people}")]),
        "Alice Liddell <alice@example.com> / Alice Liddell <alice@example.com>"
    );

    // The agent's own `git commit`, with no `-c user.*` and no configuration of its own.
    let agent = "mkdir -p .berth; echo y > by-agent.txt; git add by-agent.txt; \
                 git commit -q -m by-agent > .berth/commit.log 2>&1; echo $? > .berth/commit.part; \
                 mv .berth/commit.part .berth/commit.status; exec sleep 600";
    let (status, _) = alice
        .send(alice.request(Method::PATCH, &format!("/api/workspaces/{id}")).json(&json!({ "agent": agent })))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, opened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let status_file = checkout.join(".berth/commit.status");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !status_file.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the agent never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(checkout.join(".berth/commit.log")).unwrap_or_default();
    assert_eq!(
        std::fs::read_to_string(&status_file).unwrap().trim(),
        "0",
        "the agent's commit failed: {log}"
    );
    assert_eq!(git(&checkout, &["log", "-1", "--format=%s"]), "by-agent");
    assert_eq!(
        git(&checkout, &["log", "-1", &format!("--format={people}")]),
        "Alice Liddell <alice@example.com> / Alice Liddell <alice@example.com>"
    );
}
