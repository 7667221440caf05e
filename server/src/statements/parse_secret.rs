//! `CREATE SECRET name FROM ENV | FILE | GCP SECRET MANAGER | AWS SECRETS
//! MANAGER 'reference'`: the external store a secret is fetched from.

use sluice_catalog::ExternalSecret;

use super::parse::{PResult, StatementParser};

impl StatementParser<'_> {
    /// The store and reference after `FROM`.
    pub(super) fn external_secret(&mut self) -> PResult<ExternalSecret> {
        let external = if self.word("ENV") {
            ExternalSecret::Env(self.reference("the environment variable's name")?)
        } else if self.word("FILE") {
            let path = self.reference("the file's absolute path")?;
            if !path.starts_with('/') {
                return Err(self.error(format!("FROM FILE needs an absolute path, not '{path}'")));
            }
            ExternalSecret::File(path)
        } else if self.words(&["GCP", "SECRET", "MANAGER"]) {
            let name =
                self.reference("the secret version, 'projects/<project>/secrets/<secret>/versions/<version>'")?;
            if !is_secret_version(&name) {
                return Err(self.error(format!(
                    "'{name}' is not a secret version name: write 'projects/<project>/secrets/<secret>/versions/<version>' (the version may be 'latest')"
                )));
            }
            ExternalSecret::GcpSecretManager(name)
        } else if self.words(&["AWS", "SECRETS", "MANAGER"]) {
            ExternalSecret::AwsSecretsManager(self.reference("the secret's ARN or name")?)
        } else {
            return Err(self.error("expected ENV, FILE, GCP SECRET MANAGER or AWS SECRETS MANAGER after FROM".into()));
        };
        Ok(external)
    }

    /// A non-empty string literal.
    fn reference(&mut self, what: &str) -> PResult<String> {
        let text = self.string(what)?;
        if text.trim().is_empty() {
            return Err(self.error(format!("expected {what}, found an empty string")));
        }
        Ok(text)
    }
}

/// `projects/<p>/secrets/<s>/versions/<v>`, each part non-empty.
fn is_secret_version(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 6
        && parts[0] == "projects"
        && parts[2] == "secrets"
        && parts[4] == "versions"
        && parts.iter().all(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use crate::statements::{SluiceStatement, parse_sluice};

    use super::*;

    fn external(sql: &str) -> ExternalSecret {
        match parse_sluice(sql) {
            Ok(SluiceStatement::CreateSecretFrom { external, .. }) => external,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn parses_each_store() {
        assert_eq!(
            external("CREATE SECRET s FROM ENV 'PG_PW'"),
            ExternalSecret::Env("PG_PW".into())
        );
        assert_eq!(
            external("create or replace secret s from file '/run/secrets/pw'"),
            ExternalSecret::File("/run/secrets/pw".into())
        );
        assert_eq!(
            external("CREATE SECRET s FROM GCP SECRET MANAGER 'projects/p/secrets/s/versions/latest'"),
            ExternalSecret::GcpSecretManager("projects/p/secrets/s/versions/latest".into())
        );
        assert_eq!(
            external(
                "CREATE SECRET IF NOT EXISTS s FROM AWS SECRETS MANAGER 'arn:aws:secretsmanager:eu-west-1:1:secret:s'"
            ),
            ExternalSecret::AwsSecretsManager("arn:aws:secretsmanager:eu-west-1:1:secret:s".into())
        );
    }

    #[test]
    fn refuses_malformed_references() {
        for sql in [
            "CREATE SECRET s FROM FILE 'relative/pw'",
            "CREATE SECRET s FROM ENV ''",
            "CREATE SECRET s FROM GCP SECRET MANAGER 'projects/p/secrets/s'",
            "CREATE SECRET s FROM VAULT 'x'",
        ] {
            assert!(parse_sluice(sql).is_err(), "{sql}");
        }
    }
}
