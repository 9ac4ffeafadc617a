//! berth and the Agent Client Protocol (ACP v1: newline-delimited JSON-RPC over an
//! agent's stdin/stdout): `builtin` is berth's own small agent, `berth agent`, which
//! works offline and whose behaviour the tests rely on.

pub mod builtin;
pub mod client;
mod files;
