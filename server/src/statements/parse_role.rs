//! Parsing the role statements: `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`,
//! `GRANT` and `REVOKE` of privileges on a database.

use sluice_catalog::{Privilege, SecretValue};

use super::ast::SluiceStatement;
use super::parse::{PResult, StatementParser};

/// What `CREATE ROLE` or `ALTER ROLE ... [WITH]` sets; `None` keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleOptions {
    pub login: Option<bool>,
    /// Hashed into a SCRAM-SHA-256 verifier before it is stored.
    pub password: Option<SecretValue>,
}

/// What `ALTER ROLE` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    Set(RoleOptions),
    Rename(String),
}

/// `GRANT privileges ON DATABASE db TO roles` or `REVOKE ... FROM roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub privileges: Vec<Privilege>,
    pub database: String,
    pub roles: Vec<String>,
}

impl StatementParser<'_> {
    /// A role statement, or `None` (nothing consumed) for another.
    pub(super) fn role_statement(&mut self) -> PResult<Option<SluiceStatement>> {
        Ok(Some(if self.words(&["CREATE", "ROLE"]) {
            self.create_role(false)?
        } else if self.words(&["CREATE", "USER"]) {
            self.create_role(true)?
        } else if self.words(&["ALTER", "ROLE"]) || self.words(&["ALTER", "USER"]) {
            let name = self.name("role name")?;
            let change = if self.words(&["RENAME", "TO"]) {
                RoleChange::Rename(self.name("new role name")?)
            } else {
                RoleChange::Set(self.role_options()?)
            };
            SluiceStatement::AlterRole { name, change }
        } else if self.words(&["DROP", "ROLE"]) || self.words(&["DROP", "USER"]) {
            let if_exists = self.words(&["IF", "EXISTS"]);
            SluiceStatement::DropRole {
                name: self.name("role name")?,
                if_exists,
            }
        } else if self.word("GRANT") {
            SluiceStatement::Grant(self.grant("TO")?)
        } else if self.word("REVOKE") {
            SluiceStatement::Revoke(self.grant("FROM")?)
        } else {
            return Ok(None);
        }))
    }

    /// After `CREATE ROLE` (`CREATE USER` logs in unless told otherwise).
    fn create_role(&mut self, user: bool) -> PResult<SluiceStatement> {
        let name = self.name("role name")?;
        let mut options = self.role_options()?;
        options.login = options.login.or(Some(user));
        Ok(SluiceStatement::CreateRole { name, options })
    }

    /// `[WITH] [LOGIN | NOLOGIN | PASSWORD 'p'] ...`, each at most once.
    fn role_options(&mut self) -> PResult<RoleOptions> {
        let _ = self.word("WITH");
        let mut options = RoleOptions::default();
        loop {
            let login = if self.word("LOGIN") {
                Some(true)
            } else if self.word("NOLOGIN") {
                Some(false)
            } else {
                None
            };
            if login.is_some() {
                if options.login.is_some() {
                    return Err(self.error("conflicting or redundant options: LOGIN".into()));
                }
                options.login = login;
            } else if self.word("PASSWORD") {
                if options.password.is_some() {
                    return Err(self.error("conflicting or redundant options: PASSWORD".into()));
                }
                let password = self.string("the password as a 'string'")?;
                if password.is_empty() {
                    return Err(self.error("the password must not be empty".into()));
                }
                options.password = Some(SecretValue::new(password));
            } else {
                return Ok(options);
            }
        }
    }

    /// After `GRANT` or `REVOKE`: `privileges ON DATABASE db TO|FROM roles`.
    fn grant(&mut self, to: &str) -> PResult<Grant> {
        let privileges = if self.word("ALL") {
            let _ = self.word("PRIVILEGES");
            Privilege::ALL.to_vec()
        } else {
            self.comma_separated(|p| {
                Privilege::ALL
                    .into_iter()
                    .find(|privilege| p.word(privilege.as_sql()))
                    .ok_or_else(|| p.error("expected USAGE, OPERATE, ADMIN or ALL".into()))
            })?
        };
        self.expect_word("ON")?;
        self.expect_word("DATABASE")?;
        let database = self.name("database name")?;
        self.expect_word(to)?;
        let roles = self.comma_separated(|p| p.name("role name"))?;
        Ok(Grant {
            privileges,
            database,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parse_sluice as parse;

    #[test]
    fn parses_role_statements() {
        assert_eq!(
            parse("CREATE ROLE Alice WITH LOGIN PASSWORD 'pw'").unwrap(),
            SluiceStatement::CreateRole {
                name: "alice".into(),
                options: RoleOptions {
                    login: Some(true),
                    password: Some(SecretValue::new("pw"))
                }
            }
        );
        let SluiceStatement::CreateRole { options, .. } = parse("create role r").unwrap() else {
            panic!()
        };
        assert_eq!(options.login, Some(false));
        let SluiceStatement::CreateRole { options, .. } = parse("create user u password 'x'").unwrap() else {
            panic!()
        };
        assert_eq!(options.login, Some(true));
        assert_eq!(
            parse("ALTER ROLE alice RENAME TO bob").unwrap(),
            SluiceStatement::AlterRole {
                name: "alice".into(),
                change: RoleChange::Rename("bob".into())
            }
        );
        assert_eq!(
            parse("ALTER ROLE alice NOLOGIN").unwrap(),
            SluiceStatement::AlterRole {
                name: "alice".into(),
                change: RoleChange::Set(RoleOptions {
                    login: Some(false),
                    password: None
                })
            }
        );
        assert_eq!(
            parse("DROP ROLE IF EXISTS alice").unwrap(),
            SluiceStatement::DropRole {
                name: "alice".into(),
                if_exists: true
            }
        );
        assert_eq!(
            parse("GRANT usage, OPERATE ON DATABASE sluice TO alice, bob").unwrap(),
            SluiceStatement::Grant(Grant {
                privileges: vec![Privilege::Usage, Privilege::Operate],
                database: "sluice".into(),
                roles: vec!["alice".into(), "bob".into()]
            })
        );
        assert_eq!(
            parse("REVOKE ALL PRIVILEGES ON DATABASE sluice FROM alice").unwrap(),
            SluiceStatement::Revoke(Grant {
                privileges: Privilege::ALL.to_vec(),
                database: "sluice".into(),
                roles: vec!["alice".into()]
            })
        );
        for bad in [
            "CREATE ROLE a LOGIN NOLOGIN",
            "CREATE ROLE a PASSWORD ''",
            "GRANT SELECT ON DATABASE sluice TO a",
            "GRANT USAGE ON SCHEMA sluice TO a",
            "REVOKE USAGE ON DATABASE sluice TO a",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_not_shown_in_debug_output() {
        let statement = parse("CREATE ROLE a LOGIN PASSWORD 'hunter2'").unwrap();
        assert!(!format!("{statement:?}").contains("hunter2"));
    }
}
