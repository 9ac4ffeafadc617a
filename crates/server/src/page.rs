//! The few pages the server writes itself, outside the web UI (a sign-in to confirm or
//! refused): berth's stylesheet, no script, everything said escaped, kept by no cache.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// `text` made safe inside HTML text and double-quoted attributes.
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A page titled `title` (escaped here) around `main`, HTML the caller escaped, under a
/// policy that allows berth's stylesheet and forms posted to berth only.
pub(crate) fn server_page(status: StatusCode, title: &str, main: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · berth</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body><main class=\"server-page\">{main}</main></body></html>\n",
        escape_html(title)
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}
