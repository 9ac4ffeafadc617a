//! Who an OpenID Connect provider may sign in, and as what: the installation's allowed
//! groups and email domains, its administrators' groups, and the user name a new person
//! gets. A person is the pair (issuer, subject); names and emails may change.

use crate::user::Role;
use crate::validate::MAX_NAME_LEN;

/// The installation's rules for people its provider signs in.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Empty: any group (or none).
    pub allowed_groups: &'a [String],
    /// Empty: any email (or none).
    pub allowed_email_domains: &'a [String],
    pub admin_groups: &'a [String],
}

/// Whether a person with `email` in `groups` may sign in, and with which role; the
/// refusal says why, for a page the person reads.
pub fn admit(policy: Policy<'_>, email: Option<&str>, groups: &[String]) -> Result<Role, String> {
    let member_of = |wanted: &[String]| groups.iter().any(|group| wanted.contains(group));
    if !policy.allowed_groups.is_empty() && !member_of(policy.allowed_groups) {
        return Err(format!(
            "berth is open to members of {} only, and your account is in none of them",
            policy.allowed_groups.join(", ")
        ));
    }
    if !policy.allowed_email_domains.is_empty() {
        let domain =
            email.and_then(|email| email.rsplit_once('@')).map(|(_, domain)| domain.to_ascii_lowercase());
        let allowed = domain.is_some_and(|domain| {
            policy.allowed_email_domains.iter().any(|allowed| allowed.eq_ignore_ascii_case(&domain))
        });
        if !allowed {
            return Err(format!(
                "berth is open to email addresses at {} only",
                policy.allowed_email_domains.join(", ")
            ));
        }
    }
    Ok(if member_of(policy.admin_groups) { Role::Admin } else { Role::Member })
}

/// The user names a new person may get, in order: the claim made to fit the name rules
/// (`user` when nothing of it fits), then the same with `-2`, `-3`, … — a name another
/// person has is never theirs.
pub fn username_candidates(claim: &str) -> impl Iterator<Item = String> {
    let cleaned: String = claim
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let base: String =
        if trimmed.is_empty() { "user".to_owned() } else { trimmed.chars().take(MAX_NAME_LEN - 8).collect() };
    std::iter::once(base.clone()).chain((2..).map(move |n| format!("{base}-{n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn groups_and_domains_decide_who_signs_in_and_as_what() {
        let (allowed, domains, admins) =
            (strings(&["dev", "ops"]), strings(&["example.com"]), strings(&["ops"]));
        let policy =
            Policy { allowed_groups: &allowed, allowed_email_domains: &domains, admin_groups: &admins };
        assert_eq!(admit(policy, Some("a@example.com"), &strings(&["dev"])), Ok(Role::Member));
        assert_eq!(admit(policy, Some("a@EXAMPLE.com"), &strings(&["ops"])), Ok(Role::Admin));
        assert!(admit(policy, Some("a@example.com"), &strings(&["sales"])).is_err());
        assert!(admit(policy, Some("a@evil.example"), &strings(&["dev"])).is_err());
        assert!(admit(policy, None, &strings(&["dev"])).is_err());
        let open = Policy { allowed_groups: &[], allowed_email_domains: &[], admin_groups: &[] };
        assert_eq!(admit(open, None, &[]), Ok(Role::Member));
    }

    #[test]
    fn a_new_persons_name_fits_the_rules_and_takes_a_suffix_when_taken() {
        let names = |claim: &str| username_candidates(claim).take(3).collect::<Vec<_>>();
        assert_eq!(names("Alice"), ["alice", "alice-2", "alice-3"]);
        assert_eq!(names("bob.smith@example.com")[0], "bob.smith");
        assert_eq!(names("Zoë Ö")[0], "zo---");
        assert_eq!(names("__")[0], "user");
        for name in username_candidates(&"x".repeat(200)).take(12) {
            assert_eq!(crate::validate::name(&name), Ok(()), "{name}");
        }
    }
}
