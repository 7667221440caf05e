//! Session-level advisory locks: `pg_advisory_lock`, `pg_try_advisory_lock`,
//! `pg_advisory_unlock` and `pg_advisory_unlock_all`, as migration tools
//! take them to keep two runs apart. A lock is held by one session at a
//! time, taken again by the same session it counts up (each take needs an
//! unlock), and every lock a session holds goes when it disconnects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{ScalarUDF, Signature, TypeSignature, Volatility};
use datafusion::prelude::SessionContext;

use crate::pg_functions::function;

/// A lock: one bigint, or two integers (a separate space, as in PostgreSQL).
type LockKey = (i64, Option<i64>);

/// The advisory locks of every session.
#[derive(Default)]
pub struct AdvisoryLocks {
    /// Key -> (holding session, times taken).
    held: Mutex<HashMap<LockKey, (u64, u32)>>,
    released: Condvar,
    next_session: AtomicU64,
}

impl AdvisoryLocks {
    fn held(&self) -> MutexGuard<'_, HashMap<LockKey, (u64, u32)>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new session's handle; its locks go when it is dropped.
    pub fn session(self: &Arc<Self>) -> SessionLocks {
        SessionLocks {
            locks: self.clone(),
            session: self.next_session.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn try_take(held: &mut HashMap<LockKey, (u64, u32)>, session: u64, key: LockKey) -> bool {
        match held.get_mut(&key) {
            Some((holder, count)) if *holder == session => {
                *count += 1;
                true
            }
            Some(_) => false,
            None => {
                held.insert(key, (session, 1));
                true
            }
        }
    }
}

/// One session's view of the advisory locks.
pub struct SessionLocks {
    locks: Arc<AdvisoryLocks>,
    session: u64,
}

impl SessionLocks {
    /// Takes `key` if free (or already this session's).
    pub fn try_lock(&self, key: LockKey) -> bool {
        AdvisoryLocks::try_take(&mut self.locks.held(), self.session, key)
    }

    /// Takes `key`, waiting until its holder releases it.
    pub fn lock(&self, key: LockKey) {
        let wait = || {
            let mut held = self.locks.held();
            while !AdvisoryLocks::try_take(&mut held, self.session, key) {
                held = self
                    .locks
                    .released
                    .wait(held)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        // Waiting blocks the thread: let the runtime move its other tasks.
        sluice_catalog::blocking(wait);
    }

    /// Releases one take of `key`; false (as in PostgreSQL, with nothing
    /// released) when this session does not hold it.
    pub fn unlock(&self, key: LockKey) -> bool {
        let mut held = self.locks.held();
        match held.get_mut(&key) {
            Some((holder, count)) if *holder == self.session => {
                *count -= 1;
                if *count == 0 {
                    held.remove(&key);
                    self.locks.released.notify_all();
                }
                true
            }
            _ => false,
        }
    }

    /// Releases every lock this session holds.
    pub fn unlock_all(&self) {
        self.locks.held().retain(|_, (holder, _)| *holder != self.session);
        self.locks.released.notify_all();
    }
}

impl Drop for SessionLocks {
    fn drop(&mut self) {
        self.unlock_all();
    }
}

/// The lock keys of the rows: one bigint, or two integers.
fn keys(args: &[ArrayRef]) -> Result<Vec<Option<LockKey>>> {
    let int64 = |array: &ArrayRef| -> Result<Int64Array> {
        let array = cast(array, &DataType::Int64)?;
        Ok(array
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64")
            .clone())
    };
    let first = int64(&args[0])?;
    Ok(match args.get(1) {
        None => first.iter().map(|key| Some((key?, None))).collect(),
        Some(second) => first
            .iter()
            .zip(int64(second)?.iter())
            .map(|(high, low)| Some((high?, Some(low?))))
            .collect(),
    })
}

fn key_signature() -> Signature {
    Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Volatile)
}

/// Registers the advisory lock functions of one session.
pub fn register(ctx: &SessionContext, locks: SessionLocks) {
    let locks = Arc::new(locks);
    let each = |name: &'static str, returns: DataType, act: fn(&SessionLocks, LockKey) -> Option<bool>| {
        let locks = locks.clone();
        function(name, key_signature(), returns.clone(), move |args, _rows| {
            let Some(keys) = keys(args)?.into_iter().collect::<Option<Vec<_>>>() else {
                return exec_err!("{name}: the lock key cannot be NULL");
            };
            let done: Vec<Option<bool>> = keys.into_iter().map(|key| act(&locks, key)).collect();
            Ok(match returns {
                DataType::Boolean => Arc::new(BooleanArray::from(done)) as ArrayRef,
                // void: an empty value, as psql shows PostgreSQL's.
                _ => Arc::new(StringArray::from(vec![Some(""); done.len()])) as ArrayRef,
            })
        })
    };
    let udfs: [ScalarUDF; 3] = [
        each("pg_advisory_lock", DataType::Utf8, |locks, key| {
            locks.lock(key);
            None
        }),
        each("pg_try_advisory_lock", DataType::Boolean, |locks, key| {
            Some(locks.try_lock(key))
        }),
        each("pg_advisory_unlock", DataType::Boolean, |locks, key| {
            Some(locks.unlock(key))
        }),
    ];
    for udf in udfs {
        ctx.register_udf(udf);
    }
    ctx.register_udf(function(
        "pg_advisory_unlock_all",
        Signature::nullary(Volatility::Volatile),
        DataType::Utf8,
        move |_, rows| {
            locks.unlock_all();
            Ok(Arc::new(StringArray::from(vec![Some(""); rows])) as ArrayRef)
        },
    ));
}
