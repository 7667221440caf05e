//! Parsing the alert statements: `CREATE ALERT`, `DROP ALERT`, `SHOW ALERTS`.

use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_catalog::{AlertEvent, SecretHeader, Subject};
use sluice_engine::alerts::CreateAlert;

use super::ast::SluiceStatement;
use super::parse::{PResult, StatementParser};

impl StatementParser<'_> {
    /// An alert statement, or `None` (nothing consumed) for another.
    pub(super) fn alert_statement(&mut self) -> PResult<Option<SluiceStatement>> {
        if self.words(&["CREATE", "ALERT"]) {
            return self
                .create_alert()
                .map(|c| Some(SluiceStatement::CreateAlert(Box::new(c))));
        }
        if self.words(&["DROP", "ALERT"]) {
            let if_exists = self.words(&["IF", "EXISTS"]);
            let name = self.name("alert name")?;
            return Ok(Some(SluiceStatement::DropAlert { name, if_exists }));
        }
        if self.words(&["SHOW", "ALERTS"]) {
            return Ok(Some(SluiceStatement::ShowAlerts));
        }
        Ok(None)
    }

    /// After `CREATE ALERT`.
    fn create_alert(&mut self) -> PResult<CreateAlert> {
        let if_not_exists = self.words(&["IF", "NOT", "EXISTS"]);
        let name = self.name("alert name")?;
        self.expect_word("ON")?;
        let event = if self.words(&["JOB", "FAILURE"]) {
            AlertEvent::JobFailure
        } else if self.words(&["JOB", "RECOVERED"]) {
            AlertEvent::JobRecovered
        } else if self.words(&["CONNECTION", "FAILED"]) {
            AlertEvent::ConnectionFailed
        } else if self.words(&["CONNECTION", "RECOVERED"]) {
            AlertEvent::ConnectionRecovered
        } else {
            return Err(self.error(
                "expected JOB FAILURE, JOB RECOVERED, CONNECTION FAILED or CONNECTION RECOVERED after ON".into(),
            ));
        };
        let target = if self.word("FOR") {
            let what = match event.subject() {
                Subject::Connection => "connection name",
                Subject::Job => "job name",
            };
            Some(self.name(what)?)
        } else {
            None
        };
        self.expect_word("NOTIFY")?;
        self.expect_word("WEBHOOK")?;
        let webhook_url = self.string("the webhook URL as a 'string'")?;
        let secret_header = if self.word("WITH") {
            self.alert_settings()?
        } else {
            None
        };
        Ok(CreateAlert {
            name,
            event,
            target,
            webhook_url,
            secret_header,
            if_not_exists,
        })
    }

    /// `(secret_header = 'Header-Name', secret = secret_name)`: both or neither.
    fn alert_settings(&mut self) -> PResult<Option<SecretHeader>> {
        self.expect(Token::LParen)?;
        let mut header = None;
        let mut secret = None;
        loop {
            let setting = self.name("setting name")?;
            let _ = self.parser.consume_token(&Token::Eq);
            let (slot, value) = match setting.as_str() {
                "secret_header" => (&mut header, self.string("the header name as a 'string'")?),
                "secret" => {
                    // `secret = name`, or `secret = SECRET name` as in connection options.
                    let _ = self.word("SECRET");
                    (&mut secret, self.name("the name of a secret (CREATE SECRET)")?)
                }
                other => {
                    return Err(self.error(format!(
                        "unknown setting \"{other}\" in WITH (...); valid settings: secret_header, secret"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(self.error(format!("setting \"{setting}\" is given more than once")));
            }
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect(Token::RParen)?;
        match (header, secret) {
            (Some(header), Some(secret)) => Ok(Some(SecretHeader { header, secret })),
            (None, None) => Ok(None),
            _ => Err(self.error(
                "secret_header and secret go together: the header's name and the secret holding its value".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_catalog::{AlertEvent, SecretHeader};

    use crate::statements::SluiceStatement;
    use crate::statements::parse_sluice as parse;

    #[test]
    fn parses_the_alert_statements() {
        let SluiceStatement::CreateAlert(create) = parse(
            "CREATE ALERT IF NOT EXISTS pager ON JOB FAILURE FOR orders NOTIFY WEBHOOK 'https://hooks.example.com/x' \
             WITH (secret_header = 'X-Token', secret = hook_token)",
        )
        .unwrap() else {
            panic!("not CREATE ALERT")
        };
        assert_eq!(
            (
                create.name.as_str(),
                create.event,
                create.target.as_deref(),
                create.if_not_exists
            ),
            ("pager", AlertEvent::JobFailure, Some("orders"), true)
        );
        assert_eq!(
            create.secret_header,
            Some(SecretHeader {
                header: "X-Token".into(),
                secret: "hook_token".into()
            })
        );
        let SluiceStatement::CreateAlert(all) =
            parse("create alert down on connection failed notify webhook 'https://h/x'").unwrap()
        else {
            panic!("not CREATE ALERT")
        };
        assert_eq!(
            (all.event, all.target, all.secret_header),
            (AlertEvent::ConnectionFailed, None, None)
        );
        let SluiceStatement::CreateAlert(back) =
            parse("CREATE ALERT up ON CONNECTION RECOVERED FOR shop NOTIFY WEBHOOK 'https://h/x'").unwrap()
        else {
            panic!("not CREATE ALERT")
        };
        assert_eq!(
            (back.event, back.target.as_deref()),
            (AlertEvent::ConnectionRecovered, Some("shop"))
        );
        assert_eq!(
            parse("DROP ALERT IF EXISTS pager").unwrap(),
            SluiceStatement::DropAlert {
                name: "pager".into(),
                if_exists: true
            }
        );
        assert_eq!(parse("SHOW ALERTS").unwrap(), SluiceStatement::ShowAlerts);
    }

    #[test]
    fn names_what_is_wrong() {
        for (sql, expected) in [
            (
                "CREATE ALERT a ON JOB DONE NOTIFY WEBHOOK 'https://h/'",
                "expected JOB FAILURE",
            ),
            ("CREATE ALERT a ON JOB FAILURE NOTIFY EMAIL 'x'", "expected WEBHOOK"),
            (
                "CREATE ALERT a ON JOB FAILURE NOTIFY WEBHOOK 'https://h/' WITH (secret_header = 'X')",
                "go together",
            ),
            (
                "CREATE ALERT a ON JOB FAILURE NOTIFY WEBHOOK 'https://h/' WITH (color = 'red')",
                "unknown setting \"color\"",
            ),
        ] {
            let error = parse(sql).unwrap_err();
            assert!(error.message.contains(expected), "{sql}: {}", error.message);
        }
    }
}
