//! Opaque identifiers. They are random, prefixed by kind so a log line says what it names,
//! and their shape is checked before any of them reaches the store or the file system.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The characters an id is made of after its prefix: lowercase, no look-alikes.
const ID_ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_RANDOM_LEN: usize = 20;

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..ID_RANDOM_LEN).map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char).collect()
}

fn is_well_formed(prefix: &str, candidate: &str) -> bool {
    candidate
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == ID_RANDOM_LEN && rest.bytes().all(|b| ID_ALPHABET.contains(&b)))
}

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_suffix()))
            }

            /// Accepts only strings of the shape `generate` makes, so an id taken from a
            /// URL can be used as a file name or a key without further checks.
            pub fn parse(candidate: &str) -> Option<Self> {
                is_well_formed($prefix, candidate).then(|| Self(candidate.to_owned()))
            }

            /// For values read back from the store, which only ever holds generated ids.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(UserId, "u_");
id_type!(WorkspaceId, "w_");
id_type!(SessionId, "s_");
id_type!(TokenId, "t_");
id_type!(CredentialId, "c_");
id_type!(SignInId, "si_");
id_type!(TerminalId, "tm_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = WorkspaceId::generate();
        assert_eq!(WorkspaceId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = WorkspaceId::generate();
        for bad in [
            "",
            "w_",
            "w_../../etc/passwd",
            "u_0123456789abcdefghjk",
            &format!("{}x", good),
            &good.as_str().to_uppercase(),
        ] {
            assert_eq!(WorkspaceId::parse(bad), None, "{bad:?} was accepted");
        }
    }
}
