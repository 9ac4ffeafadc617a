//! Sign-in through an OpenID Connect provider (`openidconnect`): the authorization code
//! flow with PKCE (`S256`), `state` and `nonce`. `GET /auth/oidc/start` records the
//! sign-in under way (in the store, so any replica takes the callback) bound to the
//! browser by a cookie of its own, and sends the browser to the provider;
//! `GET /auth/oidc/callback` takes that record once, trades the code (once: the provider
//! refuses a second use) with the PKCE verifier, checks the ID token (signature against
//! the provider's keys, `iss`, `aud`, `exp`, `nonce`) and signs the browser in as the
//! person (issuer, subject). The provider is found by discovery, retried in the
//! background while it does not answer: berth starts and serves without it.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, cookie_token, cookies, is_local_path, wants_html};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use berth_engine::config::OidcSettings;
use berth_engine::{Browser, OIDC_LOGIN_SECS, OidcIdentity, OidcSignIn};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The cookie that binds a sign-in under way to the browser that started it.
const BINDING_COOKIE: &str = "berth_oidc";
/// How often discovery is tried again while the provider does not answer.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// The longest a request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The installation's provider: its settings, and its metadata once discovered.
pub struct Oidc {
    settings: OidcSettings,
    redirect: RedirectUrl,
    http: reqwest::Client,
    metadata: tokio::sync::RwLock<Option<CoreProviderMetadata>>,
}

impl Oidc {
    /// The provider of `settings`, answering browsers at `public_url`; discovery starts
    /// with [`Oidc::discover_until_found`].
    pub fn new(settings: &OidcSettings, public_url: &str) -> Result<Oidc, String> {
        let redirect = RedirectUrl::new(format!("{public_url}/auth/oidc/callback"))
            .map_err(|error| format!("public_url does not make a redirect address: {error}"))?;
        // The provider's answers are followed nowhere: a redirect is an error.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Oidc { settings: settings.clone(), redirect, http, metadata: tokio::sync::RwLock::new(None) })
    }

    /// Discovers the provider, trying again every few seconds until it answers or
    /// `stopping` turns true.
    pub async fn discover_until_found(self: Arc<Self>, mut stopping: tokio::sync::watch::Receiver<bool>) {
        loop {
            if self.metadata().await.is_some() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(DISCOVERY_RETRY) => {}
                _ = stopping.wait_for(|stopping| *stopping) => return,
            }
        }
    }

    /// The provider's metadata: discovered once, or now if it was not yet.
    async fn metadata(&self) -> Option<CoreProviderMetadata> {
        if let Some(metadata) = self.metadata.read().await.as_ref() {
            return Some(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).ok()?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                tracing::info!(issuer = %self.settings.issuer, "OpenID Connect provider discovered");
                *self.metadata.write().await = Some(metadata.clone());
                Some(metadata)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.settings.issuer, error = %error, "the OpenID Connect provider cannot be reached");
                None
            }
        }
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone())
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/oidc/start", get(start)).route("/auth/oidc/callback", get(callback))
}

#[derive(Deserialize)]
struct StartQuery {
    next: Option<String>,
}

/// The longest `next` page a sign-in goes on to.
const MAX_NEXT: usize = 2048;

/// Sends the browser to the provider, having recorded the sign-in under way.
async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StartQuery>,
) -> Result<Response, ApiError> {
    let Some(oidc) = state.oidc.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "single sign-on is not configured"));
    };
    let Some(metadata) = oidc.metadata().await else {
        return Ok(page(
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            "oidc_unavailable",
            "The sign-in service cannot be reached",
            &format!(
                "berth cannot reach {} right now; it keeps trying. Try again in a moment, or sign in with a login link.",
                oidc.settings.display_name
            ),
        ));
    };
    let client = oidc.client(metadata);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in oidc.settings.scopes.iter().filter(|scope| scope.as_str() != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let binding = hex_secret();
    let next = query.next.as_deref().filter(|next| is_local_path(next, MAX_NEXT)).unwrap_or("/");
    let login = berth_engine::PendingOidcLogin {
        state: csrf.secret().clone(),
        binding_hash: berth_engine::hash_token(&binding),
        verifier: verifier.secret().clone(),
        nonce: nonce.secret().clone(),
        next: next.to_owned(),
        expires_at: chrono::Utc::now().timestamp() + OIDC_LOGIN_SECS,
    };
    state.engine.accounts.begin_oidc_login(&login).await?;
    let mut response = Redirect::to(url.as_str()).into_response();
    let cookie = format!(
        "{BINDING_COOKIE}={binding}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={OIDC_LOGIN_SECS}{}",
        if crate::ops::over_https(&headers) { "; Secure" } else { "" }
    );
    response.headers_mut().insert(header::SET_COOKIE, header_value(&cookie)?);
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider's redirect back: the sign-in ends here, signed in or refused.
async fn callback(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let ApiQuery(query) =
        <ApiQuery<CallbackQuery> as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &state,
        )
        .await?;
    let headers = &parts.headers;
    let refused =
        |message: &str| page(headers, StatusCode::BAD_REQUEST, "oidc_failed", "Sign-in failed", message);
    let Some(oidc) = state.oidc.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "single sign-on is not configured"));
    };
    let binding = cookies(headers).find_map(|(name, value)| (name == BINDING_COOKIE).then_some(value));
    let login = match &query.state {
        Some(state_value) => state.engine.accounts.take_oidc_login(state_value, binding).await?,
        None => None,
    };
    let Some(login) = login else {
        return Ok(refused(
            "This sign-in link is not valid here, or was used already. Start again from berth's sign-in page.",
        ));
    };
    if let Some(error) = &query.error {
        let said = query.error_description.as_deref().unwrap_or(error);
        tracing::info!(error = %error, "the OpenID Connect provider refused a sign-in");
        return Ok(refused(&format!(
            "The sign-in service said: {}",
            said.chars().take(200).collect::<String>()
        )));
    }
    let Some(code) = query.code.clone() else { return Ok(refused("The sign-in service sent no code.")) };
    let identity = match oidc.identity(code, &login).await {
        Ok(identity) => identity,
        Err(reason) => {
            tracing::warn!(reason = %reason, "an OpenID Connect sign-in was refused");
            return Ok(refused(
                "The sign-in service's answer could not be verified. Start again from berth's sign-in page.",
            ));
        }
    };
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let address = crate::ops::client_address(&parts);
    match state
        .engine
        .accounts
        .sign_in_with_oidc(&identity, Browser { user_agent, address: &address })
        .await?
    {
        OidcSignIn::Refused(reason) => {
            Ok(page(headers, StatusCode::FORBIDDEN, "not_allowed", "You cannot sign in to berth", &reason))
        }
        OidcSignIn::SignedIn(_, made) => {
            // The browser's earlier sign-in, if any, ends: it started this one itself.
            if let Some(earlier) = cookie_token(headers) {
                state.engine.accounts.sign_out(earlier).await?;
            }
            let secure = crate::ops::over_https(headers);
            let mut response = Redirect::to(&login.next).into_response();
            let cookie = crate::ops::login_cookie(&made.secret, made.max_age.as_secs(), secure);
            response.headers_mut().append(header::SET_COOKIE, header_value(&cookie)?);
            let cleared = format!("{BINDING_COOKIE}=; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0");
            response.headers_mut().append(header::SET_COOKIE, header_value(&cleared)?);
            Ok(response)
        }
    }
}

impl Oidc {
    /// Trades `code` for tokens and checks the ID token; what the provider says of the
    /// person (the ID token's claims, completed from the user info endpoint).
    async fn identity(
        &self,
        code: String,
        login: &berth_engine::PendingOidcLogin,
    ) -> Result<OidcIdentity, String> {
        let metadata = self.metadata().await.ok_or("the provider cannot be reached")?;
        let client = self.client(metadata.clone());
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|error| error.to_string())?
            .set_pkce_verifier(PkceCodeVerifier::new(login.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|error| format!("the code was refused: {error}"))?;
        let id_token = tokens.id_token().ok_or("no ID token came")?;
        let verified = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(login.nonce.clone()))
            .map_err(|error| format!("the ID token failed its checks: {error}"))?;
        let issuer = verified.issuer().to_string();
        let subject = verified.subject().to_string();
        // The payload of the token just verified, for claims the standard set lacks.
        let mut claims = jwt_payload(&id_token.to_string()).unwrap_or_default();
        if let Some(endpoint) = metadata.userinfo_endpoint() {
            match self.user_info(endpoint.url().as_str(), tokens.access_token()).await {
                // The user info is this person's only when its subject says so.
                Ok(info) if info.get("sub").and_then(Value::as_str) == Some(subject.as_str()) => {
                    for (name, value) in info {
                        claims.entry(name).or_insert(value);
                    }
                }
                Ok(_) => return Err("the user info names another subject".into()),
                Err(error) => tracing::debug!(error = %error, "no user info"),
            }
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(Value::Array(groups)) => {
                groups.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(Value::String(group)) => vec![group.clone()],
            _ => Vec::new(),
        };
        // An email the provider says is not verified is not taken for one.
        let email = text("email").filter(|_| claims.get("email_verified") != Some(&Value::Bool(false)));
        Ok(OidcIdentity {
            issuer,
            subject,
            username: text(&self.settings.username_claim),
            display_name: text("name"),
            email,
            groups,
        })
    }

    async fn user_info(
        &self,
        url: &str,
        token: &AccessToken,
    ) -> Result<serde_json::Map<String, Value>, String> {
        let answer =
            self.http.get(url).bearer_auth(token.secret()).send().await.map_err(|error| error.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("user info answered {}", answer.status()));
        }
        answer.json().await.map_err(|error| error.to_string())
    }
}

/// The claims of a JWT whose signature was checked already.
fn jwt_payload(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn hex_secret() -> String {
    rand::random::<[u8; 32]>().iter().map(|byte| format!("{byte:02x}")).collect()
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text).map_err(|_| ApiError::invalid_request("a header cannot be made"))
}

/// A refusal for a person (an HTML page) or a client (the error envelope).
fn page(headers: &HeaderMap, status: StatusCode, code: &'static str, title: &str, message: &str) -> Response {
    if !wants_html(headers) {
        return ApiError::new(status, code, message.to_owned()).into_response();
    }
    use crate::page::escape_html as escape;
    let main = format!(
        "<h1 id=\"oidc-title\">{}</h1><p id=\"oidc-message\">{}</p><p><a href=\"/signin\">Back to sign-in</a></p>",
        escape(title),
        escape(message),
    );
    crate::page::server_page(status, title, &main)
}

/// What the sign-in page offers: the provider's button, when there is one.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SignInOptions {
    /// "Sign in with <display_name>", when OpenID Connect is configured.
    pub oidc: Option<OidcOption>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OidcOption {
    pub display_name: String,
    /// Whether the provider answered discovery (else the page says it cannot be reached).
    pub reachable: bool,
}

/// How one can sign in here (no credential needed).
#[utoipa::path(get, path = "/api/sign-in-options", tag = "users", security(()),
    responses((status = 200, body = SignInOptions)))]
pub async fn sign_in_options(State(state): State<AppState>) -> axum::Json<SignInOptions> {
    let oidc = match &state.oidc {
        Some(oidc) => Some(OidcOption {
            display_name: oidc.settings.display_name.clone(),
            reachable: oidc.metadata.read().await.is_some(),
        }),
        None => None,
    };
    axum::Json(SignInOptions { oidc })
}
