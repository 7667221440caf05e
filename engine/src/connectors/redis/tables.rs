//! The `tables` option: `'users=user:*, carts=cart:*'`, each table a name
//! and the key pattern (`SCAN ... MATCH`) of its keys.

/// One table of a Redis connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PatternTable {
    pub(super) name: String,
    pub(super) pattern: String,
}

/// The tables the option lists, or what is wrong with it.
pub(super) fn parse(option: &str) -> Result<Vec<PatternTable>, String> {
    let mut tables: Vec<PatternTable> = Vec::new();
    for entry in option.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, pattern)) = entry.split_once('=') else {
            return Err(format!(
                "tables entry \"{entry}\" is not name=pattern (e.g. tables 'users=user:*, carts=cart:*')"
            ));
        };
        let (name, pattern) = (name.trim(), pattern.trim());
        if name.is_empty() || pattern.is_empty() {
            return Err(format!(
                "tables entry \"{entry}\" needs both a table name and a key pattern"
            ));
        }
        if tables.iter().any(|t| t.name == name) {
            return Err(format!("tables names \"{name}\" twice"));
        }
        tables.push(PatternTable {
            name: name.to_owned(),
            pattern: pattern.to_owned(),
        });
    }
    if tables.is_empty() {
        return Err("tables lists no table; write e.g. tables 'users=user:*, carts=cart:*'".into());
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        assert_eq!(
            parse(" users=user:* , carts = cart:{eu}:* ,").unwrap(),
            vec![
                PatternTable {
                    name: "users".into(),
                    pattern: "user:*".into()
                },
                PatternTable {
                    name: "carts".into(),
                    pattern: "cart:{eu}:*".into()
                },
            ]
        );
        assert!(parse("users").unwrap_err().contains("not name=pattern"));
        assert!(parse("a=x, a=y").unwrap_err().contains("twice"));
        assert!(parse("=x").unwrap_err().contains("needs both"));
        assert!(parse(" , ").unwrap_err().contains("no table"));
    }
}
