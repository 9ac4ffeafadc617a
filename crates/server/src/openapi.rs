//! The OpenAPI document, generated from the handlers and wire types.

use crate::{changes, live, ops, sessions, users, wire, workspaces};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "berth", description = "The HTTP API of berth, a control plane for agent workspaces."),
    paths(
        ops::healthz, ops::readyz,
        users::me, users::create_user, users::create_token, users::list_tokens, users::revoke_token,
        users::list_users, users::update_user, ops::logout,
        workspaces::create_workspace, workspaces::list_workspaces, workspaces::show_workspace, workspaces::update_workspace,
        changes::workspace_changes, workspaces::init_log, workspaces::git_status, workspaces::delete_workspace, workspaces::retry_workspace,
        sessions::open_workspace, sessions::list_sessions, sessions::show_session, sessions::close_session,
        sessions::leave_session, sessions::close_all, sessions::admin_list_sessions, sessions::admin_close_all,
        live::session_events, live::workspace_events,
    ),
    components(schemas(
        wire::UserBody, wire::MeBody, wire::CreateUserRequest, wire::CreatedUser, wire::TokenBody,
        wire::CreateTokenRequest, wire::TokenInfoBody, wire::TokenList, wire::AccountBody, wire::AccountList, wire::UpdateUserRequest,
        wire::WorkspaceBody, wire::WorkspaceList, wire::CreateWorkspaceRequest, wire::UpdateWorkspaceRequest, wire::GitStatusBody,
        wire::DeletedBody, wire::ErrorEnvelope, wire::ErrorBody,
        wire::SessionBody, wire::SessionList, wire::AdminSessionBody, wire::AdminSessionList, wire::OpenBody, wire::CloseBody, wire::CloseAllRequest,
        wire::CloseAllBody, wire::CloseFailureBody, wire::EventBody, wire::EventPage, wire::LiveCommand,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
