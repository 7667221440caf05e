//! One client's run-time parameters, as PostgreSQL keeps them: `SET`,
//! `SHOW`, `RESET`, `set_config()` and `current_setting()` read and write
//! this store, the start-up packet's parameters seed it, and the parameters
//! PostgreSQL reports (`GUC_REPORT`) go back to the client as
//! ParameterStatus messages whenever they change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pgwire::api::ClientInfo;
use pgwire::api::auth::ServerParameterProvider;

/// Where datafusion-postgres keeps a session's `statement_timeout` (in
/// milliseconds; absent means no timeout) in the client's metadata.
pub(crate) const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// The PostgreSQL release Sluice answers as (drivers parse it).
pub const PG_VERSION: &str = "16.6";
/// `server_version_num` of [`PG_VERSION`].
pub const PG_VERSION_NUM: &str = "160006";

/// `server_version`, as in the start-up ParameterStatus and `SHOW`.
pub fn server_version() -> String {
    format!("{PG_VERSION} (Sluice {})", env!("CARGO_PKG_VERSION"))
}

/// What `version()` returns, in PostgreSQL's form
/// (`PostgreSQL 16.6 (Sluice 0.1.0) on x86_64-pc-linux-gnu, ...`).
pub fn version_text() -> String {
    format!(
        "PostgreSQL {} on {}-pc-{}-gnu, compiled by rustc, 64-bit",
        server_version(),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// A bad `SET`, `RESET` or `SHOW`.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    InvalidValue {
        name: &'static str,
        value: String,
        hint: &'static str,
    },
    #[error("parameter \"{0}\" cannot be changed")]
    ReadOnly(&'static str),
}

impl SettingError {
    /// What to do instead.
    pub fn hint(&self) -> String {
        match self {
            SettingError::Unknown(_) => {
                "SHOW ALL lists the parameters Sluice keeps; custom ones need a dotted name (myapp.setting)".into()
            }
            SettingError::InvalidValue { hint, .. } => (*hint).into(),
            SettingError::ReadOnly(_) => "this parameter is fixed by the server".into(),
        }
    }
}

/// How a parameter's value is checked and normalised.
#[derive(Clone, Copy)]
enum Kind {
    /// Any text.
    Text,
    /// Fixed by the server.
    ReadOnly,
    /// Checked and normalised by the function.
    Checked(fn(&str) -> Option<String>, &'static str),
}

struct Parameter {
    /// The name as PostgreSQL spells it in SHOW and ParameterStatus.
    name: &'static str,
    default: &'static str,
    /// Sent to the client as ParameterStatus (PostgreSQL's GUC_REPORT).
    reported: bool,
    kind: Kind,
}

const fn param(name: &'static str, default: &'static str, reported: bool, kind: Kind) -> Parameter {
    Parameter {
        name,
        default,
        reported,
        kind,
    }
}

/// The parameters Sluice keeps. `server_version`, `session_authorization`,
/// `statement_timeout` and `scram_iterations` get their values per server
/// or per login in [`SessionSettings::new`].
const PARAMETERS: &[Parameter] = &[
    param("application_name", "", true, Kind::Text),
    param(
        "bytea_output",
        "hex",
        false,
        Kind::Checked(|v| one_of(v, &["hex", "escape"]), "use hex or escape"),
    ),
    param(
        "client_encoding",
        "UTF8",
        true,
        Kind::Checked(encoding, "Sluice sends and receives UTF8 only"),
    ),
    param("client_min_messages", "notice", false, Kind::Text),
    param(
        "DateStyle",
        "ISO, MDY",
        true,
        Kind::Checked(
            date_style,
            "use e.g. 'ISO, MDY' (ISO, SQL, Postgres or German; MDY, DMY or YMD)",
        ),
    ),
    param("default_table_access_method", "heap", false, Kind::ReadOnly),
    param(
        "default_transaction_isolation",
        "read committed",
        false,
        Kind::Checked(isolation, "Sluice runs every statement at read committed"),
    ),
    param("default_transaction_read_only", "off", true, Kind::ReadOnly),
    param(
        "extra_float_digits",
        "1",
        false,
        Kind::Checked(float_digits, "use an integer from -15 to 3"),
    ),
    param("idle_in_transaction_session_timeout", "0", false, Kind::Text),
    param("in_hot_standby", "off", true, Kind::ReadOnly),
    param("integer_datetimes", "on", true, Kind::ReadOnly),
    param(
        "IntervalStyle",
        "postgres",
        true,
        Kind::Checked(
            |v| one_of(v, &["postgres", "postgres_verbose", "sql_standard", "iso_8601"]),
            "use postgres, postgres_verbose, sql_standard or iso_8601",
        ),
    ),
    param("is_superuser", "on", true, Kind::ReadOnly),
    param("lc_collate", "C", false, Kind::ReadOnly),
    param("lc_ctype", "C", false, Kind::ReadOnly),
    param("lc_messages", "C", false, Kind::Text),
    param("lc_monetary", "C", false, Kind::Text),
    param("lc_numeric", "C", false, Kind::Text),
    param("lc_time", "C", false, Kind::Text),
    param("lock_timeout", "0", false, Kind::Text),
    param("max_identifier_length", "63", false, Kind::ReadOnly),
    param("scram_iterations", "4096", true, Kind::ReadOnly),
    param("search_path", "\"$user\", public", false, Kind::Text),
    param("server_encoding", "UTF8", true, Kind::ReadOnly),
    param("server_version", "", true, Kind::ReadOnly),
    param("server_version_num", PG_VERSION_NUM, false, Kind::ReadOnly),
    param("session_authorization", "", true, Kind::ReadOnly),
    param(
        "sluice.execution",
        "local",
        false,
        Kind::Checked(
            |v| one_of(v, &["local", "cluster"]),
            "use 'local' (queries run on this server) or 'cluster' (queries over warehouse tables run on the \
             server's cluster)",
        ),
    ),
    param(
        "standard_conforming_strings",
        "on",
        true,
        Kind::Checked(
            |v| one_of(v, &["on"]),
            "Sluice always treats backslashes in strings literally (standard_conforming_strings = on)",
        ),
    ),
    param(
        "statement_timeout",
        "0",
        false,
        Kind::Checked(
            timeout,
            "use milliseconds or a number with a unit: '500ms', '30s', '5min', '1h'; 0 turns it off",
        ),
    ),
    param(
        "TimeZone",
        "UTC",
        true,
        Kind::Checked(time_zone, "use a time zone name such as 'UTC' or 'Europe/Berlin'"),
    ),
    param(
        "transaction_isolation",
        "read committed",
        false,
        Kind::Checked(isolation, "Sluice runs every statement at read committed"),
    ),
    param("transaction_read_only", "off", false, Kind::ReadOnly),
];

fn lookup(name: &str) -> Option<&'static Parameter> {
    let name = match name.to_ascii_lowercase().as_str() {
        // SQL-standard spellings of the same parameters.
        "time zone" | "time_zone" => "timezone",
        "names" => "client_encoding",
        "transaction isolation level" => "transaction_isolation",
        other => return PARAMETERS.iter().find(|p| p.name.eq_ignore_ascii_case(other)),
    }
    .to_owned();
    PARAMETERS.iter().find(|p| p.name.eq_ignore_ascii_case(&name))
}

fn one_of(value: &str, allowed: &[&str]) -> Option<String> {
    let value = value.to_ascii_lowercase();
    allowed.contains(&value.as_str()).then_some(value)
}

fn encoding(value: &str) -> Option<String> {
    let normalised = value.to_ascii_uppercase().replace(['-', '_'], "");
    matches!(normalised.as_str(), "UTF8" | "UNICODE").then(|| "UTF8".to_owned())
}

fn isolation(value: &str) -> Option<String> {
    let value = value.to_ascii_lowercase().replace('_', " ");
    (value == "read committed").then_some(value)
}

fn float_digits(value: &str) -> Option<String> {
    let digits: i8 = value.trim().parse().ok()?;
    (-15..=3).contains(&digits).then(|| digits.to_string())
}

fn date_style(value: &str) -> Option<String> {
    let (mut style, mut order) = ("ISO", "MDY");
    for part in value.split(',').map(|p| p.trim().to_ascii_uppercase()) {
        match part.as_str() {
            "ISO" => style = "ISO",
            "SQL" => style = "SQL",
            "POSTGRES" => style = "Postgres",
            "GERMAN" => style = "German",
            "MDY" | "US" | "NONEURO" | "NONEUROPEAN" => order = "MDY",
            "DMY" | "EURO" | "EUROPEAN" => order = "DMY",
            "YMD" => order = "YMD",
            _ => return None,
        }
    }
    Some(format!("{style}, {order}"))
}

/// Time zone names Arrow's time-zone parser knows (IANA names), as results
/// are rendered through it. Offsets are refused: PostgreSQL reads `'+02:00'`
/// as a POSIX zone (two hours *west*), a trap better avoided. `UTC`, `GMT`
/// and `Z` spellings are normalised to `UTC`.
fn time_zone(value: &str) -> Option<String> {
    let value = value.trim();
    if ["utc", "gmt", "z", "etc/utc", "zulu", "universal"].contains(&value.to_ascii_lowercase().as_str()) {
        return Some("UTC".into());
    }
    if value.starts_with(|c: char| c == '+' || c == '-' || c.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<datafusion::arrow::array::timezone::Tz>()
        .ok()
        .map(|_| value.to_owned())
}

/// `statement_timeout` in milliseconds, from PostgreSQL's forms.
fn timeout_millis(value: &str) -> Option<u64> {
    let value = value.trim().to_ascii_lowercase();
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn timeout(value: &str) -> Option<String> {
    timeout_millis(value).map(show_duration)
}

/// A duration as PostgreSQL shows it: the largest unit that divides it.
fn show_duration(millis: u64) -> String {
    if millis == 0 {
        return "0".into();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1_000)] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// One session's parameters.
#[derive(Clone)]
struct Values {
    /// Current values, by lower-case name (known ones by their canonical
    /// name lower-cased; custom `a.b` names as given, lower-cased).
    current: BTreeMap<String, String>,
    /// The session's defaults (what RESET returns to).
    defaults: BTreeMap<String, String>,
    /// What the client was last told, for reported parameters.
    reported: BTreeMap<String, String>,
}

/// One client's settings, shared by its handlers and its SQL functions.
#[derive(Clone)]
pub struct SessionSettings {
    values: Arc<Mutex<Values>>,
}

/// The server-wide values that are not constants.
#[derive(Clone, Debug)]
pub struct ServerDefaults {
    pub statement_timeout: Option<Duration>,
    pub scram_iterations: usize,
}

impl SessionSettings {
    /// The settings of a session that logged in as `user` with the start-up
    /// packet's `startup` parameters: those Sluice keeps and accepts are
    /// applied, also from `options` (`-c name=value`, `--name=value`, as
    /// libpq's `PGOPTIONS` sends them); others are ignored.
    pub fn new(server: &ServerDefaults, user: &str, startup: &BTreeMap<String, String>) -> Self {
        let mut defaults = BTreeMap::new();
        for p in PARAMETERS {
            let value = match p.name {
                "server_version" => server_version(),
                "session_authorization" => user.to_owned(),
                "scram_iterations" => server.scram_iterations.to_string(),
                "statement_timeout" => show_duration(
                    server
                        .statement_timeout
                        .map(|t| t.as_millis() as u64)
                        .unwrap_or_default(),
                ),
                _ => p.default.to_owned(),
            };
            defaults.insert(p.name.to_ascii_lowercase(), value);
        }
        let from_options = startup
            .get("options")
            .map(String::as_str)
            .map(command_line_settings)
            .unwrap_or_default();
        let startup = startup.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let from_options = from_options.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        for (name, value) in startup.chain(from_options) {
            if let Some(p) = lookup(name)
                && !matches!(p.kind, Kind::ReadOnly)
                && let Ok(value) = check(p, value)
            {
                defaults.insert(p.name.to_ascii_lowercase(), value);
            }
        }
        let reported = PARAMETERS
            .iter()
            .filter(|p| p.reported)
            .map(|p| {
                let key = p.name.to_ascii_lowercase();
                let value = defaults[&key].clone();
                (key, value)
            })
            .collect();
        Self {
            values: Arc::new(Mutex::new(Values {
                current: defaults.clone(),
                defaults,
                reported,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Values> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `name` and the name as PostgreSQL spells it.
    pub fn get(&self, name: &str) -> Result<(String, String), SettingError> {
        let values = self.lock();
        match lookup(name) {
            Some(p) => Ok((p.name.to_owned(), values.current[&p.name.to_ascii_lowercase()].clone())),
            None => values
                .current
                .get(&name.to_ascii_lowercase())
                .map(|v| (name.to_ascii_lowercase(), v.clone()))
                .ok_or_else(|| SettingError::Unknown(name.to_owned())),
        }
    }

    /// Every known parameter and its value (SHOW ALL).
    pub fn all(&self) -> Vec<(String, String)> {
        let values = self.lock();
        let mut all: Vec<(String, String)> = PARAMETERS
            .iter()
            .map(|p| (p.name.to_owned(), values.current[&p.name.to_ascii_lowercase()].clone()))
            .collect();
        all.extend(
            values
                .current
                .iter()
                .filter(|(k, _)| k.contains('.'))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all
    }

    /// Sets `name`; `None` resets it to the session default. Returns the
    /// stored value.
    pub fn set(&self, name: &str, value: Option<&str>) -> Result<String, SettingError> {
        let mut values = self.lock();
        let Some(p) = lookup(name) else {
            // Custom (dotted) parameters may be set, as in PostgreSQL.
            if !name.contains('.') {
                return Err(SettingError::Unknown(name.to_owned()));
            }
            let key = name.to_ascii_lowercase();
            let value = value.unwrap_or_default().to_owned();
            values.current.insert(key, value.clone());
            return Ok(value);
        };
        let key = p.name.to_ascii_lowercase();
        let value = match value {
            None => values.defaults[&key].clone(),
            Some(_) if matches!(p.kind, Kind::ReadOnly) => return Err(SettingError::ReadOnly(p.name)),
            Some(v) => check(p, v)?,
        };
        values.current.insert(key, value.clone());
        Ok(value)
    }

    /// `RESET ALL`.
    pub fn reset_all(&self) {
        let mut values = self.lock();
        let mut current = values.defaults.clone();
        current.extend(
            values
                .current
                .iter()
                .filter(|(k, _)| k.contains('.'))
                .map(|(k, _)| (k.clone(), String::new())),
        );
        values.current = current;
    }

    /// Reported parameters whose value changed since the client was last
    /// told, as `(name, value)`; they count as told from now on.
    pub fn take_changed_reports(&self) -> Vec<(String, String)> {
        let mut values = self.lock();
        let mut changed = Vec::new();
        for p in PARAMETERS.iter().filter(|p| p.reported) {
            let key = p.name.to_ascii_lowercase();
            let now = values.current[&key].clone();
            if values.reported.get(&key) != Some(&now) {
                values.reported.insert(key, now.clone());
                changed.push((p.name.to_owned(), now));
            }
        }
        changed
    }

    /// The reported parameters with their current values (the start-up
    /// ParameterStatus messages).
    pub fn reports(&self) -> Vec<(String, String)> {
        let values = self.lock();
        PARAMETERS
            .iter()
            .filter(|p| p.reported)
            .map(|p| (p.name.to_owned(), values.current[&p.name.to_ascii_lowercase()].clone()))
            .collect()
    }

    /// The login name.
    pub fn user(&self) -> String {
        self.lock().current["session_authorization"].clone()
    }

    /// The schemas of `search_path`, unquoted, without `$user`.
    pub fn search_path(&self) -> Vec<String> {
        self.lock().current["search_path"]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .filter(|s| !s.is_empty() && s != "$user")
            .collect()
    }

    /// The session time zone, for rendering `timestamptz`.
    pub fn time_zone(&self) -> String {
        self.lock().current["timezone"].clone()
    }

    /// Copies the settings that datafusion-postgres and pgwire read from the
    /// client's metadata there: the statement timeout and value formatting.
    pub fn sync_metadata<C: ClientInfo + ?Sized>(&self, client: &mut C) {
        let values = self.lock().current.clone();
        let metadata = client.metadata_mut();
        match timeout_millis(&values["statement_timeout"]) {
            Some(0) | None => metadata.remove(STATEMENT_TIMEOUT_KEY),
            Some(millis) => metadata.insert(STATEMENT_TIMEOUT_KEY.into(), millis.to_string()),
        };
        for (key, metadata_key) in [
            ("datestyle", "datestyle"),
            ("intervalstyle", "intervalstyle"),
            ("bytea_output", "bytea_output"),
            ("extra_float_digits", "extra_float_digits"),
            ("timezone", "timezone"),
            ("application_name", "application_name"),
        ] {
            metadata.insert(metadata_key.into(), values[key].clone());
        }
    }
}

/// `name=value` pairs of a start-up `options` string:
/// `-c name=value` or `--name=value`, separated by spaces (`\ ` escapes one).
fn command_line_settings(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => words.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    words.push(word);
    let mut settings = Vec::new();
    let mut words = words.into_iter().filter(|w| !w.is_empty());
    while let Some(word) = words.next() {
        let setting = match word.strip_prefix("--") {
            Some(setting) => Some(setting.to_owned()),
            None if word == "-c" => words.next(),
            None => word.strip_prefix("-c").map(str::to_owned),
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            settings.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    settings
}

fn check(p: &Parameter, value: &str) -> Result<String, SettingError> {
    match p.kind {
        Kind::Text => Ok(value.to_owned()),
        Kind::ReadOnly => Err(SettingError::ReadOnly(p.name)),
        Kind::Checked(normalise, hint) => normalise(value).ok_or_else(|| SettingError::InvalidValue {
            name: p.name,
            value: value.to_owned(),
            hint,
        }),
    }
}

/// The start-up ParameterStatus messages: the reported parameters of the
/// new session, so they agree with what `SHOW` says later.
impl ServerParameterProvider for SessionSettings {
    fn server_parameters<C>(&self, _client: &C) -> Option<std::collections::HashMap<String, String>>
    where
        C: ClientInfo,
    {
        Some(self.reports().into_iter().collect())
    }
}

impl SessionSettings {
    /// Starts the session of `client`, which has just logged in: its
    /// login name and start-up packet give the session's defaults.
    pub fn start<C: ClientInfo + ?Sized>(&self, server: &ServerDefaults, client: &C) {
        let metadata = client.metadata();
        let user = metadata.get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
        let startup: BTreeMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let fresh = Self::new(server, &user, &startup);
        let values = fresh.lock().clone();
        *self.lock() = values;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SessionSettings {
        let server = ServerDefaults {
            statement_timeout: Some(Duration::from_secs(2)),
            scram_iterations: 4096,
        };
        let startup = BTreeMap::from([("application_name".to_owned(), "psql".to_owned())]);
        SessionSettings::new(&server, "admin", &startup)
    }

    #[test]
    fn values_are_checked_normalised_and_reset() {
        let s = settings();
        assert_eq!(s.get("statement_timeout").unwrap().1, "2s");
        assert_eq!(s.set("statement_timeout", Some("1500")).unwrap(), "1500ms");
        assert_eq!(s.set("STATEMENT_TIMEOUT", Some("120s")).unwrap(), "2min");
        assert_eq!(s.set("datestyle", Some("german")).unwrap(), "German, MDY");
        assert_eq!(s.set("time zone", Some("Europe/Berlin")).unwrap(), "Europe/Berlin");
        assert!(matches!(
            s.set("TimeZone", Some("Mars/Base")),
            Err(SettingError::InvalidValue { name: "TimeZone", .. })
        ));
        assert!(matches!(
            s.set("server_version", Some("1")),
            Err(SettingError::ReadOnly(_))
        ));
        assert!(matches!(s.set("no_such", Some("1")), Err(SettingError::Unknown(_))));
        assert_eq!(s.set("myapp.tenant", Some("7")).unwrap(), "7");
        assert_eq!(s.get("MyApp.Tenant").unwrap().1, "7");
        assert_eq!(s.set("statement_timeout", None).unwrap(), "2s");
        s.reset_all();
        assert_eq!(s.get("TimeZone").unwrap(), ("TimeZone".into(), "UTC".into()));
        assert_eq!(s.get("application_name").unwrap().1, "psql");
        assert_eq!(s.user(), "admin");
    }

    #[test]
    fn start_up_options_set_parameters() {
        let server = ServerDefaults {
            statement_timeout: None,
            scram_iterations: 4096,
        };
        let startup = BTreeMap::from([(
            "options".to_owned(),
            "-c statement_timeout=5s --TimeZone=Asia/Tokyo -capplication_name=a\\ b".to_owned(),
        )]);
        let s = SessionSettings::new(&server, "admin", &startup);
        assert_eq!(s.get("statement_timeout").unwrap().1, "5s");
        assert_eq!(s.time_zone(), "Asia/Tokyo");
        assert_eq!(s.get("application_name").unwrap().1, "a b");
    }

    #[test]
    fn only_changed_reported_parameters_are_reported() {
        let s = settings();
        assert!(s.take_changed_reports().is_empty());
        s.set("extra_float_digits", Some("3")).unwrap();
        s.set("TimeZone", Some("UTC")).unwrap();
        assert!(s.take_changed_reports().is_empty());
        s.set("timezone", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            s.take_changed_reports(),
            vec![("TimeZone".to_owned(), "Asia/Tokyo".to_owned())]
        );
        assert!(s.take_changed_reports().is_empty());
    }
}
