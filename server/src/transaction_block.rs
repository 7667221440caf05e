//! BEGIN ... COMMIT: one session's transaction block.
//!
//! Inside a block, Sluice statements run in the block's catalog
//! [`Transaction`]: their catalog changes are staged and written in one
//! batch at COMMIT, or discarded at ROLLBACK. A failing statement fails the
//! block: everything but COMMIT and ROLLBACK is refused (`25P02`) and COMMIT
//! rolls back, as in PostgreSQL; a COMMIT that fails (`40001`) ends the
//! block too. Savepoints mark points of the staged changes that `ROLLBACK
//! TO SAVEPOINT` returns to, which also makes a failed block work again.
//! The block follows the transaction status
//! pgwire reports to the client, which it changes from the responses:
//! `TransactionStart`, `TransactionEnd`, and any error.

use std::sync::{Mutex, MutexGuard};

use datafusion::sql::sqlparser::ast::{Ident, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::results::{Response, Tag};
use pgwire::error::ErrorInfo;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use sluice_catalog::{Effect, Transaction};
use tracing::warn;

use crate::errors::StatementError;
use crate::namespace::Namespace;

/// A transaction control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `BEGIN`, `START TRANSACTION`
    Begin,
    /// `COMMIT`, `END`
    Commit,
    /// `ROLLBACK`, `ABORT` (not `ROLLBACK TO SAVEPOINT`)
    Rollback,
    /// `SAVEPOINT name`
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`
    RollbackTo(String),
}

/// The leading words of transaction control statements.
const CONTROL_WORDS: [&str; 8] = [
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
];

/// Recognises a transaction control statement.
pub fn control(sql: &str) -> Option<Control> {
    let first = sql.split_whitespace().next()?.trim_end_matches(';');
    if !CONTROL_WORDS.iter().any(|word| first.eq_ignore_ascii_case(word)) {
        return None;
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    match statements.as_slice() {
        [Statement::StartTransaction { .. }] => Some(Control::Begin),
        [Statement::Commit { .. }] => Some(Control::Commit),
        [Statement::Rollback { savepoint: None, .. }] => Some(Control::Rollback),
        [
            Statement::Rollback {
                savepoint: Some(name), ..
            },
        ] => Some(Control::RollbackTo(savepoint_name(name))),
        [Statement::Savepoint { name }] => Some(Control::Savepoint(savepoint_name(name))),
        [Statement::ReleaseSavepoint { name }] => Some(Control::Release(savepoint_name(name))),
        _ => None,
    }
}

/// A savepoint's name, folded to lower case unless quoted.
fn savepoint_name(name: &Ident) -> String {
    match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_lowercase(),
    }
}

#[derive(Default)]
enum State {
    #[default]
    Idle,
    Open(Transaction),
    /// A statement failed; the transaction is kept for its rollback effects.
    Failed(Transaction),
}

/// One session's transaction block.
#[derive(Default)]
pub struct Block {
    state: Mutex<State>,
}

impl Block {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follows the status pgwire tracks: an error reported outside the
    /// statements (a bad Bind, say) fails an open block too.
    pub fn follow(&self, status: TransactionStatus) {
        if status == TransactionStatus::Error {
            self.fail();
        }
    }

    /// A statement of the block failed.
    pub fn fail(&self) {
        let mut state = self.state();
        *state = match std::mem::take(&mut *state) {
            State::Open(txn) => State::Failed(txn),
            other => other,
        };
    }

    /// The open block's transaction, to run a statement in.
    pub fn current(&self) -> Option<Transaction> {
        match &*self.state() {
            State::Open(txn) => Some(txn.clone()),
            _ => None,
        }
    }

    /// Whether no block is open: after a control statement that failed,
    /// the block ended (a COMMIT that could not commit).
    pub fn is_idle(&self) -> bool {
        matches!(&*self.state(), State::Idle)
    }

    /// Whether a statement of the block failed.
    pub fn is_failed(&self) -> bool {
        matches!(&*self.state(), State::Failed(_))
    }

    /// Refuses `statement` inside a block: it starts or stops work outside
    /// the catalog that a ROLLBACK could not take back.
    pub fn check_allowed(&self, statement: Option<&'static str>) -> Result<(), StatementError> {
        match statement {
            Some(name) if !matches!(&*self.state(), State::Idle) => Err(StatementError::InTransactionBlock(name)),
            _ => Ok(()),
        }
    }

    /// Runs a transaction control statement.
    pub async fn run(
        &self,
        control: Control,
        namespace: &Namespace,
        client: &mut dyn HookClient,
    ) -> Result<Response, StatementError> {
        let previous = std::mem::take(&mut *self.state());
        match (control, previous) {
            (Control::Begin, State::Idle) => {
                *self.state() = State::Open(Transaction::new());
                Ok(Response::TransactionStart(Tag::new("BEGIN")))
            }
            (Control::Begin, open @ State::Open(_)) => {
                *self.state() = open;
                warn_client(client, "25001", "there is already a transaction in progress").await;
                Ok(Response::Execution(Tag::new("BEGIN")))
            }
            (Control::Begin, failed @ State::Failed(_)) => {
                *self.state() = failed;
                Err(StatementError::TransactionAborted)
            }
            (Control::Commit, State::Open(txn)) => match namespace.catalog.commit(&txn) {
                Ok(effects) => {
                    run_effects(effects).await;
                    // The scheduler sees committed jobs only.
                    namespace.jobs.notify_changed();
                    Ok(Response::TransactionEnd(Tag::new("COMMIT")))
                }
                Err(e) => {
                    // As in PostgreSQL, a COMMIT that fails ends the
                    // transaction: the block is idle again (the handler
                    // tells pgwire, see `is_idle`).
                    run_effects(txn.rollback()).await;
                    Err(e.into())
                }
            },
            (Control::Commit | Control::Rollback, State::Failed(txn)) | (Control::Rollback, State::Open(txn)) => {
                run_effects(txn.rollback()).await;
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
            (Control::Savepoint(name), State::Open(txn)) => {
                txn.savepoint(&name);
                *self.state() = State::Open(txn);
                Ok(Response::Execution(Tag::new("SAVEPOINT")))
            }
            (Control::Release(name), State::Open(txn)) => {
                let released = txn.release(&name);
                *self.state() = State::Open(txn);
                match released {
                    true => Ok(Response::Execution(Tag::new("RELEASE"))),
                    false => Err(StatementError::NoSuchSavepoint(name)),
                }
            }
            (Control::RollbackTo(name), State::Open(txn) | State::Failed(txn)) => match txn.rollback_to(&name) {
                // The block works again, as in PostgreSQL.
                Some(effects) => {
                    *self.state() = State::Open(txn);
                    run_effects(effects).await;
                    Ok(Response::TransactionStart(Tag::new("ROLLBACK")))
                }
                None => {
                    *self.state() = State::Failed(txn);
                    Err(StatementError::NoSuchSavepoint(name))
                }
            },
            (Control::Savepoint(_) | Control::Release(_), failed @ State::Failed(_)) => {
                *self.state() = failed;
                Err(StatementError::TransactionAborted)
            }
            (Control::Savepoint(_), State::Idle) => Err(StatementError::OutsideTransactionBlock("SAVEPOINT")),
            (Control::Release(_), State::Idle) => Err(StatementError::OutsideTransactionBlock("RELEASE SAVEPOINT")),
            (Control::RollbackTo(_), State::Idle) => {
                Err(StatementError::OutsideTransactionBlock("ROLLBACK TO SAVEPOINT"))
            }
            (Control::Commit, State::Idle) => {
                warn_client(client, "25P01", "there is no transaction in progress").await;
                Ok(Response::TransactionEnd(Tag::new("COMMIT")))
            }
            (Control::Rollback, State::Idle) => {
                warn_client(client, "25P01", "there is no transaction in progress").await;
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
        }
    }
}

impl Drop for Block {
    /// A client that disconnects inside a block rolls it back.
    fn drop(&mut self) {
        let (State::Open(txn) | State::Failed(txn)) = std::mem::take(&mut *self.state()) else {
            return;
        };
        let effects = txn.rollback();
        if effects.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(run_effects(effects));
            }
            Err(_) => warn!("a transaction's rollback could not clean up: no runtime"),
        }
    }
}

async fn run_effects(effects: Vec<Effect>) {
    for effect in effects {
        effect.await;
    }
}

async fn warn_client(client: &mut dyn HookClient, code: &str, message: &str) {
    let warning = ErrorInfo::new("WARNING".into(), code.into(), message.into());
    // A client that went away cannot be told.
    let _ = client
        .send_message(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(warning)))
        .await;
}
