//! The store against both databases berth speaks — a real SQLite file and a real
//! PostgreSQL server — with one suite: migrations, round trips, guarded transitions,
//! tokens, and the numbering of events under concurrent writers.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::session::{EndReason, Session, SessionState};
use berth_core::{Role, SessionId, TokenId, TokenInfo, User, UserId, Workspace, WorkspaceId, WorkspaceState};
use berth_store::{InitialisationOutcome, SessionInsert, Store, StoreError};
use chrono::{DateTime, Utc};

/// A fresh, empty database: its URL, and what keeps it (the SQLite file's directory).
struct Database {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

/// One fresh database of each kind: an SQLite file, and a PostgreSQL database made for
/// this test on the server `BERTH_TEST_POSTGRES_URL` names (`scripts/test.sh` starts one).
/// Without that server the PostgreSQL half fails in CI and is skipped, saying so, locally.
async fn databases() -> Vec<Database> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Database { url: format!("sqlite://{}/berth.db", dir.path().display()), _dir: Some(dir) };
    match berth_testkit::PostgresDatabase::create() {
        Some(postgres) => vec![sqlite, Database { url: postgres.url(), _dir: None }],
        None => vec![sqlite],
    }
}

async fn open(database: &Database) -> Store {
    Store::open(&database.url).await.unwrap_or_else(|error| panic!("{} opens: {error:?}", database.url))
}

/// Now, to the microsecond: what both databases keep of a time.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn user(name: &str) -> User {
    User { id: UserId::generate(), name: name.into(), role: Role::Member, created_at: now() }
}

fn token(user: &User, expires_at: Option<chrono::DateTime<Utc>>) -> TokenInfo {
    TokenInfo {
        id: TokenId::generate(),
        user_id: user.id.clone(),
        name: "test".into(),
        prefix: "berth_abc".into(),
        created_at: now(),
        last_used_at: None,
        expires_at,
    }
}

async fn insert_user(store: &Store, user: &User, hash: &str) -> Result<(), StoreError> {
    store.insert_user(user, &token(user, None), hash).await
}

fn workspace(owner: &User, name: &str) -> Workspace {
    Workspace {
        id: WorkspaceId::generate(),
        name: name.into(),
        owner: owner.id.clone(),
        repo: "/srv/repo".into(),
        branch: None,
        agent: None,
        state: WorkspaceState::Initialising,
        error: None,
        created_at: now(),
        last_opened_at: None,
    }
}

/// Alice, with her workspace `demo` initialising.
async fn alice_and_demo(store: &Store) -> (User, Workspace) {
    let alice = user("alice");
    insert_user(store, &alice, "a").await.unwrap();
    let demo = workspace(&alice, "demo");
    store.insert_workspace(&demo).await.unwrap();
    (alice, demo)
}

#[tokio::test]
async fn records_survive_reopening_the_database() {
    for database in databases().await {
        let alice = user("alice");
        let demo = workspace(&alice, "demo");
        {
            let store = open(&database).await;
            insert_user(&store, &alice, "hash-a").await.unwrap();
            store.insert_workspace(&demo).await.unwrap();
            store.append_init_log(&demo.id, "Cloning into...\n").await.unwrap();
            store.close().await;
        }
        let store = open(&database).await;
        let authenticated = store.authenticate("hash-a", Utc::now()).await.unwrap();
        assert_eq!(authenticated.map(|(user, _)| user), Some(alice.clone()), "{}", database.url);
        assert_eq!(store.workspace(&demo.id).await.unwrap().map(|w| w.name), Some("demo".into()));
        assert_eq!(store.init_log(&demo.id).await.unwrap().as_deref(), Some("Cloning into...\n"));
    }
}

#[tokio::test]
async fn names_are_unique_per_owner_only() {
    for database in databases().await {
        let store = open(&database).await;
        let (alice, bob) = (user("alice"), user("bob"));
        insert_user(&store, &alice, "a").await.unwrap();
        insert_user(&store, &bob, "b").await.unwrap();
        store.insert_workspace(&workspace(&alice, "demo")).await.unwrap();
        store.insert_workspace(&workspace(&bob, "demo")).await.unwrap();
        let again = store.insert_workspace(&workspace(&alice, "demo")).await;
        assert!(matches!(again, Err(StoreError::NameTaken { name }) if name == "demo"));
        let duplicate_user = insert_user(&store, &user("alice"), "c").await;
        assert!(matches!(duplicate_user, Err(StoreError::NameTaken { .. })));
    }
}

#[tokio::test]
async fn initialisation_finishes_once_and_only_from_initialising() {
    for database in databases().await {
        let store = open(&database).await;
        let (_, demo) = alice_and_demo(&store).await;

        let ready = InitialisationOutcome::Ready { branch: Some("main".into()) };
        assert!(store.finish_initialisation(&demo.id, &ready).await.unwrap());
        let failed = InitialisationOutcome::Failed { error: "late".into() };
        assert!(!store.finish_initialisation(&demo.id, &failed).await.unwrap());
        let stored = store.workspace(&demo.id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.branch.as_deref()), (WorkspaceState::Ready, Some("main")));

        assert!(
            store.set_workspace_state(&demo.id, WorkspaceState::Ready, WorkspaceState::Active).await.unwrap()
        );
        assert!(
            !store
                .set_workspace_state(&demo.id, WorkspaceState::Ready, WorkspaceState::Active)
                .await
                .unwrap()
        );
        assert!(!store.restart_initialisation(&demo.id).await.unwrap());
    }
}

#[tokio::test]
async fn a_token_stops_when_revoked_expired_or_its_user_disabled() {
    for database in databases().await {
        let store = open(&database).await;
        let (alice, bob) = (user("alice"), user("bob"));
        insert_user(&store, &alice, "first").await.unwrap();
        insert_user(&store, &bob, "bobs").await.unwrap();
        let soon = Utc::now() + chrono::Duration::seconds(60);
        let expiring = token(&alice, Some(soon));
        store.insert_token(&expiring, "expiring").await.unwrap();
        assert!(store.authenticate("expiring", Utc::now()).await.unwrap().is_some());
        assert!(store.authenticate("expiring", soon).await.unwrap().is_none(), "expired at its time");

        let listed = store.tokens_of(&alice.id).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|t| t.id == expiring.id && t.last_used_at.is_some()), "{listed:?}");
        // Bob cannot revoke Alice's token, Alice can.
        assert_eq!(store.delete_token(&bob.id, &expiring.id).await.unwrap(), None);
        assert_eq!(store.delete_token(&alice.id, &expiring.id).await.unwrap().as_deref(), Some("expiring"));
        assert!(store.authenticate("expiring", Utc::now()).await.unwrap().is_none());

        assert!(store.update_account(&alice.id, Role::Member, true).await.unwrap());
        assert!(store.authenticate("first", Utc::now()).await.unwrap().is_none(), "disabled");
        assert!(store.authenticate("bobs", Utc::now()).await.unwrap().is_some());
        let accounts = store.accounts().await.unwrap();
        assert!(accounts.iter().any(|a| a.user.id == alice.id && a.disabled));
        assert!(store.delete_token_by_hash("bobs").await.unwrap());
        assert!(store.authenticate("bobs", Utc::now()).await.unwrap().is_none(), "logged out");
    }
}

#[tokio::test]
async fn events_are_numbered_once_per_workspace_under_concurrent_writers() {
    for database in databases().await {
        let store = open(&database).await;
        store.register_replica("a", "http://127.0.0.1:1", i64::MAX).await.unwrap();
        let (alice, workspaces) = ready_workspaces(&store, "alice", 2).await;
        let (one, two) = (&workspaces[0], &workspaces[1]);
        let mut sessions = Vec::new();
        for workspace in [one, two] {
            let session = starting_session(&alice, workspace);
            store.insert_session(&session, WorkspaceState::Ready, 8).await.unwrap();
            sessions.push(session.id);
        }
        let writes = (0..40).map(|n| {
            let store = store.clone();
            let (target, session) = if n % 2 == 0 {
                (one.id.clone(), sessions[0].clone())
            } else {
                (two.id.clone(), sessions[1].clone())
            };
            tokio::spawn(async move {
                store
                    .append_event(&target, &session, now(), "system", &format!("{{\"n\": {n}}}"))
                    .await
                    .unwrap()
                    .seq
            })
        });
        let mut seqs: Vec<i64> = futures_all(writes).await;
        seqs.sort_unstable();
        let expected: Vec<i64> = (1..=20).flat_map(|seq| [seq, seq]).collect();
        assert_eq!(seqs, expected, "each workspace numbers 1..=20, no number twice ({})", database.url);
        let stored = store.workspace_events(&one.id, 0, 100).await.unwrap();
        assert_eq!(stored.iter().map(|event| event.seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
    }
}

async fn futures_all(handles: impl Iterator<Item = tokio::task::JoinHandle<i64>>) -> Vec<i64> {
    let mut values = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        values.push(handle.await.unwrap());
    }
    values
}

#[tokio::test]
async fn a_session_moves_only_from_the_state_it_is_in_and_ends_once() {
    for database in databases().await {
        let store = open(&database).await;
        let (alice, demo, session) = a_ready_workspace_and_a_session(&store).await;
        assert_eq!(
            store.insert_session(&session, WorkspaceState::Ready, 8).await.unwrap(),
            SessionInsert::Inserted
        );
        assert_eq!(
            store.insert_session(&session, WorkspaceState::Ready, 8).await.unwrap(),
            SessionInsert::WorkspaceNotReady,
            "the workspace moved on"
        );
        let (starting, active) = (SessionState::Starting, SessionState::Active);
        assert!(store.update_live_session(&session.id, starting, active, None).await.unwrap());
        assert!(
            !store.update_live_session(&session.id, starting, active, None).await.unwrap(),
            "not from starting any more"
        );
        assert!(store.set_agent_running(&session.id, true).await.unwrap());
        let live = store.live_sessions_of(&alice.id).await.unwrap();
        assert_eq!((live.len(), live[0].state, live[0].agent_running), (1, SessionState::Active, true));
        assert_eq!(live[0].started_at, session.started_at, "{}", database.url);

        let end = || {
            store.end_session_with_event(&demo.id, &session.id, EndReason::Closed, now(), ("system", "{}"))
        };
        assert!(end().await.unwrap().is_some());
        assert!(end().await.unwrap().is_none(), "ended once");
        let ended = store.session(&session.id).await.unwrap().unwrap();
        assert_eq!(
            (ended.state, ended.end_reason, ended.agent_running),
            (SessionState::Ended, Some(EndReason::Closed), false)
        );
        assert_eq!(store.workspace(&demo.id).await.unwrap().unwrap().state, WorkspaceState::Idle);
        assert!(store.live_sessions().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn made_live_ready_and_the_end_are_each_one_commit_with_their_event_or_nothing() {
    for database in databases().await {
        let store = open(&database).await;
        let (_, demo, session) = a_ready_workspace_and_a_session(&store).await;
        store.insert_session(&session, WorkspaceState::Ready, 8).await.unwrap();
        let (starting, active) = (SessionState::Starting, SessionState::Active);
        let started = r#"{"code":"session_started"}"#;
        let made_live = |from| {
            store.update_live_session_with_event(
                &demo.id,
                &session.id,
                (from, active),
                now(),
                "system",
                started,
            )
        };
        let event = made_live(starting).await.unwrap().expect("made live from starting");
        assert_eq!((event.seq, event.data.as_str()), (1, started), "{}", database.url);
        assert_eq!(store.session(&session.id).await.unwrap().unwrap().state, active);
        // Not from starting any more: neither the state nor the history changes.
        assert!(made_live(starting).await.unwrap().is_none(), "{}", database.url);
        let history = store.session_events(&session.id, 0, 10).await.unwrap();
        assert_eq!(history.len(), 1, "{}: {history:?}", database.url);
        // Ready: the agent's session id (what the next open resumes) with its event.
        let ready = r#"{"code":"agent_ready"}"#;
        let event =
            store.append_event_with_agent_session(&demo.id, &session.id, "acp-1", now(), "system", ready);
        assert_eq!(event.await.unwrap().seq, 2);
        assert_eq!(store.agent_session_id(&demo.id).await.unwrap().as_deref(), Some("acp-1"));
        // The end and `session_closed`: one commit, once.
        let closed = r#"{"code":"session_closed"}"#;
        let end = || {
            store.end_session_with_event(&demo.id, &session.id, EndReason::Closed, now(), ("system", closed))
        };
        assert_eq!(end().await.unwrap().map(|event| event.seq), Some(3), "{}", database.url);
        assert_eq!(store.workspace(&demo.id).await.unwrap().unwrap().state, WorkspaceState::Idle);
        assert!(end().await.unwrap().is_none(), "ended once: {}", database.url);
        assert_eq!(store.session_events(&session.id, 0, 10).await.unwrap().len(), 3);
    }
}

/// Alice's workspace, ready, and a session of it not inserted yet, on replica "a".
async fn a_ready_workspace_and_a_session(store: &Store) -> (User, Workspace, Session) {
    let (alice, demo) = alice_and_demo(store).await;
    store.finish_initialisation(&demo.id, &InitialisationOutcome::Ready { branch: None }).await.unwrap();
    let session = starting_session(&alice, &demo);
    store.register_replica("a", "http://127.0.0.1:1", i64::MAX).await.unwrap();
    (alice, demo, session)
}

fn starting_session(user: &User, workspace: &Workspace) -> Session {
    Session {
        id: SessionId::generate(),
        workspace_id: workspace.id.clone(),
        user_id: user.id.clone(),
        state: SessionState::Starting,
        started_at: now(),
        ended_at: None,
        end_reason: None,
        grace_expires_at: None,
        agent_running: false,
    }
}

/// `count` ready workspaces of a new user called `name`.
async fn ready_workspaces(store: &Store, name: &str, count: usize) -> (User, Vec<Workspace>) {
    let owner = user(name);
    insert_user(store, &owner, name).await.unwrap();
    let mut workspaces = Vec::new();
    for n in 0..count {
        let mut ready = workspace(&owner, &format!("w{n}"));
        store.insert_workspace(&ready).await.unwrap();
        store.finish_initialisation(&ready.id, &InitialisationOutcome::Ready { branch: None }).await.unwrap();
        ready.state = WorkspaceState::Ready;
        workspaces.push(ready);
    }
    (owner, workspaces)
}

#[tokio::test]
async fn the_installations_sandbox_slots_are_taken_in_the_database_never_beyond_the_limit() {
    for database in databases().await {
        // Two replicas (two stores on one database), 24 opens at the same instant, 5 slots.
        let (one, two) = (open(&database).await, open(&database).await);
        one.register_replica("one", "http://127.0.0.1:1", i64::MAX).await.unwrap();
        two.register_replica("two", "http://127.0.0.1:2", i64::MAX).await.unwrap();
        let (bob, workspaces) = ready_workspaces(&one, "bob", 24).await;
        let attempts = workspaces.iter().enumerate().map(|(n, workspace)| {
            let store = if n % 2 == 0 { one.clone() } else { two.clone() };
            let session = starting_session(&bob, workspace);
            tokio::spawn(
                async move { store.insert_session(&session, WorkspaceState::Ready, 5).await.unwrap() },
            )
        });
        let mut outcomes = Vec::new();
        for attempt in attempts {
            outcomes.push(attempt.await.unwrap());
        }
        let inserted = outcomes.iter().filter(|outcome| **outcome == SessionInsert::Inserted).count();
        assert_eq!(inserted, 5, "{}: {outcomes:?}", database.url);
        assert!(outcomes.iter().all(|o| matches!(o, SessionInsert::Inserted | SessionInsert::NoSandboxSlot)));
        assert_eq!(one.live_session_count().await.unwrap(), 5);
    }
}

#[tokio::test]
async fn a_replica_whose_sessions_were_taken_over_can_change_them_no_more() {
    for database in databases().await {
        let (lost, survivor) = (open(&database).await, open(&database).await);
        // The lost replica's lease ran out at 1,000 ms; the survivor's holds.
        lost.register_replica("lost", "http://127.0.0.1:1", 1_000).await.unwrap();
        survivor.register_replica("survivor", "http://127.0.0.1:2", i64::MAX).await.unwrap();
        let (carol, workspaces) = ready_workspaces(&lost, "carol", 1).await;
        let session = starting_session(&carol, &workspaces[0]);
        assert_eq!(
            lost.insert_session(&session, WorkspaceState::Ready, 8).await.unwrap(),
            SessionInsert::Inserted
        );
        let before =
            lost.append_event(&session.workspace_id, &session.id, now(), "system", "{}").await.unwrap();
        assert_eq!(before.seq, 1);
        let owner = survivor.session_owner(&session.id).await.unwrap().unwrap();
        assert_eq!(owner.id, "lost");
        // The lost replica was cloning a workspace too.
        let cloning = workspace(&carol, "cloning");
        lost.insert_workspace(&cloning).await.unwrap();
        lost.claim_clone(&cloning.id).await.unwrap();
        assert!(survivor.interrupted_clones().await.unwrap().is_empty(), "not the survivor's to resume");
        let not_yet = survivor.take_over(&owner, 500).await.unwrap();
        assert!(
            not_yet.sessions.is_empty() && not_yet.clones.is_empty(),
            "a lease that holds is not taken over"
        );
        let taken = survivor.take_over(&owner, 2_000).await.unwrap();
        assert_eq!(
            taken.sessions.iter().map(|s| &s.id).collect::<Vec<_>>(),
            vec![&session.id],
            "{}",
            database.url
        );
        assert_eq!(taken.clones.iter().map(|w| &w.id).collect::<Vec<_>>(), vec![&cloning.id]);
        assert!(survivor.take_over(&owner, 2_000).await.unwrap().sessions.is_empty(), "taken over once");
        let ready = InitialisationOutcome::Ready { branch: None };
        assert!(
            !lost.finish_initialisation(&cloning.id, &ready).await.unwrap(),
            "the lost clone finishes nothing"
        );

        // Every write of the lost replica to the session now changes nothing.
        let (starting, active) = (SessionState::Starting, SessionState::Active);
        assert!(!lost.update_live_session(&session.id, starting, active, None).await.unwrap());
        assert!(!lost.set_agent_running(&session.id, true).await.unwrap());
        let made_live = lost.update_live_session_with_event(
            &session.workspace_id,
            &session.id,
            (starting, active),
            now(),
            "system",
            "{}",
        );
        assert!(made_live.await.unwrap().is_none());
        let ready = lost.append_event_with_agent_session(
            &session.workspace_id,
            &session.id,
            "acp-2",
            now(),
            "system",
            "{}",
        );
        assert!(matches!(ready.await, Err(StoreError::Fenced { .. })));
        let kept = survivor.agent_session_id(&session.workspace_id).await.unwrap();
        assert_ne!(kept.as_deref(), Some("acp-2"), "a fenced write keeps no agent session id either");
        let ended = lost.end_session_with_event(
            &session.workspace_id,
            &session.id,
            EndReason::Closed,
            now(),
            ("system", "{}"),
        );
        assert!(matches!(ended.await, Err(StoreError::Fenced { .. })));
        let fenced = lost.append_event(&session.workspace_id, &session.id, now(), "system", "{}").await;
        assert!(matches!(fenced, Err(StoreError::Fenced { .. })), "{fenced:?}");
        assert!(!lost.renew_lease(i64::MAX).await.unwrap(), "its lease is gone");

        assert_eq!(
            survivor.session_events(&session.id, 0, 10).await.unwrap().len(),
            1,
            "nothing written by the lost"
        );

        // The survivor owns it and ends it, saying so.
        let closed = r#"{"code":"session_closed"}"#;
        let ended = survivor.end_session_with_event(
            &session.workspace_id,
            &session.id,
            EndReason::ReplicaLost,
            now(),
            ("system", closed),
        );
        assert_eq!(ended.await.unwrap().map(|event| event.data), Some(closed.to_owned()));
        let ended = survivor.session(&session.id).await.unwrap().unwrap();
        assert_eq!(ended.end_reason, Some(EndReason::ReplicaLost));

        // Registering again gives the lost replica a new epoch, never its old sessions.
        let epoch = lost.register_replica("lost", "http://127.0.0.1:1", i64::MAX).await.unwrap();
        assert!(epoch > owner.epoch);
        assert!(lost.claim_own_sessions().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn opens_of_one_user_wait_for_each_other_on_every_replica() {
    let Some(postgres) = berth_testkit::PostgresDatabase::create() else { return };
    let (one, two) =
        (Store::open(&postgres.url()).await.unwrap(), Store::open(&postgres.url()).await.unwrap());
    let dave = user("dave");
    insert_user(&one, &dave, "d").await.unwrap();
    let held = one.lock_user_opens(&dave.id).await.unwrap();
    let waiting = tokio::spawn({
        let (two, dave) = (two.clone(), dave.id.clone());
        async move { two.lock_user_opens(&dave).await.map(|_| ()) }
    });
    // Another user's opens do not wait.
    let erin = user("erin");
    insert_user(&one, &erin, "e").await.unwrap();
    drop(two.lock_user_opens(&erin.id).await.unwrap());
    assert!(!waiting.is_finished(), "dave's second open waits for the first");
    drop(held);
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_database_that_goes_away_is_unavailable_not_a_failed_query() {
    let Some(postgres) = berth_testkit::PostgresDatabase::create() else { return };
    let proxy = berth_testkit::CuttableProxy::start(&postgres.address).await;
    let store = Store::open(&postgres.url_via(&proxy.address)).await.unwrap();
    store.ping().await.unwrap();
    proxy.cut().await;
    let error = store.ping().await.expect_err("the database is gone");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert_eq!(error.to_string(), "the database does not answer");
}

/// The quoted words of a CHECK constraint's text, in any spelling either database gives it.
fn quoted_words(text: &str) -> std::collections::BTreeSet<String> {
    text.split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Both migration histories end in the same schema: the same tables with the same
/// columns, and every CHECK list of states, roles and sign-in kinds equal to core's.
#[tokio::test]
async fn both_migration_histories_make_the_same_schema_and_the_states_of_core() {
    use std::collections::{BTreeMap, BTreeSet};
    let Some(postgres) = berth_testkit::PostgresDatabase::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/berth.db", dir.path().display());
    drop(Store::open(&sqlite_url).await.unwrap());
    drop(Store::open(&postgres.url()).await.unwrap());

    let sqlite = sqlx::SqlitePool::connect(&sqlite_url).await.unwrap();
    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let mut sqlite_schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&sqlite)
    .await
    .unwrap();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&table)
            .fetch_all(&sqlite)
            .await
            .unwrap();
        sqlite_schema.insert(table, columns.into_iter().collect());
    }
    let mut pg_schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    for (table, column) in rows {
        pg_schema.entry(table).or_default().insert(column);
    }
    assert_eq!(sqlite_schema, pg_schema, "the SQLite and PostgreSQL schemas differ");

    let words = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<BTreeSet<_>>();
    let expected: [(&str, &str, BTreeSet<String>); 4] = [
        ("workspaces", "state", WorkspaceState::ALL.iter().map(|state| state.as_str().to_owned()).collect()),
        ("sessions", "state", SessionState::ALL.iter().map(|state| state.as_str().to_owned()).collect()),
        ("users", "role", words(&[Role::Member.as_str(), Role::Admin.as_str()])),
        ("sign_ins", "via", words(&["token", "oidc"])),
    ];
    for (table, column, core) in expected {
        let sqlite_sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = ?")
            .bind(table)
            .fetch_one(&sqlite)
            .await
            .unwrap();
        let check = sqlite_sql
            .split("CHECK")
            .find(|part| part.trim_start().starts_with(&format!("({column} IN")))
            .unwrap_or_else(|| panic!("{table}.{column} has no CHECK on SQLite: {sqlite_sql}"));
        let sqlite_words = quoted_words(check.split(')').next().unwrap());
        assert_eq!(sqlite_words, core, "SQLite's {table}.{column}");
        let definitions: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'",
        )
        .bind(table)
        .fetch_all(&pg)
        .await
        .unwrap();
        let definition = definitions
            .iter()
            .find(|text| text.contains(&format!("({column} =")))
            .unwrap_or_else(|| panic!("{table}.{column} has no CHECK on PostgreSQL: {definitions:?}"));
        assert_eq!(quoted_words(definition), core, "PostgreSQL's {table}.{column}");
    }
}

#[tokio::test]
async fn a_read_of_some_kinds_returns_only_those_in_order_and_pages() {
    for database in databases().await {
        let store = open(&database).await;
        store.register_replica("a", "http://127.0.0.1:1", i64::MAX).await.unwrap();
        let (alice, workspaces) = ready_workspaces(&store, "alice", 1).await;
        let session = starting_session(&alice, &workspaces[0]);
        store.insert_session(&session, WorkspaceState::Ready, 8).await.unwrap();
        for kind in ["agent_message_chunk", "tool_call", "user_message", "answer", "tool_call", "turn_end"] {
            store.append_event(&workspaces[0].id, &session.id, now(), kind, "{}").await.unwrap();
        }
        let kinds = ["tool_call", "answer"];
        let all = store.session_events_of_kinds(&session.id, &kinds, 0, 100).await.unwrap();
        let seen: Vec<(i64, &str)> = all.iter().map(|event| (event.seq, event.kind.as_str())).collect();
        assert_eq!(seen, vec![(2, "tool_call"), (4, "answer"), (5, "tool_call")], "{}", database.url);
        let page = store.session_events_of_kinds(&session.id, &kinds, 2, 1).await.unwrap();
        assert_eq!(page.iter().map(|event| event.seq).collect::<Vec<_>>(), vec![4]);
    }
}
