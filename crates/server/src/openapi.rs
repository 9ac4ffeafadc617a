//! The OpenAPI document, generated from the handlers and wire types.

use crate::{
    account, changes, live, metrics, oidc, ops, preview, sessions, terminals, users, wire, workspaces,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "berth", description = "The HTTP API of berth, a control plane for agent workspaces."),
    paths(
        ops::healthz, ops::readyz, ops::login, metrics::render, live::live,
        users::me, users::update_me, users::create_user, users::create_token, users::list_tokens, users::revoke_token, users::list_sign_ins, users::end_sign_in,
        users::list_users, users::update_user, ops::logout, ops::switch_login, oidc::sign_in_options,
        workspaces::create_workspace, workspaces::list_workspaces, workspaces::show_workspace, workspaces::update_workspace,
        changes::workspace_changes, changes::admin_session_changes, workspaces::workspace_files, workspaces::write_file, workspaces::delete_file, workspaces::rename_file, workspaces::init_log, workspaces::git_status, workspaces::delete_workspace, workspaces::retry_workspace,
        preview::open_preview, workspaces::push_workspace, workspaces::workspace_diff, workspaces::commit_workspace,
        account::add_credential, account::list_credentials, account::remove_credential,
        account::set_secret, account::list_secrets, account::remove_secret, account::list_agents, account::ssh_key,
        sessions::open_workspace, sessions::list_sessions, sessions::show_session, sessions::session_ports, sessions::close_session,
        sessions::leave_session, sessions::close_all, sessions::admin_list_sessions, sessions::admin_close_all,
        live::session_events, live::workspace_events,
        terminals::open_terminal, terminals::list_terminals, terminals::close_terminal, terminals::terminal_live,
    ),
    components(schemas(
        wire::UserBody, wire::CreateUserRequest, wire::CreatedUser, wire::TokenBody,
        wire::CreateTokenRequest, wire::TokenInfoBody, wire::TokenList, oidc::SignInOptions, oidc::OidcOption, wire::MeBody, wire::UpdateMeRequest, wire::SignInBody, wire::SignInList, wire::AccountBody, wire::AccountList, wire::UpdateUserRequest,
        wire::WorkspaceBody, wire::WorkspaceList, wire::CreateWorkspaceRequest, wire::UpdateWorkspaceRequest, wire::GitStatusBody,
        wire::DeletedBody, wire::ErrorEnvelope, wire::ErrorBody,
        wire::SessionBody, wire::SessionList, wire::AdminSessionBody, wire::AdminSessionList, wire::OpenBody, wire::CloseBody, wire::CloseAllRequest,
        wire::CloseAllBody, wire::CloseFailureBody, wire::EventBody, wire::EventPage, wire::LiveCommand,
        wire::CreateCredentialRequest, wire::CredentialBody, wire::CredentialList, wire::SetSecretRequest,
        wire::SecretBody, wire::SecretList, wire::PushBody, wire::AgentBody, wire::AgentList, wire::SshKeyBody, wire::PortsBody,
        wire::ChangedFileBody, wire::CommitBody, wire::ChangesBody, wire::CommitRequest, wire::CommittedBody, wire::FileBody, wire::EntryBody,
        wire::WriteFileRequest, wire::WrittenFileBody, wire::RenameFileRequest, wire::RenamedFileBody,
        wire::OpenTerminalRequest, wire::TerminalBody, wire::TerminalList, wire::TerminalCommand,
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
        document_common_refusals(openapi);
    }
}

/// The refusals every operation can answer, written once instead of on each handler:
/// `400` wherever a query or a body can be wrong, `401` wherever a token is needed,
/// `403 cross_origin` for a change made with the cookie from another origin, `404`
/// wherever the path names an object.
fn document_common_refusals(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{HttpMethod, RefOr, ResponseBuilder, content::ContentBuilder};
    let refusal = |description: &str| {
        let envelope = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorEnvelope"));
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(envelope)).build())
            .build()
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let named = path.contains('{');
        for (method, operation) in [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Patch, item.patch.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            // An operation that states its own security (an empty one) needs no token.
            let public = operation.security.as_ref().is_some_and(|security| !security.is_empty());
            let queried =
                operation.parameters.iter().flatten().any(|parameter| {
                    matches!(parameter.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                });
            let takes_input = queried || operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses.entry(status.to_owned()).or_insert_with(|| RefOr::T(refusal(description)));
            };
            if takes_input {
                add(
                    "400",
                    "invalid_request (or a code naming the field): the query or the body is not valid",
                );
            }
            if !public {
                add("401", "unauthorized: no valid token");
                if method != HttpMethod::Get {
                    add("403", "cross_origin: the login cookie from another origin, or forbidden");
                }
            }
            if named {
                add("404", "not_found");
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
