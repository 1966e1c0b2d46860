//! What a person may do once signed in: `admin` everything, `member` only their own devices,
//! `auditor` read only.

use std::fmt;

use crate::domain::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    Admin,
    #[default]
    Member,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Member, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(value: &str) -> Result<Role, Rejection> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == value)
            .ok_or_else(|| {
                Rejection::Invalid(format!(
                    "role must be one of 'admin', 'member' or 'auditor', not '{}'",
                    crate::domain::text::echo(value)
                ))
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
