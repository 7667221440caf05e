//! Parsing Sluice statements with sqlparser's `Parser` primitives.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::Ident;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_catalog::{OptionValue, SecretValue};

use super::ast::SluiceStatement;

/// A syntax error in a Sluice statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    /// 1-based character position in the statement, when known.
    pub position: Option<usize>,
    pub kind: ParseErrorKind,
}

/// What is wrong with a statement that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    Syntax,
    /// A number too large for its place.
    NumberOutOfRange,
    /// A number of days that leaves the range of dates.
    DatetimeOutOfRange,
}

/// Parses `sql` if it is a Sluice statement: `None` when its leading words
/// are not Sluice's (plain SQL, for DataFusion), else the statement or why
/// it does not parse. The one place that decides what is Sluice's.
pub fn parse(sql: &str) -> Option<Result<SluiceStatement, ParseError>> {
    // What sqlparser cannot tokenize is not Sluice's; DataFusion says why.
    let parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?;
    let mut p = StatementParser { parser, sql };
    let statement = match p.statement() {
        Ok(Some(statement)) => statement,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let _ = p.parser.consume_token(&Token::SemiColon);
    Some(match p.parser.peek_token().token {
        Token::EOF => Ok(statement),
        other => Err(p.error(format!("unexpected {other} after the end of the statement"))),
    })
}

/// For tests: parses what must be a Sluice statement.
#[cfg(test)]
pub(crate) fn parse_sluice(sql: &str) -> Result<SluiceStatement, ParseError> {
    parse(sql).unwrap_or_else(|| panic!("not a Sluice statement: {sql}"))
}

pub(super) struct StatementParser<'a> {
    pub(super) parser: Parser<'a>,
    sql: &'a str,
}

pub(super) type PResult<T> = std::result::Result<T, ParseError>;

impl StatementParser<'_> {
    /// The statement, or `None` when the leading words are not a Sluice
    /// statement's (what was consumed then does not matter).
    fn statement(&mut self) -> PResult<Option<SluiceStatement>> {
        if let Some(statement) = self.fleet_statement()? {
            return Ok(Some(statement));
        }
        if let Some(statement) = self.alert_statement()? {
            return Ok(Some(statement));
        }
        if let Some(statement) = self.role_statement()? {
            return Ok(Some(statement));
        }
        if let Some(statement) = self.database_statement()? {
            return Ok(Some(statement));
        }
        Ok(Some(if self.word("CREATE") {
            let or_replace = self.words(&["OR", "REPLACE"]);
            if self.word("SECRET") {
                self.create_secret(or_replace)?
            } else if self.words(&["ETL", "JOB"]) {
                self.create_job(or_replace)?
            } else if self.word("CONNECTION") {
                self.create_connection(or_replace)?
            } else {
                return Ok(None);
            }
        } else if self.word("DROP") {
            if self.words(&["ETL", "JOB"]) {
                self.drop_job()?
            } else if self.word("SECRET") {
                let if_exists = self.words(&["IF", "EXISTS"]);
                SluiceStatement::DropSecret {
                    name: self.name("secret name")?,
                    if_exists,
                }
            } else if self.word("CONNECTION") {
                self.drop_connection()?
            } else {
                return Ok(None);
            }
        } else if self.word("ALTER") {
            if self.word("SECRET") {
                let name = self.name("secret name")?;
                self.expect_word("AS")?;
                let value = SecretValue::new(self.string("the secret value as a string literal")?);
                SluiceStatement::AlterSecret { name, value }
            } else if self.words(&["ETL", "JOB"]) {
                self.alter_job()?
            } else if self.word("CONNECTION") {
                self.alter_connection()?
            } else {
                return Ok(None);
            }
        } else if self.words(&["RUN", "ETL", "JOB"]) {
            let name = self.name("job name")?;
            let asynchronous = self.word("ASYNC");
            SluiceStatement::RunJob { name, asynchronous }
        } else if self.words(&["EXPLAIN", "ETL", "JOB"]) {
            SluiceStatement::ExplainJob {
                name: self.name("job name")?,
            }
        } else if self.words(&["VERIFY", "ETL", "JOB"]) {
            self.verify_job()?
        } else if self.words(&["REPAIR", "ETL", "JOB"]) {
            let name = self.name("job name")?;
            self.expect_word("FROM")?;
            let from = self.string("the window's first cursor value as a 'string'")?;
            self.expect_word("TO")?;
            let to = self.string("the cursor value that ends the window as a 'string'")?;
            SluiceStatement::RepairJob { name, from, to }
        } else if self.words(&["RESYNC", "ETL", "JOB"]) {
            SluiceStatement::ResyncJob {
                name: self.name("job name")?,
            }
        } else if self.words(&["CANCEL", "ETL", "RUN"]) {
            SluiceStatement::CancelRun {
                run_id: self.whole_number("a run id")?.into(),
            }
        } else if self.words(&["CANCEL", "ETL", "JOB"]) {
            SluiceStatement::CancelJob {
                name: self.name("job name")?,
            }
        } else if self.words(&["VALIDATE", "CONNECTION"]) || self.words(&["TEST", "CONNECTION"]) {
            SluiceStatement::TestConnection {
                name: self.name("connection name")?,
            }
        } else if self.words(&["TEST", "CONNECTIONS"]) {
            SluiceStatement::TestConnections
        } else if (self.word("DESCRIBE") || self.word("DESC")) && self.three_part_name_ends() {
            let connection = self.name("connection name")?;
            self.expect(Token::Period)?;
            let schema = self.name("schema name")?;
            self.expect(Token::Period)?;
            let table = self.name("table name")?;
            let settings = if self.word("WITH") {
                self.option_list()?
            } else {
                BTreeMap::new()
            };
            SluiceStatement::DescribeSourceTable {
                connection,
                schema,
                table,
                settings,
            }
        } else if self.word("SHOW") {
            return self.show();
        } else {
            return Ok(None);
        }))
    }

    /// After `DESCRIBE`: `a.b.c` and the end (or `WITH (...)`) follow. A
    /// source table has three parts; shorter names are DataFusion tables and
    /// stay with it.
    fn three_part_name_ends(&self) -> bool {
        let token = |i| self.parser.peek_nth_token_ref(i).token.clone();
        matches!(
            (token(0), token(1), token(2), token(3), token(4)),
            (
                Token::Word(_),
                Token::Period,
                Token::Word(_),
                Token::Period,
                Token::Word(_)
            )
        ) && (5..)
            .map(token)
            .find(|t| *t != Token::SemiColon)
            .is_some_and(|t| t == Token::EOF || matches!(&t, Token::Word(w) if w.value.eq_ignore_ascii_case("WITH")))
    }

    /// After `DROP ETL JOB`.
    fn drop_job(&mut self) -> PResult<SluiceStatement> {
        let if_exists = self.words(&["IF", "EXISTS"]);
        let name = self.name("job name")?;
        // The data stays unless `WITH DATA` says otherwise; `KEEP DATA` says
        // it explicitly.
        let keep_data = !self.words(&["WITH", "DATA"]);
        if keep_data {
            self.words(&["KEEP", "DATA"]);
        }
        let force = self.words(&["FORCE"]);
        Ok(SluiceStatement::DropJob {
            name,
            if_exists,
            keep_data,
            force,
        })
    }

    /// After `DROP CONNECTION`.
    fn drop_connection(&mut self) -> PResult<SluiceStatement> {
        let if_exists = self.words(&["IF", "EXISTS"]);
        let name = self.name("connection name")?;
        let cascade = if self.word("CASCADE") {
            true
        } else {
            self.word("RESTRICT");
            false
        };
        Ok(SluiceStatement::DropConnection {
            name,
            if_exists,
            cascade,
        })
    }

    /// After `SHOW`: Sluice's `SHOW ...`, or `None` for a setting's.
    fn show(&mut self) -> PResult<Option<SluiceStatement>> {
        Ok(Some(if self.words(&["ETL", "JOBS"]) {
            SluiceStatement::ShowJobs
        } else if self.words(&["ETL", "RUNS"]) {
            let job = if self.word("FOR") {
                Some(self.name("job name")?)
            } else {
                None
            };
            SluiceStatement::ShowRuns { job }
        } else if self.words(&["CREATE", "ETL"]) {
            self.expect_word("JOB")?;
            SluiceStatement::ShowCreateJob {
                name: self.name("job name")?,
            }
        } else if self.words(&["CREATE", "CONNECTION"]) {
            SluiceStatement::ShowCreateConnection {
                name: self.name("connection name")?,
            }
        } else if self.words(&["SCHEMAS", "FROM"]) {
            SluiceStatement::ShowSchemas {
                connection: self.name("connection name")?,
            }
        } else if self.words(&["TABLES", "FROM"]) {
            let connection = self.name("connection name")?;
            let schema = if self.parser.consume_token(&Token::Period) {
                Some(self.name("schema name")?)
            } else {
                None
            };
            SluiceStatement::ShowTables { connection, schema }
        } else if self.word("SECRETS") {
            SluiceStatement::ShowSecrets
        } else if self.word("CONNECTIONS") {
            SluiceStatement::ShowConnections
        } else if self.word("CONNECTION") {
            self.expect_word("TYPES")?;
            SluiceStatement::ShowConnectionTypes
        } else {
            return Ok(None);
        }))
    }

    /// `IF NOT EXISTS`, refused after `OR REPLACE`.
    pub(super) fn if_not_exists(&mut self, or_replace: bool) -> PResult<bool> {
        let if_not_exists = self.words(&["IF", "NOT", "EXISTS"]);
        if if_not_exists && or_replace {
            return Err(self.error("OR REPLACE and IF NOT EXISTS cannot be combined".into()));
        }
        Ok(if_not_exists)
    }

    fn create_secret(&mut self, or_replace: bool) -> PResult<SluiceStatement> {
        let if_not_exists = self.if_not_exists(or_replace)?;
        let name = self.name("secret name")?;
        if name.contains('/') {
            return Err(self.error(format!(
                "secret name \"{name}\" contains '/', which is reserved for the inline secrets of connections"
            )));
        }
        if self.word("FROM") {
            return Ok(SluiceStatement::CreateSecretFrom {
                name,
                external: self.external_secret()?,
                if_not_exists,
                or_replace,
            });
        }
        self.expect_word("AS")?;
        let value = self.string("the secret value as a string literal")?;
        Ok(SluiceStatement::CreateSecret {
            name,
            value: SecretValue::new(value),
            if_not_exists,
            or_replace,
        })
    }

    fn create_connection(&mut self, or_replace: bool) -> PResult<SluiceStatement> {
        let if_not_exists = self.if_not_exists(or_replace)?;
        let name = self.name("connection name")?;
        self.expect_word("TYPE")?;
        let type_name = self.name("connection type")?;
        let options = if self.word("OPTIONS") {
            self.option_list()?
        } else {
            BTreeMap::new()
        };
        let validate = self.with_clause()?;
        Ok(SluiceStatement::CreateConnection {
            name,
            type_name,
            options,
            if_not_exists,
            or_replace,
            validate,
        })
    }

    fn alter_connection(&mut self) -> PResult<SluiceStatement> {
        let name = self.name("connection name")?;
        let mut set = BTreeMap::new();
        let mut reset = Vec::new();
        loop {
            // `SET (...)` or, as CREATE writes it, `SET OPTIONS (...)`.
            if self.word("SET") {
                let _ = self.word("OPTIONS");
                set.extend(self.option_list()?);
            } else if self.word("RESET") {
                let _ = self.word("OPTIONS");
                self.expect(Token::LParen)?;
                reset.extend(self.comma_separated(|p| p.name("option name"))?);
                self.expect(Token::RParen)?;
            } else {
                break;
            }
        }
        if set.is_empty() && reset.is_empty() {
            return Err(self.error("expected SET (option value, ...) or RESET (option, ...)".into()));
        }
        let validate = self.with_clause()?;
        Ok(SluiceStatement::AlterConnection {
            name,
            set,
            reset,
            validate,
        })
    }

    /// `( name value, ... )`; a value is a string, a number, TRUE/FALSE or
    /// `SECRET name`.
    fn option_list(&mut self) -> PResult<BTreeMap<String, OptionValue>> {
        self.expect(Token::LParen)?;
        let pairs = self.comma_separated(|p| {
            let name = p.name("option name")?;
            // `key 'value'` (SQL/MED style) and `key = 'value'` alike.
            let _ = p.parser.consume_token(&Token::Eq);
            Ok((name, p.option_value()?))
        })?;
        self.expect(Token::RParen)?;
        let mut options = BTreeMap::new();
        for (name, value) in pairs {
            if options.insert(name.clone(), value).is_some() {
                return Err(self.error(format!("option \"{name}\" is given more than once")));
            }
        }
        Ok(options)
    }

    pub(super) fn option_value(&mut self) -> PResult<OptionValue> {
        if self.word("SECRET") {
            return Ok(OptionValue::Secret {
                name: self.name("secret name")?,
                owned: false,
            });
        }
        if self.word("TRUE") {
            return Ok(OptionValue::Bool(true));
        }
        if self.word("FALSE") {
            return Ok(OptionValue::Bool(false));
        }
        let negative = self.parser.consume_token(&Token::Minus);
        let token = self.parser.peek_token();
        match token.token {
            Token::Number(text, _) => {
                self.parser.next_token();
                let text = if negative { format!("-{text}") } else { text };
                text.parse().map(OptionValue::Integer).map_err(|_| {
                    self.error(format!(
                        "option values must be whole numbers, strings or booleans, found {text}"
                    ))
                })
            }
            Token::SingleQuotedString(_) | Token::DollarQuotedString(_) | Token::EscapedStringLiteral(_)
                if !negative =>
            {
                Ok(OptionValue::Text(self.string("an option value")?))
            }
            other => Err(self.error(format!(
                "expected an option value (a 'string', a number, TRUE/FALSE or SECRET name), found {other}"
            ))),
        }
    }

    /// `WITH (validate = false)`: returns whether to test live.
    fn with_clause(&mut self) -> PResult<bool> {
        let mut validate = true;
        if !self.word("WITH") {
            return Ok(validate);
        }
        self.expect(Token::LParen)?;
        let settings = self.comma_separated(|p| {
            let name = p.name("setting name")?;
            let _ = p.parser.consume_token(&Token::Eq);
            Ok((name, p.option_value()?))
        })?;
        self.expect(Token::RParen)?;
        for (name, value) in settings {
            match (name.as_str(), value) {
                ("validate", OptionValue::Bool(b)) => validate = b,
                ("validate", other) => {
                    return Err(self.error(format!("validate must be true or false, found {other}")));
                }
                (other, _) => {
                    return Err(self.error(format!(
                        "unknown setting \"{other}\" in WITH (...); valid settings: validate"
                    )));
                }
            }
        }
        Ok(validate)
    }

    // ----- primitives -----

    /// Consumes `word` (case-insensitive, unquoted) when it comes next.
    pub(super) fn word(&mut self, word: &str) -> bool {
        match &self.parser.peek_token_ref().token {
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
                self.parser.next_token();
                true
            }
            _ => false,
        }
    }

    /// Consumes all of `words` in order, or none of them.
    pub(super) fn words(&mut self, words: &[&str]) -> bool {
        let all_match = words.iter().enumerate().all(|(i, word)| {
            matches!(&self.parser.peek_nth_token(i).token,
                Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
        });
        if all_match {
            for _ in words {
                self.parser.next_token();
            }
        }
        all_match
    }

    pub(super) fn expect_word(&mut self, word: &str) -> PResult<()> {
        if self.word(word) {
            Ok(())
        } else {
            let found = self.parser.peek_token().token;
            Err(self.error(format!("expected {word}, found {}", describe(&found))))
        }
    }

    pub(super) fn expect(&mut self, token: Token) -> PResult<()> {
        if self.parser.consume_token(&token) {
            Ok(())
        } else {
            let found = self.parser.peek_token().token;
            Err(self.error(format!("expected {token}, found {}", describe(&found))))
        }
    }

    /// An identifier, folded to lower case unless quoted.
    pub(super) fn name(&mut self, what: &str) -> PResult<String> {
        if !matches!(self.parser.peek_token_ref().token, Token::Word(_)) {
            let found = self.parser.peek_token().token;
            return Err(self.error(format!("expected {what}, found {}", describe(&found))));
        }
        let ident: Ident = self.parser.parse_identifier().map_err(|e| self.parser_error(e))?;
        Ok(match ident.quote_style {
            Some(_) => ident.value,
            None => ident.value.to_lowercase(),
        })
    }

    pub(super) fn string(&mut self, what: &str) -> PResult<String> {
        match self.parser.peek_token().token {
            Token::SingleQuotedString(_) | Token::DollarQuotedString(_) | Token::EscapedStringLiteral(_) => {
                self.parser.parse_literal_string().map_err(|e| self.parser_error(e))
            }
            other => Err(self.error(format!("expected {what}, found {}", describe(&other)))),
        }
    }

    pub(super) fn comma_separated<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.parser.consume_token(&Token::Comma) {
            items.push(item(self)?);
        }
        Ok(items)
    }

    /// An error at the next token's position.
    pub(super) fn error(&self, message: String) -> ParseError {
        let location = self.parser.peek_token_ref().span.start;
        // The end of input has no location: point just past the statement.
        let position = Some(if location.line > 0 {
            char_position(self.sql, location.line, location.column)
        } else {
            self.sql.trim_end().chars().count() + 1
        });
        ParseError {
            message: format!("syntax error: {message}"),
            position,
            kind: ParseErrorKind::Syntax,
        }
    }

    /// An error of `kind` other than syntax, at the next token's position.
    pub(super) fn out_of_range(&self, kind: ParseErrorKind, message: String) -> ParseError {
        ParseError {
            message,
            kind,
            ..self.error(String::new())
        }
    }

    pub(super) fn parser_error(&self, e: ParserError) -> ParseError {
        self.error(e.to_string().trim_start_matches("sql parser error: ").to_owned())
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::EOF => "end of statement".into(),
        other => format!("\"{other}\""),
    }
}

/// 1-based character position of a line/column location in `sql`.
fn char_position(sql: &str, line: u64, column: u64) -> usize {
    let before: usize = sql
        .split('\n')
        .take(line.saturating_sub(1) as usize)
        .map(|l| l.chars().count() + 1)
        .sum();
    before + column as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{parse as recognise, parse_sluice as parse};

    fn text(s: &str) -> OptionValue {
        OptionValue::Text(s.into())
    }

    #[test]
    fn recognises_sluice_statements_only() {
        for sql in [
            "create secret a as 'x'",
            "  -- hi\n SHOW CONNECTION TYPES",
            "test connections",
            "Show Create Connection x",
            "describe c.s.t ;",
            "SHOW CREATE ETL x",
            "show schemas from c",
        ] {
            assert!(recognise(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SHOW search_path",
            "CREATE TABLE t (a int)",
            "SHOW \"connections\"",
            "drop table secret",
            "DESCRIBE s.t",
            "DESCRIBE c.s.t extra",
            "SHOW SCHEMAS",
            "SHOW TABLES",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "CREATE OR REPLACE ETL JOBS x",
            "SELECT 'unterminated",
        ] {
            assert!(recognise(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn parses_drop_etl_job_with_its_data_and_force() {
        let drop = |sql: &str| match parse(sql).unwrap() {
            SluiceStatement::DropJob {
                name,
                if_exists,
                keep_data,
                force,
            } => (name, if_exists, keep_data, force),
            other => panic!("{other:?}"),
        };
        assert_eq!(drop("DROP ETL JOB j"), ("j".into(), false, true, false));
        assert_eq!(
            drop("drop etl job if exists j with data force"),
            ("j".into(), true, false, true)
        );
        assert_eq!(drop("DROP ETL JOB j KEEP DATA FORCE;"), ("j".into(), false, true, true));
        assert!(parse("DROP ETL JOB j FORCE WITH DATA").is_err(), "FORCE comes last");
    }

    #[test]
    fn parses_create_connection_with_every_value_kind() {
        let statement = parse(
            "CREATE CONNECTION IF NOT EXISTS \"Shop DB\" TYPE Postgres OPTIONS (host 'db', port 5432, \
             password SECRET pg_pass, sslmode 'require', compress true) WITH (validate = false);",
        )
        .unwrap();
        let SluiceStatement::CreateConnection {
            name,
            type_name,
            options,
            if_not_exists,
            validate,
            ..
        } = statement
        else {
            panic!("wrong statement");
        };
        assert_eq!(
            (name.as_str(), type_name.as_str(), if_not_exists, validate),
            ("Shop DB", "postgres", true, false)
        );
        assert_eq!(options["host"], text("db"));
        assert_eq!(options["port"], OptionValue::Integer(5432));
        assert_eq!(
            options["password"],
            OptionValue::Secret {
                name: "pg_pass".into(),
                owned: false
            }
        );
        assert_eq!(options["compress"], OptionValue::Bool(true));
    }

    #[test]
    fn parses_the_other_statements() {
        assert_eq!(
            parse("create secret IF NOT EXISTS pw as 'it''s'").unwrap(),
            SluiceStatement::CreateSecret {
                name: "pw".into(),
                value: SecretValue::new("it's"),
                if_not_exists: true,
                or_replace: false
            }
        );
        assert_eq!(
            parse("CREATE OR REPLACE SECRET pw AS 'x'").unwrap(),
            SluiceStatement::CreateSecret {
                name: "pw".into(),
                value: SecretValue::new("x"),
                if_not_exists: false,
                or_replace: true
            }
        );
        assert!(recognise("create or replace etl job j from c.s.t snapshot").is_some());
        assert!(matches!(
            parse("CREATE OR REPLACE ETL JOB j FROM c.s.t SNAPSHOT").unwrap(),
            SluiceStatement::CreateOrReplaceJob(_)
        ));
        let err = parse("CREATE OR REPLACE CONNECTION IF NOT EXISTS c TYPE postgres").unwrap_err();
        assert!(err.message.contains("cannot be combined"), "{}", err.message);
        assert_eq!(
            parse("DROP CONNECTION IF EXISTS shop CASCADE").unwrap(),
            SluiceStatement::DropConnection {
                name: "shop".into(),
                if_exists: true,
                cascade: true
            }
        );
        assert_eq!(
            parse("ALTER CONNECTION shop SET (host 'db2') RESET (sslmode)").unwrap(),
            SluiceStatement::AlterConnection {
                name: "shop".into(),
                set: BTreeMap::from([("host".into(), text("db2"))]),
                reset: vec!["sslmode".into()],
                validate: true,
            }
        );
        assert_eq!(parse("TEST CONNECTIONS").unwrap(), SluiceStatement::TestConnections);
        assert_eq!(
            parse("show connection types").unwrap(),
            SluiceStatement::ShowConnectionTypes
        );
        assert_eq!(
            parse("SHOW CREATE CONNECTION \"select\"").unwrap(),
            SluiceStatement::ShowCreateConnection { name: "select".into() }
        );
    }

    #[test]
    fn equals_signs_are_optional_in_options() {
        assert_eq!(
            parse("CREATE CONNECTION shop TYPE postgres OPTIONS (host = 'x', port 5)").unwrap(),
            parse("CREATE CONNECTION shop TYPE postgres OPTIONS (host 'x', port = 5)").unwrap()
        );
    }

    #[test]
    fn syntax_errors_carry_the_position() {
        // `host = 'x'` is valid too (see `equals_signs_are_optional_in_options`).
        let err = parse("CREATE CONNECTION shop TYPE postgres OPTIONS (host @ 'x')").unwrap_err();
        assert_eq!(err.position, Some(52), "{err:?}");
        assert!(err.message.contains("option value"), "{err:?}");
        let err = parse("CREATE CONNECTION shop\n  OPTIONS (host 'x')").unwrap_err();
        assert_eq!(err.position, Some(26), "{err:?}");
        assert!(err.message.contains("expected TYPE"), "{err:?}");
        let err = parse("SHOW CONNECTIONS extra").unwrap_err();
        assert!(err.message.contains("after the end"), "{err:?}");
        let err = parse("CREATE CONNECTION c TYPE postgres OPTIONS (host 'a', host 'b')").unwrap_err();
        assert!(err.message.contains("more than once"), "{err:?}");
        let err = parse("CREATE CONNECTION c TYPE postgres OPTIONS (port 1.5)").unwrap_err();
        assert!(err.message.contains("whole numbers"), "{err:?}");
    }

    #[test]
    fn describe_takes_source_settings() {
        let sql = "DESCRIBE c.s.t WITH (sample = 5, keep_document true, on_type_mismatch = 'null')";
        assert!(crate::statements::parse(sql).is_some());
        assert!(crate::statements::parse("DESCRIBE t WITH (sample = 5)").is_none());
        assert_eq!(
            parse(sql).unwrap(),
            SluiceStatement::DescribeSourceTable {
                connection: "c".into(),
                schema: "s".into(),
                table: "t".into(),
                settings: BTreeMap::from([
                    ("sample".to_owned(), OptionValue::Integer(5)),
                    ("keep_document".to_owned(), OptionValue::Bool(true)),
                    ("on_type_mismatch".to_owned(), OptionValue::Text("null".into())),
                ]),
            }
        );
    }
}
