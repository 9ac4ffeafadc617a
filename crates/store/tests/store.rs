//! The store against a real SQLite file: migrations, round trips, guarded transitions.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_core::{Role, TokenId, TokenInfo, User, UserId, Workspace, WorkspaceId, WorkspaceState};
use berth_store::{InitialisationOutcome, Store, StoreError};
use chrono::Utc;

async fn open_store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}/berth.db", dir.path().display());
    Store::open(&url).await.expect("store opens")
}

fn user(name: &str) -> User {
    User { id: UserId::generate(), name: name.into(), role: Role::Member, created_at: Utc::now() }
}

fn token(user: &User, expires_at: Option<chrono::DateTime<Utc>>) -> TokenInfo {
    TokenInfo {
        id: TokenId::generate(),
        user_id: user.id.clone(),
        name: "test".into(),
        prefix: "berth_abc".into(),
        created_at: Utc::now(),
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
        created_at: Utc::now(),
        last_opened_at: None,
    }
}

#[tokio::test]
async fn records_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("alice");
    let demo = workspace(&alice, "demo");
    {
        let store = open_store(&dir).await;
        insert_user(&store, &alice, "hash-a").await.unwrap();
        store.insert_workspace(&demo).await.unwrap();
        store.append_init_log(&demo.id, "Cloning into...\n").await.unwrap();
        store.close().await;
    }
    let store = open_store(&dir).await;
    let authenticated = store.authenticate("hash-a", Utc::now()).await.unwrap();
    assert_eq!(authenticated.map(|(user, _)| user), Some(alice.clone()));
    assert_eq!(store.workspace(&demo.id).await.unwrap().map(|w| w.name), Some("demo".into()));
    assert_eq!(store.init_log(&demo.id).await.unwrap().as_deref(), Some("Cloning into...\n"));
    // In WAL mode SQLite keeps its write-ahead log beside the database while it is open.
    assert!(dir.path().join("berth.db-wal").exists());
}

#[tokio::test]
async fn names_are_unique_per_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;
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

#[tokio::test]
async fn initialisation_finishes_once_and_only_from_initialising() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;
    let alice = user("alice");
    insert_user(&store, &alice, "a").await.unwrap();
    let demo = workspace(&alice, "demo");
    store.insert_workspace(&demo).await.unwrap();

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
        !store.set_workspace_state(&demo.id, WorkspaceState::Ready, WorkspaceState::Active).await.unwrap()
    );
    assert!(!store.restart_initialisation(&demo.id).await.unwrap());
}

#[tokio::test]
async fn a_token_stops_when_revoked_expired_or_its_user_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;
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
