//! Input a stranger controls: every bad request gets a 4xx with a stable code, and
//! nothing is created on disk or in the store for it.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn bad_workspace_requests_are_refused_with_stable_codes() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let ten_megabytes = "n".repeat(10 * 1024 * 1024);
    let json_body = |value: Value| alice.request(Method::POST, "/api/workspaces").json(&value);
    let raw_body = |text: &str| {
        alice
            .request(Method::POST, "/api/workspaces")
            .header("content-type", "application/json")
            .body(text.to_owned())
    };

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        ("malformed JSON", raw_body("{\"repo\": "), StatusCode::BAD_REQUEST, "invalid_request"),
        ("not an object", raw_body("[1, 2]"), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "no content type",
            alice.request(Method::POST, "/api/workspaces").body("{}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("missing repo", json_body(json!({ "name": "x" })), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "unknown field",
            json_body(json!({ "repo": "/srv/r", "owner": "someone" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("wrong type", json_body(json!({ "repo": 42 })), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "empty name",
            json_body(json!({ "repo": "/srv/r", "name": "" })),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "name with a slash",
            json_body(json!({ "repo": "/srv/r", "name": "../escape" })),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "10 MB name",
            json_body(json!({ "repo": "/srv/r", "name": ten_megabytes })),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        ("empty repo", json_body(json!({ "repo": "" })), StatusCode::BAD_REQUEST, "invalid_repo"),
        (
            "repo as an option",
            json_body(json!({ "repo": "--upload-pack=touch /tmp/pwned" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "repo as a short option",
            json_body(json!({ "repo": "-u/tmp/x" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "ext transport",
            json_body(json!({ "repo": "ext::sh -c touch% /tmp/pwned" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "file transport",
            json_body(json!({ "repo": "file::/srv/repo" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "ssh option injection",
            json_body(json!({ "repo": "ssh://-oProxyCommand=touch%20/tmp/pwned/x" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "unknown scheme",
            json_body(json!({ "repo": "ftp://example.com/r" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "relative path",
            json_body(json!({ "repo": "some/relative/path" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "dot-dot path",
            json_body(json!({ "repo": "/srv/repos/../../etc" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "dot-dot URL",
            json_body(json!({ "repo": "https://example.com/a/../../b" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "control character",
            json_body(json!({ "repo": "/srv/repo\n--upload-pack=x" })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
        (
            "branch as an option",
            json_body(json!({ "repo": "/srv/r", "branch": "--upload-pack=x" })),
            StatusCode::BAD_REQUEST,
            "invalid_branch",
        ),
        (
            "dot-dot branch",
            json_body(json!({ "repo": "/srv/r", "branch": "a..b" })),
            StatusCode::BAD_REQUEST,
            "invalid_branch",
        ),
        (
            "empty agent",
            json_body(json!({ "repo": "/srv/r", "agent": " " })),
            StatusCode::BAD_REQUEST,
            "invalid_agent",
        ),
        (
            "data directory as repo",
            json_body(json!({ "repo": server.data.path().join("workspaces").to_string_lossy() })),
            StatusCode::BAD_REQUEST,
            "invalid_repo",
        ),
    ];
    for (label, request, expected_status, expected_code) in cases {
        let (status, body) = alice.send(request).await;
        assert_eq!(status, expected_status, "{label}: {body}");
        assert_eq!(body["error"]["code"], expected_code, "{label}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap_or_default().is_empty(), "{label}: no message");
    }
    assert_eq!(alice.get("/api/workspaces").await.1, json!({ "workspaces": [] }));
    assert!(
        server.workspace_dirs().is_empty(),
        "something was created on disk: {:?}",
        server.workspace_dirs()
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

#[tokio::test]
async fn bad_user_requests_and_query_strings_are_refused() {
    let server = TestServer::start().await;
    let admin = server.admin();
    for (body, code) in [
        (json!({ "name": "" }), "invalid_name"),
        (json!({ "name": "a b" }), "invalid_name"),
        (json!({ "name": "eve", "role": "root" }), "invalid_request"),
        (json!({ "name": "eve", "admin": true }), "invalid_request"),
    ] {
        let (status, answer) = admin.post("/api/users", body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let (status, answer) = admin.delete("/api/workspaces/w_00000000000000000000?force=perhaps").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, answer) = admin.delete("/api/workspaces/w_00000000000000000000?force=true&rm=-rf").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

/// A body that must be an object is refused when it is anything else, `[]` included
/// (serde would read an array as a struct's fields in order).
#[tokio::test]
async fn bodies_that_must_be_objects_refuse_arrays_and_scalars() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let source = berth_testkit::SourceRepo::new();
    let id = alice.ready_workspace(&source.url(), "demo").await;
    for (method, path) in [
        (Method::PATCH, format!("/api/workspaces/{id}")),
        (Method::POST, "/api/sessions/close-all".to_owned()),
        (Method::POST, "/api/workspaces".to_owned()),
        (Method::POST, "/api/tokens".to_owned()),
    ] {
        for body in ["[]", "[\"demo\"]", "1", "\"x\""] {
            let request =
                alice.request(method.clone(), &path).header("content-type", "application/json").body(body);
            let (status, answer) = alice.send(request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {body}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid_request", "{method} {path} {body}: {answer}");
        }
    }
}

/// hyper refuses an overlong request line itself, before any handler; berth's answer
/// still carries the error envelope, on the API's listener and the previews'.
#[tokio::test]
async fn an_overlong_address_is_refused_in_the_error_envelope() {
    let server = TestServer::start().await;
    let source = berth_testkit::SourceRepo::new();
    let workspace = server.admin().ready_workspace(&source.url(), "demo").await;
    let previews = server.admin().previews(&workspace).await;
    let long = "a".repeat(70_000);
    for base in [&server.url, &previews.base] {
        // No HTTP client sends such an address; the request is written by hand.
        let port = base.rsplit(':').next().unwrap();
        let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
        let request = format!("GET /api/{long} HTTP/1.1\r\nhost: x\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "uri_too_long", "{base}");
    }
    // The connection wrapper leaves every other answer alone.
    let (status, body) = server.anonymous().get("/api/nothing").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    server.stop().await;
}
