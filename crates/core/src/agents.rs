//! The coding agents berth knows out of the box: each an Agent Client Protocol adapter
//! published on npm, with what it needs from the person (a provider key) and the
//! settings it reads (its provider's address, its model). An installation offers them
//! besides berth's own agent; `[agents.NAME]` changes any field or adds an agent.

/// An agent berth can install and start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAgent {
    pub name: &'static str,
    pub description: &'static str,
    /// The npm package, and the version berth installs.
    pub package: &'static str,
    pub version: &'static str,
    /// The program the package installs, and the arguments that make it speak ACP.
    pub bin: &'static str,
    pub args: &'static [&'static str],
    /// The secrets it needs: its provider's API key.
    pub needs: &'static [&'static str],
    /// The settings it reads from its environment (`env = { … }` of `[agents.NAME]`):
    /// where its provider answers, which model.
    pub settings: &'static [&'static str],
}

/// Claude Code, Codex and Gemini CLI, by their ACP adapters.
pub const KNOWN_AGENTS: [KnownAgent; 3] = [
    KnownAgent {
        name: "claude",
        description: "Claude Code (Anthropic), through its ACP adapter",
        package: "@agentclientprotocol/claude-agent-acp",
        version: "0.101.0",
        bin: "claude-agent-acp",
        args: &[],
        needs: &["ANTHROPIC_API_KEY"],
        settings: &["ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL"],
    },
    KnownAgent {
        name: "codex",
        description: "Codex (OpenAI), through its ACP adapter",
        package: "@agentclientprotocol/codex-acp",
        version: "2.6.0",
        bin: "codex-acp",
        args: &[],
        needs: &["OPENAI_API_KEY"],
        // Codex takes its provider and model from its configuration, which the adapter
        // reads as JSON from CODEX_CONFIG (`{"model": …, "model_providers": {…}}`); its
        // mode (whom it asks before a command) from INITIAL_AGENT_MODE.
        settings: &["CODEX_CONFIG", "INITIAL_AGENT_MODE"],
    },
    KnownAgent {
        name: "gemini",
        description: "Gemini CLI (Google), in its ACP mode",
        package: "@google/gemini-cli",
        version: "0.61.0",
        bin: "gemini",
        args: &["--acp"],
        needs: &["GEMINI_API_KEY"],
        settings: &["GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL"],
    },
];

/// The known agent called `name`.
pub fn known(name: &str) -> Option<&'static KnownAgent> {
    KNOWN_AGENTS.iter().find(|agent| agent.name == name)
}

impl KnownAgent {
    /// `package@version`, as npm installs it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }
}

/// The shell command line that starts `program` (a path or a name on the `PATH`) with
/// `args`, each quoted for the shell.
pub fn command_line(program: &str, args: &[&str]) -> String {
    let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
    std::iter::once(format!("exec {}", quote(program)))
        .chain(args.iter().map(|arg| quote(arg)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words of `command` when a shell would run it as one program, named by absolute
/// path, with fixed arguments and nothing else — so it can be executed without a shell
/// in front of it. Only what [`command_line`] writes and plain words are understood:
/// `'…'` quoting (`'\''` for a quote), words of `A-Z a-z 0-9 _ . / : , + @ % = -`, blanks,
/// and a leading `exec`. Anything else (an expansion, a redirection, a second command, a
/// program looked up on the `PATH` or an assignment) is `None`: the shell runs it.
pub fn plain_argv(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '\'' => {
                let quoted = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => quoted.push(c),
                    }
                }
            }
            '\\' if chars.next()? == '\'' => word.get_or_insert_with(String::new).push('\''),
            c if c.is_ascii_alphanumeric() || "_./:,+@%=-".contains(c) => {
                word.get_or_insert_with(String::new).push(c);
            }
            _ => return None,
        }
    }
    words.extend(word);
    if words.first().is_some_and(|first| first == "exec") {
        words.remove(0);
    }
    let program = words.first()?;
    (program.starts_with('/') && !program.contains('=')).then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_agents_have_names_a_workspace_can_use_and_keys_a_person_can_set() {
        for agent in KNOWN_AGENTS {
            assert_eq!(crate::validate::name(agent.name).map(|_| ()), Ok(()), "{}", agent.name);
            for secret in agent.needs.iter().chain(agent.settings) {
                assert!(crate::validate::secret_name(secret).is_ok(), "{secret}");
            }
            assert!(crate::validate::agent_command(&command_line(agent.bin, agent.args)).is_ok());
        }
        assert_eq!(known("gemini").map(|agent| agent.args), Some(&["--acp"][..]));
        assert_eq!(known("builtin"), None);
    }

    #[test]
    fn a_command_line_quotes_every_word() {
        assert_eq!(command_line("/srv/berth/agents/claude/x", &[]), "exec '/srv/berth/agents/claude/x'");
        assert_eq!(command_line("gemini", &["--acp"]), "exec 'gemini' '--acp'");
        assert_eq!(command_line("/it's", &[]), r"exec '/it'\''s'");
    }

    #[test]
    fn a_plain_command_line_is_its_words_and_anything_else_is_the_shells() {
        let words = |list: &[&str]| Some(list.iter().map(|word| word.to_string()).collect::<Vec<_>>());
        assert_eq!(plain_argv("exec '/srv/a b/x' '--acp'"), words(&["/srv/a b/x", "--acp"]));
        assert_eq!(plain_argv(&command_line("/it's", &["", "a'b"])), words(&["/it's", "", "a'b"]));
        assert_eq!(plain_argv("'/usr/bin/berth' agent"), words(&["/usr/bin/berth", "agent"]));
        assert_eq!(plain_argv("  /bin/agent  --model=x:1,2 "), words(&["/bin/agent", "--model=x:1,2"]));
        for shell in [
            "",
            "exec",
            "agent --acp",
            "'agent'",
            "./agent",
            "A=/b /bin/agent",
            "/bin/agent $HOME",
            "/bin/agent ~",
            "/bin/agent *",
            "/bin/agent; rm -rf /",
            "/bin/agent && x",
            "/bin/agent | x",
            "/bin/agent > out",
            "/bin/agent `x`",
            "/bin/agent \"a\"",
            "/bin/agent 'unterminated",
            "/bin/agent \\n",
            "/bin/agent\nx",
            "/bin/agent # comment",
            "exec -a name /bin/agent",
        ] {
            assert_eq!(plain_argv(shell), None, "{shell:?}");
        }
    }
}
