//! Sign-in through a real OpenID Connect provider (panva's certified `oidc-provider`, which
//! the test script installs from npm, on a loopback port), driven as a browser would: its
//! own login and consent pages, redirects and cookies. A person is (issuer, subject): the
//! first sign-in makes a member with name and email, a second keeps the user, an admin
//! group makes an admin, a name taken by someone else gets a suffix, a group outside
//! `allowed_groups` is refused. A tampered `state`, a replayed callback or code, a
//! callback in another browser, a wrong `nonce` and an ID token signed by another key
//! never sign anyone in; berth starts while the provider is down.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_testkit::{OidcProvider, have_node_package};
use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn accounts() -> Value {
    json!({
        "alice": { "name": "Alice Liddell", "email": "alice@example.com", "email_verified": true,
                   "preferred_username": "alice", "groups": ["dev"] },
        "carol": { "name": "Carol Admin", "email": "carol@example.com", "email_verified": true,
                   "preferred_username": "carol", "groups": ["dev", "ops"] },
        "eve": { "name": "Eve Outsider", "email": "eve@example.com", "email_verified": true,
                 "preferred_username": "eve", "groups": ["sales"] },
    })
}

/// A berth server whose sign-in goes through a provider started for it with `tamper`.
async fn server_and_provider(tamper: &str) -> Option<(TestServer, OidcProvider)> {
    if !have_node_package("oidc-provider") {
        return None;
    }
    let port = berth_testkit::free_port();
    let mut provider = None;
    let server = TestServer::start_with_url(|config, url| {
        let started = OidcProvider::start(port, &format!("{url}/auth/oidc/callback"), &accounts(), tamper);
        config.oidc = Some(settings(&started));
        provider = Some(started);
    })
    .await;
    Some((server, provider.unwrap()))
}

/// The provider's settings with dev and ops allowed and ops the administrators.
fn settings(provider: &OidcProvider) -> berth_engine::config::OidcSettings {
    let mut settings = settings_for_issuer(&provider.issuer());
    settings.allowed_groups = vec!["dev".into(), "ops".into()];
    settings.admin_groups = vec!["ops".into()];
    settings
}

/// A browser: keeps cookies, follows no redirect by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn absolute(location: &str, base: &str) -> String {
    if location.starts_with("http") {
        return location.to_owned();
    }
    let origin: String = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    format!("{origin}{location}")
}

/// Goes from berth's start through the provider's login (as `login`) and consent pages,
/// up to the callback address the provider sends the browser to — not requested yet.
async fn to_callback(http: &reqwest::Client, berth: &str, login: &str) -> String {
    let mut url = format!("{berth}/auth/oidc/start?next=/account");
    for _ in 0..20 {
        let response = http.get(&url).send().await.unwrap();
        if response.status().is_redirection() {
            let location = response.headers()[reqwest::header::LOCATION].to_str().unwrap();
            url = absolute(location, &url);
            if url.starts_with(berth) && url.contains("/auth/oidc/callback") {
                return url;
            }
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let page = response.text().await.unwrap();
        let action = page.split("action=\"").nth(1).and_then(|rest| rest.split('"').next()).expect(&page);
        let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let posted = http.post(absolute(action, &url)).form(&form).send().await.unwrap();
        assert!(posted.status().is_redirection(), "{}: {}", posted.status(), posted.text().await.unwrap());
        url = absolute(posted.headers()[reqwest::header::LOCATION].to_str().unwrap(), &url);
    }
    panic!("the sign-in never came back to berth");
}

/// Who `http`'s cookie signs in at berth, if anyone.
async fn me(http: &reqwest::Client, berth: &str) -> Option<Value> {
    let answer = http.get(format!("{berth}/api/me")).send().await.unwrap();
    (answer.status() == StatusCode::OK).then_some(answer.json().await.unwrap())
}

/// A whole sign-in as `login`: the callback's answer and who the browser is after.
async fn sign_in(berth: &str, login: &str) -> (StatusCode, Option<Value>) {
    let http = browser();
    let callback = to_callback(&http, berth, login).await;
    let answer = http.get(&callback).send().await.unwrap();
    (answer.status(), me(&http, berth).await)
}

#[tokio::test]
async fn people_are_made_and_kept_by_issuer_and_subject_and_the_groups_decide() {
    let Some((server, _provider)) = server_and_provider("").await else { return };
    // A token user already called `carol`: the provider's carol is someone else.
    let (status, _) = server.admin().post("/api/users", json!({ "name": "carol" })).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, alice) = sign_in(&server.url, "alice").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let alice = alice.expect("alice is signed in");
    assert_eq!(
        (
            alice["name"].as_str(),
            alice["display_name"].as_str(),
            alice["email"].as_str(),
            alice["role"].as_str()
        ),
        (Some("alice"), Some("Alice Liddell"), Some("alice@example.com"), Some("member")),
        "{alice}"
    );
    assert_eq!(alice["managed_by_provider"], true);
    let (_, again) = sign_in(&server.url, "alice").await;
    assert_eq!(again.unwrap()["id"], alice["id"], "the same person is the same user");
    // With admin groups named, the groups decide the role at every sign-in.
    let made_admin = server
        .admin()
        .send(
            server
                .admin()
                .request(reqwest::Method::PATCH, &format!("/api/users/{}", alice["id"].as_str().unwrap()))
                .json(&json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(made_admin.0, StatusCode::OK, "{}", made_admin.1);
    let (_, again) = sign_in(&server.url, "alice").await;
    assert_eq!(again.unwrap()["role"], "member", "dev is no admin group");

    let (_, carol) = sign_in(&server.url, "carol").await;
    let carol = carol.unwrap();
    assert_eq!((carol["name"].as_str(), carol["role"].as_str()), (Some("carol-2"), Some("admin")), "{carol}");

    // Outside the allowed groups: a page that says so, and no sign-in.
    let http = browser();
    let callback = to_callback(&http, &server.url, "eve").await;
    let refused = http.get(&callback).header("accept", "text/html").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("members of dev, ops only"));
    assert!(me(&http, &server.url).await.is_none());

    // The provider's people get their name and email from it.
    let http = browser();
    let callback = to_callback(&http, &server.url, "alice").await;
    assert_eq!(http.get(&callback).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    let changed = http
        .patch(format!("{}/api/me", server.url))
        .header("origin", &server.url)
        .json(&json!({ "email": "other@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::CONFLICT);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "managed_by_provider");
    let sign_ins: Value =
        http.get(format!("{}/api/sign-ins", server.url)).send().await.unwrap().json().await.unwrap();
    assert!(
        sign_ins["sign_ins"].as_array().unwrap().iter().any(|s| s["via"] == "oidc" && s["current"] == true)
    );
}

#[tokio::test]
async fn a_tampered_state_a_replay_and_another_browsers_callback_sign_nobody_in() {
    let Some((server, _provider)) = server_and_provider("").await else { return };
    let http = browser();
    let callback = to_callback(&http, &server.url, "alice").await;
    let bad = |status: StatusCode| assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another browser (no binding cookie) with the very same address.
    let other = browser();
    bad(other.get(&callback).send().await.unwrap().status());
    assert!(me(&other, &server.url).await.is_none());

    // A fresh start, then its state tampered with.
    let callback = to_callback(&http, &server.url, "alice").await;
    let tampered = callback.replacen("state=", "state=x", 1);
    bad(http.get(&tampered).send().await.unwrap().status());
    assert!(me(&http, &server.url).await.is_none());

    // Signed in once; the same callback again is refused.
    let callback = to_callback(&http, &server.url, "alice").await;
    assert_eq!(http.get(&callback).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert!(me(&http, &server.url).await.is_some());
    let fresh = browser();
    let replayed_code = callback.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    // The used code with a new, valid state of a new browser: the provider refuses it.
    let next = to_callback(&fresh, &server.url, "alice").await;
    let new_code = next.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    bad(fresh.get(next.replacen(&new_code, &replayed_code, 1)).send().await.unwrap().status());
    assert!(me(&fresh, &server.url).await.is_none());
    bad(http.get(&callback).send().await.unwrap().status());
}

#[tokio::test]
async fn an_id_token_with_a_wrong_nonce_is_refused() {
    let Some((server, _provider)) = server_and_provider("wrong-nonce").await else { return };
    let (status, signed_in) = sign_in(&server.url, "alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(signed_in.is_none());
}

#[tokio::test]
async fn an_id_token_signed_by_another_key_is_refused() {
    let Some((server, _provider)) = server_and_provider("other-key").await else { return };
    let (status, signed_in) = sign_in(&server.url, "alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(signed_in.is_none());
}

#[tokio::test]
async fn berth_starts_while_the_provider_is_down_and_uses_it_once_it_answers() {
    if !have_node_package("oidc-provider") {
        return;
    }
    let port = berth_testkit::free_port();
    let mut redirect = String::new();
    let server = TestServer::start_with_url(|config, url| {
        redirect = format!("{url}/auth/oidc/callback");
        config.oidc = Some(settings_for_issuer(&format!("http://127.0.0.1:{port}")));
    })
    .await;
    let (_, options) = server.anonymous().get("/api/sign-in-options").await;
    assert_eq!(options["oidc"]["reachable"], false, "{options}");
    let http = browser();
    let down = http.get(format!("{}/auth/oidc/start", server.url)).send().await.unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["error"]["code"], "oidc_unavailable");
    // The token login still works meanwhile.
    assert_eq!(server.admin().get("/api/me").await.0, StatusCode::OK);

    let _provider = OidcProvider::start(port, &redirect, &accounts(), "");
    let (status, signed_in) = sign_in(&server.url, "alice").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let alice = signed_in.unwrap();
    assert_eq!(alice["name"], "alice");
    // No admin groups named: a role an administrator gives stays across sign-ins.
    let promote = server
        .admin()
        .request(reqwest::Method::PATCH, &format!("/api/users/{}", alice["id"].as_str().unwrap()))
        .json(&json!({ "role": "admin" }));
    assert_eq!(server.admin().send(promote).await.0, StatusCode::OK);
    let (_, again) = sign_in(&server.url, "alice").await;
    assert_eq!(again.unwrap()["role"], "admin");
    let (_, options) = server.anonymous().get("/api/sign-in-options").await;
    assert_eq!(options["oidc"]["reachable"], true, "{options}");
}

fn settings_for_issuer(issuer: &str) -> berth_engine::config::OidcSettings {
    let list = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
    berth_engine::config::OidcSettings {
        issuer: issuer.to_owned(),
        client_id: "berth-test".into(),
        client_secret: Some("berth-test-client-secret".into()),
        display_name: "Test IdP".into(),
        scopes: list(&["openid", "profile", "email", "groups"]),
        username_claim: "preferred_username".into(),
        groups_claim: "groups".into(),
        allowed_groups: Vec::new(),
        allowed_email_domains: Vec::new(),
        admin_groups: Vec::new(),
    }
}
