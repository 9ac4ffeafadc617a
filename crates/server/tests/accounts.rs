//! Tokens and accounts: named tokens listed without secrets, revocation and expiry that
//! take effect at once (a cached token included), a disabled user locked out with their
//! sessions closed, sign-out, and the login cookie's attributes.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_testkit::SourceRepo;
use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn a_named_token_is_listed_without_its_secret_and_revoked_at_once() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let (status, made) = alice.post("/api/tokens", json!({ "name": "laptop" })).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["name"], "laptop");
    assert_eq!(made["expires_at"], Value::Null);
    let secret = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();

    let laptop = server.as_user(&secret);
    // Used once, so the server has it cached as valid.
    assert_eq!(laptop.get("/api/me").await.0, StatusCode::OK);
    let (_, listed) = alice.get("/api/tokens").await;
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "the first token and the laptop's: {listed}");
    assert!(!listed.to_string().contains(&secret), "a listing never holds a secret: {listed}");
    let entry = tokens.iter().find(|token| token["id"] == id.as_str()).unwrap();
    assert!(
        secret.starts_with(entry["prefix"].as_str().unwrap()) && entry["last_used_at"].is_string(),
        "{entry}"
    );

    // Bob cannot revoke (or see) alice's token: it is not found for him.
    let (status, _) = bob.delete(&format!("/api/tokens/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = alice.delete(&format!("/api/tokens/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = laptop.get("/api/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token fails at once, cache or not: {body}");
    assert_eq!(alice.get("/api/me").await.0, StatusCode::OK, "her other token still works");
}

#[tokio::test]
async fn an_expired_token_fails_and_bad_requests_are_refused() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let (status, made) = alice.post("/api/tokens", json!({ "expires_in_s": 1 })).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert!(made["expires_at"].is_string());
    let short = server.as_user(made["token"].as_str().unwrap());
    assert_eq!(short.get("/api/me").await.0, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while short.get("/api/me").await.0 != StatusCode::UNAUTHORIZED {
        assert!(tokio::time::Instant::now() < deadline, "the token outlived its expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No body is a token with defaults; anything but an object is refused.
    let (status, _) = alice.send(alice.request(Method::POST, "/api/tokens")).await;
    assert_eq!(status, StatusCode::CREATED);
    for body in ["[]", "3", "{\"name\": \"x\", \"secret\": 1}", "{\"expires_in_s\": -1}"] {
        let request = alice.request(Method::POST, "/api/tokens").header("content-type", "application/json");
        let (status, answer) = alice.send(request.body(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
    }
    let (status, answer) = alice.post("/api/tokens", json!({ "expires_in_s": 0 })).await;
    assert_eq!((status, answer["error"]["code"].clone()), (StatusCode::CONFLICT, json!("invalid_expiry")));
}

async fn patch(api: &common::Api, user: &str, body: Value) -> (StatusCode, Value) {
    api.send(api.request(Method::PATCH, &format!("/api/users/{user}")).json(&body)).await
}

#[tokio::test]
async fn a_disabled_user_is_locked_out_and_their_sessions_close() {
    let server = TestServer::start().await;
    let source = SourceRepo::new();
    let admin = server.admin();
    let alice = server.member("alice").await;
    let id = alice.ready_workspace(&source.url(), "demo").await;
    let (status, opened) = alice.open(&id).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session"]["id"].as_str().unwrap().to_owned();

    let (status, users) = alice.get("/api/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members do not list users: {users}");
    let (_, users) = admin.get("/api/users").await;
    let alice_id = users["users"].as_array().unwrap().iter().find(|u| u["name"] == "alice").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = patch(&alice, &alice_id, json!({ "disabled": false })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, changed) = patch(&admin, &alice_id, json!({ "disabled": true })).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["disabled"], true);

    assert_eq!(alice.get("/api/me").await.0, StatusCode::UNAUTHORIZED, "her tokens stop at once");
    let (_, live) = admin.get("/api/admin/sessions").await;
    assert!(!live.to_string().contains(&session), "her session closed: {live}");
    let (_, me) = admin.get("/api/me").await;
    let (status, refused) = patch(&admin, me["id"].as_str().unwrap(), json!({ "disabled": true })).await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("cannot_change_yourself"))
    );

    let (status, _) = patch(&admin, &alice_id, json!({ "disabled": false })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alice.get("/api/me").await.0, StatusCode::OK, "enabled again");
    let (_, ended) = alice.get(&format!("/api/sessions/{session}")).await;
    assert_eq!(
        (ended["state"].clone(), ended["end_reason"].clone()),
        (json!("ended"), json!("admin")),
        "{ended}"
    );
}

#[tokio::test]
async fn signing_out_revokes_the_cookie_token_and_clears_the_cookie() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let (_, made) = alice.post("/api/tokens", json!({ "name": "browser" })).await;
    let token = made["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = http.get(format!("{}/login?token={token}", server.url)).send().await.unwrap();
    let cookie = login.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("Max-Age=2592000"), "30 days by default: {cookie}");
    assert!(!cookie.contains("Domain") && !cookie.contains("Secure"), "host-only, plain http: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    // Behind a TLS proxy the cookie is Secure.
    let proxied = http
        .get(format!("{}/login?token={token}", server.url))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(proxied.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().contains("; Secure"));

    let host = server.url.trim_start_matches("http://").to_owned();
    let logout = http
        .post(format!("{}/logout", server.url))
        .header("cookie", &pair)
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = logout.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("berth_token=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let me = http.get(format!("{}/api/me", server.url)).header("cookie", &pair).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.as_user(&token).get("/api/me").await.0, StatusCode::UNAUTHORIZED);
}
