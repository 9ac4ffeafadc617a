//! Sessions over real HTTP with real child processes as sandboxes: open and resume,
//! replace and reject, the global limit, close one, close all with partial failure and
//! retry, leave, concurrency, admin, and reconciliation after a crash.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use berth_core::OnUserLimit;
use berth_core::WorkspaceId;
use berth_testkit::SourceRepo;
use common::{TestServer, agent_pid, process_gone, process_runs};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// A server on which alice has opened her workspace `demo`.
struct OpenDemo {
    _source: SourceRepo,
    server: TestServer,
    alice: common::Api,
    demo: String,
    session: String,
    pid: i32,
}

async fn open_demo() -> OpenDemo {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let demo = alice.ready_workspace(&source.url(), "demo").await;
    let session = id_of(&alice.open(&demo).await.1["session"]);
    let pid = agent_pid(&server.checkout(&demo)).await;
    OpenDemo { _source: source, server, alice, demo, session, pid }
}

#[tokio::test]
async fn opening_starts_a_sandbox_and_a_second_open_resumes_it() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let demo = alice.ready_workspace(&source.url(), "demo").await;

    let (status, opened) = alice.open(&demo).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    assert_eq!((opened["resumed"].as_bool(), &opened["replaced"]), (Some(false), &json!([])));
    let session = &opened["session"];
    assert_eq!(session["state"], "active");
    assert_eq!(session["workspace_id"], demo.as_str());
    assert_eq!(session["resume_command"], format!("berth attach {}", id_of(session)));
    let pid = agent_pid(&server.checkout(&demo)).await;
    assert!(process_runs(pid));

    let (status, workspace) = alice.get(&format!("/api/workspaces/{demo}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(workspace["state"], "active");
    assert_eq!(workspace["active_session"]["id"], session["id"]);
    assert!(workspace["last_opened_at"].is_string());

    let (status, again) = alice.open(&demo).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!((again["resumed"].as_bool(), &again["session"]["id"]), (Some(true), &session["id"]));
    let (_, live) = alice.get("/api/sessions?state=live").await;
    assert_eq!(live["sessions"].as_array().unwrap().len(), 1, "a second tab never starts a second session");
    assert!(process_runs(pid));
}

#[tokio::test]
async fn a_second_workspace_powers_the_first_off_with_its_files_intact() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let first = alice.ready_workspace(&source.url(), "first").await;
    let second = alice.ready_workspace(&source.url(), "second").await;

    let (_, opened_first) = alice.open(&first).await;
    let first_session = id_of(&opened_first["session"]);
    let first_pid = agent_pid(&server.checkout(&first)).await;
    std::fs::write(server.checkout(&first).join("work.txt"), "uncommitted work").unwrap();

    let (status, opened_second) = alice.open(&second).await;
    assert_eq!(status, StatusCode::CREATED, "{opened_second}");
    assert_eq!(opened_second["replaced"], json!([first_session]));
    assert!(process_gone(first_pid).await, "the replaced sandbox's process is gone");
    assert_eq!(
        std::fs::read_to_string(server.checkout(&first).join("work.txt")).unwrap(),
        "uncommitted work"
    );

    let replaced = alice.session(&first_session).await;
    assert_eq!(
        (replaced["state"].as_str(), replaced["end_reason"].as_str()),
        (Some("ended"), Some("replaced"))
    );
    assert_eq!(alice.get(&format!("/api/workspaces/{first}")).await.1["state"], "idle");
    let (_, git) = alice.get(&format!("/api/workspaces/{first}/git")).await;
    assert_eq!(git["uncommitted"], json!(["work.txt"]));
}

#[tokio::test]
async fn reject_refuses_with_the_blocking_sessions_and_close_all_retries_the_launch() {
    let source = SourceRepo::new();
    let server = TestServer::start_with(|config| config.limits.on_user_limit = OnUserLimit::Reject).await;
    let alice = server.member("alice").await;
    let first = alice.ready_workspace(&source.url(), "first").await;
    let second = alice.ready_workspace(&source.url(), "second").await;
    let (_, opened) = alice.open(&first).await;
    let blocker = id_of(&opened["session"]);

    let (status, refused) = alice.open(&second).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["error"]["code"], "session_limit");
    assert_eq!(refused["error"]["limit"], 1);
    let blocking: Vec<_> =
        refused["error"]["active_sessions"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(blocking, std::slice::from_ref(&blocker));
    assert_eq!(alice.session(&blocker).await["state"], "active", "reject leaves the blocker alone");

    let (status, report) = alice.post("/api/sessions/close-all", json!({ "retry_open": second })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["outcome"], "active_workspaces_closed");
    assert_eq!(report["closed"], json!([blocker]));
    assert_eq!(report["failed"], json!([]));
    assert_eq!(report["retried_open"]["resumed"], false);
    assert_eq!(report["retried_open"]["session"]["workspace_id"], second.as_str());
    assert_eq!(alice.get(&format!("/api/workspaces/{second}")).await.1["state"], "active");
}

#[tokio::test]
async fn two_users_each_keep_their_own_session() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let alices = alice.ready_workspace(&source.url(), "mine").await;
    let bobs = bob.ready_workspace(&source.url(), "mine").await;
    assert_eq!(alice.open(&alices).await.0, StatusCode::CREATED);
    assert_eq!(bob.open(&bobs).await.0, StatusCode::CREATED);
    for api in [&alice, &bob] {
        let (_, live) = api.get("/api/sessions?state=live").await;
        assert_eq!(live["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(live["sessions"][0]["state"], "active");
    }
}

#[tokio::test]
async fn the_global_limit_answers_controllers_busy_with_a_retry_hint() {
    let source = SourceRepo::new();
    let server = TestServer::start_with(|config| config.limits.running_sandboxes = 1).await;
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let alices = alice.ready_workspace(&source.url(), "a").await;
    let bobs = bob.ready_workspace(&source.url(), "b").await;
    assert_eq!(alice.open(&alices).await.0, StatusCode::CREATED);

    let response =
        bob.request(reqwest::Method::POST, &format!("/api/workspaces/{bobs}/open")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "controllers_busy");
    assert_eq!(body["error"]["retry_after_s"], retry_after);
    assert!(retry_after > 0);
    assert_eq!(bob.get("/api/sessions").await.1["sessions"], json!([]));
    assert_eq!(bob.get(&format!("/api/workspaces/{bobs}")).await.1["state"], "ready");
}

#[tokio::test]
async fn closing_one_session_leaves_the_others_and_is_idempotent() {
    let source = SourceRepo::new();
    let server = TestServer::start_with(|config| config.limits.sessions_per_user = 2).await;
    let alice = server.member("alice").await;
    let first = alice.ready_workspace(&source.url(), "first").await;
    let second = alice.ready_workspace(&source.url(), "second").await;
    let first_session = id_of(&alice.open(&first).await.1["session"]);
    let second_session = id_of(&alice.open(&second).await.1["session"]);
    let first_pid = agent_pid(&server.checkout(&first)).await;
    let second_pid = agent_pid(&server.checkout(&second)).await;

    let (status, closed) = alice.post(&format!("/api/sessions/{first_session}/close"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["outcome"], "workspace_closed");
    assert_eq!(
        (closed["session"]["state"].as_str(), closed["session"]["end_reason"].as_str()),
        (Some("ended"), Some("closed"))
    );
    assert!(process_gone(first_pid).await);
    assert!(process_runs(second_pid), "the other session is untouched");
    assert_eq!(alice.session(&second_session).await["state"], "active");
    assert_eq!(alice.get(&format!("/api/workspaces/{first}")).await.1["state"], "idle");

    let (status, again) = alice.post(&format!("/api/sessions/{first_session}/close"), Value::Null).await;
    assert_eq!((status, again["outcome"].as_str()), (StatusCode::OK, Some("workspace_closed")));
    assert_eq!(again["session"]["end_reason"], "closed");
}

#[tokio::test]
async fn a_failing_power_off_answers_close_failed_and_keeps_the_session() {
    let source = SourceRepo::new();
    let (server, faults) = TestServer::start_faulty(|_| {}).await;
    let alice = server.member("alice").await;
    let demo = alice.ready_workspace(&source.url(), "demo").await;
    let session = id_of(&alice.open(&demo).await.1["session"]);
    faults.fail_power_off(&WorkspaceId::parse(&demo).unwrap(), 1);

    let (status, failed) = alice.post(&format!("/api/sessions/{session}/close"), Value::Null).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(failed["error"]["code"], "close_failed");
    assert_eq!(failed["error"]["session_id"], session.as_str());
    assert!(failed["error"]["message"].as_str().unwrap().contains("injected"));
    assert_eq!(alice.session(&session).await["state"], "active");

    let (status, closed) = alice.post(&format!("/api/sessions/{session}/close"), Value::Null).await;
    assert_eq!((status, closed["outcome"].as_str()), (StatusCode::OK, Some("workspace_closed")));
}

#[tokio::test]
async fn close_all_reports_exactly_the_failed_session_and_a_second_run_finishes() {
    let source = SourceRepo::new();
    let (server, faults) = TestServer::start_faulty(|config| config.limits.sessions_per_user = 3).await;
    let alice = server.member("alice").await;
    let mut sessions = Vec::new();
    for name in ["a", "b", "c"] {
        let workspace = alice.ready_workspace(&source.url(), name).await;
        sessions.push((workspace.clone(), id_of(&alice.open(&workspace).await.1["session"])));
    }
    let (stuck_workspace, stuck_session) = sessions[1].clone();
    faults.fail_power_off(&WorkspaceId::parse(&stuck_workspace).unwrap(), 1);

    let (status, report) = alice.post("/api/sessions/close-all", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["outcome"], "cleanup_partially_complete");
    let mut closed: Vec<String> = serde_json::from_value(report["closed"].clone()).unwrap();
    closed.sort();
    let mut expected = vec![sessions[0].1.clone(), sessions[2].1.clone()];
    expected.sort();
    assert_eq!(closed, expected);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
    assert_eq!(report["failed"][0]["session_id"], stuck_session.as_str());
    assert_eq!(report["failed"][0]["code"], "close_failed");
    assert!(report.get("retried_open").is_none());
    assert_eq!(alice.session(&stuck_session).await["state"], "active");

    let (_, second) = alice.post("/api/sessions/close-all", json!({})).await;
    assert_eq!(second["outcome"], "active_workspaces_closed");
    assert_eq!(second["closed"], json!([stuck_session]));
    let (_, third) = alice.post("/api/sessions/close-all", Value::Null).await;
    assert_eq!(third["outcome"], "nothing_to_close");
    let ended = alice.session(&stuck_session).await;
    assert_eq!(ended["end_reason"], "closed_all");
}

#[tokio::test]
async fn leaving_with_no_run_ends_the_session_at_once() {
    let OpenDemo { _source, server: _server, alice, demo, session, pid } = open_demo().await;

    let (status, _) = alice.post(&format!("/api/sessions/{session}/leave"), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = alice.session(&session).await;
    assert_eq!((left["state"].as_str(), left["end_reason"].as_str()), (Some("ended"), Some("left")));
    assert!(process_gone(pid).await);
    assert_eq!(alice.get(&format!("/api/workspaces/{demo}")).await.1["state"], "idle");
}

#[tokio::test]
async fn two_hundred_concurrent_opens_by_one_user_end_with_one_live_session() {
    let source = SourceRepo::new();
    for policy in [OnUserLimit::Replace, OnUserLimit::Reject] {
        let server = TestServer::start_with(|config| config.limits.on_user_limit = policy).await;
        let alice = server.member("alice").await;
        let mut workspaces = Vec::new();
        for n in 0..8 {
            workspaces.push(alice.ready_workspace(&source.url(), &format!("w{n}")).await);
        }
        let opens = (0..200).map(|n| {
            let alice = alice.clone();
            let workspace = workspaces[n % workspaces.len()].clone();
            async move { alice.open(&workspace).await }
        });
        let answers = futures::future::join_all(opens).await;
        for (status, body) in &answers {
            let expected = [StatusCode::CREATED, StatusCode::OK, StatusCode::CONFLICT];
            assert!(expected.contains(status), "{policy:?}: unexpected {status}: {body}");
        }
        let (_, live) = alice.get("/api/sessions?state=live").await;
        assert_eq!(live["sessions"].as_array().unwrap().len(), 1, "{policy:?}: {live}");
        let active: Vec<_> = alice.get("/api/workspaces").await.1["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "active")
            .map(id_of)
            .collect();
        assert_eq!(active.len(), 1, "{policy:?}: exactly one workspace is active");
        assert_eq!(server.engine.sessions.running_sandbox_count(), 1, "{policy:?}");
    }
}

#[tokio::test]
async fn users_never_reach_each_others_sessions_and_admins_reach_all() {
    let source = SourceRepo::new();
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let bob = server.member("bob").await;
    let admin = server.admin();
    let demo = alice.ready_workspace(&source.url(), "demo").await;
    let session = id_of(&alice.open(&demo).await.1["session"]);

    assert_eq!(bob.open(&demo).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bob.get(&format!("/api/sessions/{session}")).await.0, StatusCode::NOT_FOUND);
    for path in [format!("/api/sessions/{session}/events"), format!("/api/workspaces/{demo}/events")] {
        assert_eq!(bob.get(&path).await.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(admin.get(&path).await.0, StatusCode::NOT_FOUND, "the conversation is private: {path}");
    }
    assert_eq!(alice.get(&format!("/api/sessions/{session}/events")).await.0, StatusCode::OK);
    for path in [format!("/api/sessions/{session}/close"), format!("/api/sessions/{session}/leave")] {
        let (status, body) = bob.post(&path, Value::Null).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }
    assert_eq!(bob.post("/api/sessions/close-all", Value::Null).await.1["outcome"], "nothing_to_close");
    assert_eq!(bob.get("/api/admin/sessions").await.0, StatusCode::FORBIDDEN);
    assert_eq!(bob.post("/api/admin/sessions/close-all", Value::Null).await.0, StatusCode::FORBIDDEN);
    assert_eq!(alice.session(&session).await["state"], "active");

    let (_, everything) = admin.get("/api/admin/sessions").await;
    assert_eq!(
        everything["sessions"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(),
        std::slice::from_ref(&session)
    );
    assert_eq!(everything["sessions"][0]["user_name"], "alice", "administrators read whose it is");
    assert_eq!(everything["sessions"][0]["workspace_name"], "demo");
    let (_, report) = admin.post("/api/admin/sessions/close-all", Value::Null).await;
    assert_eq!(
        (report["outcome"].as_str(), &report["closed"]),
        (Some("active_workspaces_closed"), &json!([session]))
    );
    assert_eq!(alice.session(&session).await["end_reason"], "admin");
}

#[tokio::test]
async fn only_ready_or_idle_workspaces_open() {
    let server = TestServer::start().await;
    let alice = server.member("alice").await;
    let failed = alice.create_settled(json!({ "repo": "http://127.0.0.1:9/none.git" })).await;
    let (status, refused) = alice.open(&id_of(&failed)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("workspace_not_ready"))
    );
    assert_eq!(refused["error"]["state"], "error");
    assert_eq!(alice.open("w_00000000000000000000").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_an_open_workspace_ends_its_session() {
    let OpenDemo { _source, server, alice, demo, session, pid } = open_demo().await;
    let (status, _) = alice.delete(&format!("/api/workspaces/{demo}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(process_gone(pid).await);
    assert_eq!(alice.get(&format!("/api/sessions/{session}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.engine.sessions.running_sandbox_count(), 0);
}

#[tokio::test]
async fn an_agent_that_dies_ends_its_session_as_failed() {
    let OpenDemo { _source, server, alice, demo, session, pid } = open_demo().await;
    let mut changes = server.engine.sessions.subscribe_session_changes();

    // A crash of the agent, from outside berth.
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let changed = changes.recv().await.unwrap();
            if changed.id.as_str() == session && !changed.state.is_live() {
                return changed;
            }
        }
    })
    .await
    .expect("the session ends when its agent dies");
    assert_eq!(ended.end_reason, Some(berth_core::EndReason::Failed));
    assert_eq!(alice.get(&format!("/api/workspaces/{demo}")).await.1["state"], "idle");
    assert_eq!(server.engine.sessions.running_sandbox_count(), 0);
}

#[tokio::test]
async fn metrics_count_opens_and_closes_and_show_sessions_by_state() {
    let OpenDemo { _source, server, alice, session, .. } = open_demo().await;
    let response = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("berth_sessions{state=\"active\"}"), "{text}");
    assert!(text.contains("berth_session_opens_total{outcome=\"new\"}"), "{text}");
    assert!(text.contains("berth_session_open_seconds_bucket"), "{text}");
    alice.post(&format!("/api/sessions/{session}/close"), Value::Null).await;
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(text.contains("berth_session_closes_total{outcome=\"closed\",reason=\"closed\"}"), "{text}");
}

/// Waits (bounded) for the session of `id` to end, and returns it.
async fn ended_session(api: &common::Api, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, session) = api.get(&format!("/api/sessions/{id}")).await;
        if session["state"] == "ended" {
            return session;
        }
        assert!(tokio::time::Instant::now() < deadline, "the session never ended: {session}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_store_failure_after_power_on_powers_off_frees_the_slot_and_fails_the_session() {
    let (server, faults) = common::TestServer::start_faulty(|_| {}).await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let demo = alice.ready_workspace(&source.url(), "demo").await;
    // The store refuses the session's first event — after the sandbox is up.
    let database = sqlx::SqlitePool::connect(&server.engine.config().database_url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON events WHEN NEW.data LIKE '%session_started%'
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
    )
    .execute(&database)
    .await
    .unwrap();

    let (status, refused) = alice.open(&demo).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{refused}");
    assert_eq!(server.engine.sessions.running_sandbox_count(), 0, "the slot is free");
    assert!(berth_sandbox::SandboxDriver::running(&*faults).await.unwrap().is_empty(), "the sandbox is off");
    let (_, history) = alice.get(&format!("/api/workspaces/{demo}/events")).await;
    let failure = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["data"]["reason"] == "start_failed")
        .cloned()
        .unwrap_or_else(|| panic!("the reason is in the history: {history}"));
    let session = ended_session(&alice, failure["session_id"].as_str().unwrap()).await;
    assert_eq!(session["end_reason"], "failed");
    assert_eq!(alice.get(&format!("/api/workspaces/{demo}")).await.1["state"], "idle");

    sqlx::query("DROP TRIGGER injected_fault").execute(&database).await.unwrap();
    let (status, opened) = alice.open(&demo).await;
    assert_eq!(status, StatusCode::CREATED, "the next open works: {opened}");
}

#[tokio::test]
async fn an_agent_that_closes_its_connection_but_runs_on_ends_its_session() {
    let server = TestServer::start_with(|config| {
        config.agent_command =
            Some("mkdir -p .berth; echo $$ > .berth/agent.pid; exec sleep 600 >&- <&-".into());
    })
    .await;
    let source = SourceRepo::new();
    let alice = server.member("alice").await;
    let demo = alice.ready_workspace(&source.url(), "demo").await;
    let (status, opened) = alice.open(&demo).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let pid = agent_pid(&server.checkout(&demo)).await;

    let session = ended_session(&alice, opened["session"]["id"].as_str().unwrap()).await;
    assert_eq!(session["end_reason"], "failed");
    assert!(process_gone(pid).await, "the sandbox was powered off");
    server.until_no_sandbox_runs().await;
    let (_, history) = alice.get(&format!("/api/workspaces/{demo}/events")).await;
    assert!(
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["data"]["reason"] == "agent_disconnected"),
        "{history}"
    );
}
