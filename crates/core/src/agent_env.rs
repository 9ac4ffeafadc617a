//! What an agent's environment is made of: from the server's own environment only a base
//! set (`PATH`, `LANG`, `LC_*`, `TZ`) and the names the operator passes (`agent.pass_env`);
//! then the catalogue agent's fixed settings (`[agents.NAME] env`). The person's secrets
//! come last, privately (the sandbox's private environment), and win over both.

/// Names of the server's environment every agent gets.
const BASE: [&str; 3] = ["PATH", "LANG", "TZ"];

/// Whether the server's variable `name` reaches agents: the base set, `LC_*`, or a name
/// the operator listed.
pub fn passes(name: &str, pass_env: &[String]) -> bool {
    BASE.contains(&name) || name.starts_with("LC_") || pass_env.iter().any(|passed| passed == name)
}

/// The agent's environment (before its secrets): the server's variables that pass, then
/// the agent's own settings, each name once (a setting wins over the server's value).
pub fn environment(
    server: impl IntoIterator<Item = (String, String)>,
    pass_env: &[String],
    agent: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        server.into_iter().filter(|(name, _)| passes(name, pass_env)).collect();
    for (name, value) in agent {
        env.retain(|(kept, _)| kept != name);
        env.push((name.clone(), value.clone()));
    }
    env
}

/// The variables that make the agent's own `git commit` carry the person: author and
/// committer, name and email.
pub fn git_identity(name: &str, email: &str) -> [(String, String); 4] {
    let pair = |variable: &str, value: &str| (variable.to_owned(), value.to_owned());
    [
        pair("GIT_AUTHOR_NAME", name),
        pair("GIT_AUTHOR_EMAIL", email),
        pair("GIT_COMMITTER_NAME", name),
        pair("GIT_COMMITTER_EMAIL", email),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn only_the_base_set_and_the_names_passed_reach_an_agent() {
        let server = pairs(&[
            ("PATH", "/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C"),
            ("TZ", "UTC"),
            ("OPERATOR_SECRET", "x"),
            ("AWS_SECRET_ACCESS_KEY", "y"),
            ("MODEL_GATEWAY", "https://gw"),
            ("HOME", "/root"),
        ]);
        let env = environment(server, &["MODEL_GATEWAY".to_owned()], &[]);
        let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["PATH", "LANG", "LC_ALL", "TZ", "MODEL_GATEWAY"]);
    }

    #[test]
    fn an_agents_own_setting_wins_over_the_servers() {
        let server = pairs(&[("PATH", "/usr/bin"), ("ANTHROPIC_BASE_URL", "https://server")]);
        let agent = pairs(&[("ANTHROPIC_BASE_URL", "https://gateway"), ("MODEL", "m")]);
        let env = environment(server, &["ANTHROPIC_BASE_URL".to_owned()], &agent);
        assert_eq!(
            env,
            pairs(&[("PATH", "/usr/bin"), ("ANTHROPIC_BASE_URL", "https://gateway"), ("MODEL", "m")])
        );
    }
}
