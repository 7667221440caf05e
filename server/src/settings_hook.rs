//! `SET`, `SHOW` and `RESET` on the session's [`SessionSettings`], in both
//! query protocols. `SET datafusion.*` still goes to DataFusion's own
//! configuration (the SQL guard refuses `datafusion.runtime.*` first).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName, Reset, Set, Statement, TransactionMode, Value};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use futures::stream;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;

use crate::errors::StatementError;
use crate::names::DEFAULT_SCHEMA;
use crate::session_settings::{SessionSettings, SettingError};

/// The settings statements of one session.
pub struct SettingsHook {
    settings: SessionSettings,
}

impl SettingsHook {
    pub fn new(settings: SessionSettings) -> Self {
        Self { settings }
    }
}

/// What a settings statement does.
enum Action {
    Set(String, Option<String>),
    ResetAll,
    /// The name as written: `SHOW time zone` and `SHOW myapp.tenant` both
    /// parse as two words, so it is looked up spaced, then dotted.
    Show {
        spaced: String,
        dotted: String,
    },
    ShowAll,
    /// Accepted without effect (`SET TRANSACTION ISOLATION LEVEL READ COMMITTED`).
    Nothing(&'static str),
}

fn is_datafusion(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("datafusion.")
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(|i| i.value.clone())
                .unwrap_or_else(|| part.to_string())
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A SET value as text: `'a'`, `a`, `1`, `a, b` (lists, as `search_path`).
fn value_text(values: &[Expr]) -> Option<String> {
    if let [
        Expr::Identifier(Ident {
            value,
            quote_style: None,
            ..
        }),
    ] = values
        && value.eq_ignore_ascii_case("default")
    {
        return None;
    }
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(ident) => ident.value.clone(),
            Expr::UnaryOp { op, expr } => format!("{op}{expr}"),
            other => other.to_string(),
        })
        .collect();
    Some(parts.join(", "))
}

fn action(statement: &Statement) -> Option<Result<Action, StatementError>> {
    let action = match statement {
        Statement::Set(set) => match set {
            Set::SingleAssignment { variable, values, .. } => {
                let name = object_name(variable);
                if is_datafusion(&name) {
                    return None;
                }
                Action::Set(name, value_text(values))
            }
            Set::SetTimeZone { value, .. } => {
                let value = value_text(std::slice::from_ref(value)).filter(|v| !v.eq_ignore_ascii_case("local"));
                Action::Set("TimeZone".into(), value)
            }
            Set::SetNames { charset_name, .. } => {
                Action::Set("client_encoding".into(), Some(charset_name.value.clone()))
            }
            Set::SetNamesDefault {} => Action::Set("client_encoding".into(), None),
            Set::SetTransaction {
                modes, snapshot: None, ..
            } => {
                for mode in modes {
                    if let TransactionMode::IsolationLevel(level) = mode {
                        let level = level.to_string();
                        if !level.eq_ignore_ascii_case("read committed") {
                            return Some(Err(SettingError::InvalidValue {
                                name: "transaction_isolation",
                                value: level.to_ascii_lowercase(),
                                hint: "Sluice runs every statement at read committed",
                            }
                            .into()));
                        }
                    }
                }
                Action::Nothing("SET")
            }
            other => {
                return Some(Err(StatementError::Unsupported(format!(
                    "{} is not supported by Sluice",
                    other
                        .to_string()
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                ))));
            }
        },
        Statement::Reset(reset) => match &reset.reset {
            Reset::ALL => Action::ResetAll,
            Reset::ConfigurationParameter(name) => {
                let name = object_name(name);
                if is_datafusion(&name) {
                    return None;
                }
                Action::Set(name, None)
            }
        },
        Statement::ShowVariable { variable } => {
            let words: Vec<&str> = variable.iter().map(|i| i.value.as_str()).collect();
            let (spaced, dotted) = (words.join(" "), words.join("."));
            if is_datafusion(&dotted) {
                return None;
            }
            if spaced.eq_ignore_ascii_case("all") {
                Action::ShowAll
            } else {
                Action::Show { spaced, dotted }
            }
        }
        _ => return None,
    };
    Some(Ok(action))
}

fn text_fields(names: &[&str]) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        names
            .iter()
            .map(|n| FieldInfo::new((*n).into(), None, None, Type::TEXT, FieldFormat::Text))
            .collect(),
    )
}

fn rows_response(fields: Arc<Vec<FieldInfo>>, rows: Vec<Vec<String>>) -> PgWireResult<Response> {
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        let mut encoder = DataRowEncoder::new(fields.clone());
        for value in row {
            encoder.encode_field(&Some(value))?;
        }
        encoded.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(fields, stream::iter(encoded))))
}

impl SettingsHook {
    /// The shown name and value of `SHOW spaced` (or `dotted`).
    fn show(&self, spaced: &str, dotted: &str) -> Result<(String, String), SettingError> {
        self.settings.get(spaced).or_else(|_| self.settings.get(dotted))
    }

    async fn run(&self, action: Action, ctx: &SessionContext, client: &mut dyn HookClient) -> PgWireResult<Response> {
        let response = match action {
            Action::Set(name, value) => {
                let tag = if value.is_some() { "SET" } else { "RESET" };
                self.settings.set(&name, value.as_deref()).map_err(error)?;
                Response::Execution(Tag::new(tag))
            }
            Action::ResetAll => {
                self.settings.reset_all();
                Response::Execution(Tag::new("RESET"))
            }
            Action::Nothing(tag) => Response::Execution(Tag::new(tag)),
            Action::Show { spaced, dotted } => {
                let (shown, value) = self.show(&spaced, &dotted).map_err(error)?;
                return rows_response(text_fields(&[&shown]), vec![vec![value]]);
            }
            Action::ShowAll => {
                let rows = self.settings.all().into_iter().map(|(n, v)| vec![n, v]).collect();
                return rows_response(text_fields(&["name", "setting"]), rows);
            }
        };
        self.settings.sync_metadata(client);
        apply_to_context(&self.settings, ctx);
        report_changes(&self.settings, client).await?;
        Ok(response)
    }
}

/// Gives the session's DataFusion context the settings planning depends on:
/// `TimeZone` (for `now()`, casts and how `timestamptz` results are shown)
/// and the first schema of `search_path` that exists, where unqualified
/// table names resolve.
pub fn apply_to_context(settings: &SessionSettings, ctx: &SessionContext) {
    let database = ctx
        .state_ref()
        .read()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let schemas = ctx
        .catalog(&database)
        .map(|catalog| catalog.schema_names())
        .unwrap_or_default();
    let default_schema = settings
        .search_path()
        .into_iter()
        .find(|s| schemas.contains(s))
        .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    options.execution.time_zone = Some(settings.time_zone());
    options.catalog.default_schema = default_schema;
}

/// Sends ParameterStatus for every reported parameter that changed.
pub async fn report_changes(settings: &SessionSettings, client: &mut dyn HookClient) -> PgWireResult<()> {
    for (name, value) in settings.take_changed_reports() {
        client
            .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value)))
            .await?;
    }
    Ok(())
}

fn error(e: SettingError) -> PgWireError {
    PgWireError::UserError(Box::new(StatementError::from(e).into_error_info(0)))
}

fn empty_plan(fields: Vec<Field>) -> PgWireResult<LogicalPlan> {
    let schema = DFSchema::try_from(Schema::new(fields)).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: true,
        schema: Arc::new(schema),
    }))
}

#[async_trait]
impl QueryHook for SettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match action(statement)? {
            Ok(action) => Some(self.run(action, ctx, client).await),
            Err(e) => Some(Err(PgWireError::UserError(Box::new(e.into_error_info(0))))),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let plan = match action(statement)? {
            Err(e) => return Some(Err(PgWireError::UserError(Box::new(e.into_error_info(0))))),
            Ok(Action::Show { spaced, dotted }) => {
                let shown = self.show(&spaced, &dotted).map(|(n, _)| n).unwrap_or(dotted);
                empty_plan(vec![Field::new(shown, DataType::Utf8, false)])
            }
            Ok(Action::ShowAll) => empty_plan(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("setting", DataType::Utf8, false),
            ]),
            Ok(_) => empty_plan(vec![]),
        };
        Some(plan)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.handle_simple_query(statement, ctx, client).await
    }
}
