//! `berth attach <session>`: a terminal client of the live channel — the resume command
//! of every session. It prints the conversation so far and then as it happens; a line
//! typed is a prompt, `/1`, `/2`, ... answers the waiting question with that option,
//! `/cancel` stops the agent's turn, end of input leaves.

use crate::ServerArgs;
use anyhow::{Context, anyhow};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::process::ExitCode;
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub async fn run(server: &ServerArgs, session: &str) -> anyhow::Result<ExitCode> {
    let token = server.token.clone().ok_or_else(|| anyhow!("no token: set BERTH_TOKEN or pass --token"))?;
    let base = server.url.trim_end_matches('/');
    let ws_base = base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let mut request = format!("{ws_base}/api/sessions/{session}/live?after=0")
        .into_client_request()
        .context("the server address is not a valid URL")?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().context("the token")?);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .with_context(|| format!("cannot attach to session {session} at {base}"))?;
    let (mut sink, mut stream) = socket.split();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut waiting: Option<Value> = None;
    println!(
        "Attached to {session}. Type a prompt (`$ command` runs one), /N answers a question, /cancel stops, Ctrl-D leaves."
    );
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { break };
                let Message::Text(text) = message.context("the live channel failed")? else { continue };
                let frame: Value = serde_json::from_str(&text).context("the server sent something that is not JSON")?;
                if let Some(ended) = show(&frame, &mut waiting) {
                    println!("Session ended ({ended}).");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim();
                let command = match line {
                    "" => continue,
                    "/cancel" => json!({ "type": "cancel" }),
                    _ if line.starts_with('/') => match answer(line, waiting.as_ref()) {
                        Some(command) => command,
                        None => {
                            eprintln!("No question waits for that answer.");
                            continue;
                        }
                    },
                    _ => json!({ "type": "prompt", "text": line }),
                };
                sink.send(Message::Text(command.to_string().into())).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `/N` as an answer to the waiting question.
fn answer(line: &str, waiting: Option<&Value>) -> Option<Value> {
    let number: usize = line.trim_start_matches('/').parse().ok()?;
    let question = waiting?;
    let option = question["options"].as_array()?.get(number.checked_sub(1)?)?;
    Some(json!({ "type": "answer", "question_id": question["id"], "option_id": option["id"] }))
}

fn text_of(content: &Value) -> String {
    match content {
        Value::Array(items) => items.iter().map(text_of).collect(),
        Value::Object(map) => map
            .get("text")
            .and_then(Value::as_str)
            .map_or_else(|| map.get("content").map(text_of).unwrap_or_default(), str::to_owned),
        _ => String::new(),
    }
}

/// Prints a frame; returns the end reason when the session ended.
fn show(frame: &Value, waiting: &mut Option<Value>) -> Option<String> {
    match frame["type"].as_str() {
        Some("event") => {
            let event = &frame["event"];
            let data = &event["data"];
            match event["kind"].as_str().unwrap_or_default() {
                "user_message" => println!("\n> {}", data["text"].as_str().unwrap_or_default()),
                "agent_message" | "agent_thought" => print!("{}", text_of(&data["content"])),
                "tool_call" => println!("\n[tool] {}", data["title"].as_str().unwrap_or("tool call")),
                "tool_call_update" => {
                    if let Some(status @ ("completed" | "failed")) = data["status"].as_str() {
                        let output = text_of(&data["content"]);
                        println!("[tool {status}]\n{}", output.trim_end());
                    }
                }
                "turn_end" => println!("\n(turn ended: {})", data["stop_reason"].as_str().unwrap_or("?")),
                "answer" => *waiting = None,
                "system" => {
                    println!("({})", data["message"].as_str().or(data["code"].as_str()).unwrap_or("system"))
                }
                _ => {}
            }
            None
        }
        Some("question") => {
            let question = &frame["question"];
            println!("\n? {}", question["title"].as_str().unwrap_or("The agent asks"));
            for (number, option) in question["options"].as_array().into_iter().flatten().enumerate() {
                println!("  /{} {}", number + 1, option["label"].as_str().unwrap_or("?"));
            }
            *waiting = Some(question.clone());
            None
        }
        Some("session") if frame["session"]["state"] == "ended" => {
            Some(frame["session"]["end_reason"].as_str().unwrap_or("ended").to_owned())
        }
        Some("error") => {
            eprintln!("! {}", frame["error"]["message"].as_str().unwrap_or("error"));
            None
        }
        _ => None,
    }
}
