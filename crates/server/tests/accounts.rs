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

    let (status, refused) = alice.get("/api/me").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("account_disabled")),
        "her tokens stop at once, and say why"
    );
    let (_, nobody) = server.as_user("berth_no_such_token_000000000000000").get("/api/me").await;
    assert_eq!(nobody["error"]["code"], "unauthorized", "an unknown token is not told apart");
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

/// A client that follows no redirect, so a test sees each one.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Who the cookie `pair` signs in (`None`: nobody).
async fn signed_in_as(server: &TestServer, pair: &str) -> Option<String> {
    let me = browser().get(format!("{}/api/me", server.url)).header("cookie", pair).send().await.unwrap();
    if me.status() != StatusCode::OK {
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
        return None;
    }
    let me: Value = me.json().await.unwrap();
    me["name"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn signing_out_ends_the_browsers_sign_in_and_never_its_token() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let (_, made) = alice.post("/api/tokens", json!({ "name": "browser" })).await;
    let token = made["token"].as_str().unwrap().to_owned();
    let http = browser();
    let login = http
        .get(format!("{}/login?token={token}", server.url))
        .header("user-agent", "TestBrowser/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("Max-Age=2592000"), "30 days by default: {cookie}");
    assert!(!cookie.contains("Domain") && !cookie.contains("Secure"), "host-only, plain http: {cookie}");
    assert!(!cookie.contains(&token), "the cookie holds a sign-in of its own, not the token: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    // Behind a TLS proxy the cookie is Secure.
    let proxied = http
        .get(format!("{}/login?token={token}", server.url))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert!(proxied.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().contains("; Secure"));

    // Both sign-ins are listed, with when and from where; this browser's is marked.
    let listed: Value = http
        .get(format!("{}/api/sign-ins", server.url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sign_ins = listed["sign_ins"].as_array().unwrap();
    assert_eq!(sign_ins.len(), 2, "{listed}");
    let current: Vec<&Value> = sign_ins.iter().filter(|sign_in| sign_in["current"] == true).collect();
    assert_eq!(current.len(), 1, "{listed}");
    assert_eq!(
        (current[0]["user_agent"].as_str(), current[0]["via"].as_str()),
        (Some("TestBrowser/1.0"), Some("token"))
    );
    assert_eq!(current[0]["address"], "127.0.0.1", "{listed}");
    assert!(sign_ins.iter().any(|sign_in| sign_in["address"] == "203.0.113.7"), "{listed}");
    assert!(!listed.to_string().contains(&token), "{listed}");

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
    assert_eq!(signed_in_as(&server, &pair).await, None, "the sign-in ended");

    // The token it came from still works, and so does the login link.
    assert_eq!(server.as_user(&token).get("/api/me").await.0, StatusCode::OK);
    let again = berth_testkit::sign_in_cookie(&server.url, &token).await;
    assert_eq!(signed_in_as(&server, &again).await.as_deref(), Some("alice"));
    // A token put in the cookie by hand is no sign-in.
    assert_eq!(signed_in_as(&server, &format!("berth_token={token}")).await, None);
}

#[tokio::test]
async fn a_sign_in_ends_one_by_one_with_its_token_and_with_its_user() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let token = alice.token().unwrap().to_owned();
    let first = berth_testkit::sign_in_cookie(&server.url, &token).await;
    let second = berth_testkit::sign_in_cookie(&server.url, &token).await;
    let (_, listed) = alice.get("/api/sign-ins").await;
    let ids: Vec<String> =
        listed["sign_ins"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2);
    assert!(
        listed["sign_ins"].as_array().unwrap().iter().all(|s| s["current"] == false),
        "a bearer has none"
    );

    // Another user cannot end alice's.
    assert_eq!(bob.delete(&format!("/api/sign-ins/{}", ids[0])).await.0, StatusCode::NOT_FOUND);
    // Ended one by one: the newest (`second`) goes, the other stays.
    assert_eq!(alice.delete(&format!("/api/sign-ins/{}", ids[0])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(signed_in_as(&server, &second).await, None);
    assert_eq!(signed_in_as(&server, &first).await.as_deref(), Some("alice"));

    // Revoking the token it was made from ends it.
    let (_, made) = alice.post("/api/tokens", json!({ "name": "kept" })).await;
    let kept = server.as_user(made["token"].as_str().unwrap());
    let (_, tokens) = kept.get("/api/tokens").await;
    let first_token = tokens["tokens"].as_array().unwrap().iter().find(|t| t["name"] != "kept").unwrap();
    let revoked = kept.delete(&format!("/api/tokens/{}", first_token["id"].as_str().unwrap())).await;
    assert_eq!(revoked.0, StatusCode::NO_CONTENT);
    assert_eq!(signed_in_as(&server, &first).await, None, "the sign-in went with its token");

    // Disabling the user ends their sign-ins.
    let third = berth_testkit::sign_in_cookie(&server.url, made["token"].as_str().unwrap()).await;
    assert_eq!(signed_in_as(&server, &third).await.as_deref(), Some("alice"));
    let (_, me) = kept.get("/api/me").await;
    let disabled = server
        .admin()
        .send(
            server
                .admin()
                .request(reqwest::Method::PATCH, &format!("/api/users/{}", me["id"].as_str().unwrap()))
                .json(&json!({ "disabled": true })),
        )
        .await;
    assert_eq!(disabled.0, StatusCode::OK, "{}", disabled.1);
    assert_eq!(signed_in_as(&server, &third).await, None, "a disabled user is signed out");
}

#[tokio::test]
async fn a_login_link_never_switches_a_browser_signed_in_as_someone_else() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let mallory = server.member("mallory").await;
    let alices = berth_testkit::sign_in_cookie(&server.url, alice.token().unwrap()).await;
    let mallorys_token = mallory.token().unwrap().to_owned();
    let http = browser();

    // Mallory's link opened in alice's browser: a page naming both, and no new cookie.
    let opened = http
        .get(format!("{}/login?token={mallorys_token}&next=/account", server.url))
        .header("cookie", &alices)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    assert!(opened.headers().get(reqwest::header::SET_COOKIE).is_none(), "the link switched the browser");
    let page = opened.text().await.unwrap();
    assert!(page.contains("signed in as alice") && page.contains("mallory"), "{page}");
    assert!(page.contains("method=\"post\" action=\"/login\""), "{page}");
    assert_eq!(signed_in_as(&server, &alices).await.as_deref(), Some("alice"));

    // Switching takes a POST from berth's own origin: another site's form is refused.
    let form = [("token", mallorys_token.as_str()), ("next", "/account")];
    for (header, value) in [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")] {
        let forged = http
            .post(format!("{}/login", server.url))
            .header("cookie", &alices)
            .header(header, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{header}: {value}");
        assert!(forged.headers().get(reqwest::header::SET_COOKIE).is_none());
        assert_eq!(signed_in_as(&server, &alices).await.as_deref(), Some("alice"));
    }
    let switched = http
        .post(format!("{}/login", server.url))
        .header("cookie", &alices)
        .header("origin", &server.url)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), StatusCode::SEE_OTHER);
    assert_eq!(switched.headers()[reqwest::header::LOCATION], "/account");
    let cookie = switched.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    let mallorys = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(signed_in_as(&server, &mallorys).await.as_deref(), Some("mallory"));
    assert_eq!(signed_in_as(&server, &alices).await, None, "switching signed alice out");

    // Her own link in her own browser just goes on.
    let own = http
        .get(format!("{}/login?token={mallorys_token}&next=/account", server.url))
        .header("cookie", &mallorys)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::SEE_OTHER);
    assert!(own.headers().get(reqwest::header::SET_COOKIE).is_none());
}
