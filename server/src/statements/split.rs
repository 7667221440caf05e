//! Splitting a simple-query string into statements at top-level semicolons,
//! using sqlparser's tokenizer so that semicolons inside strings, quoted
//! identifiers and comments do not count.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// One statement of a query string and where it starts in that string.
#[derive(Debug, PartialEq, Eq)]
pub struct StatementText<'a> {
    pub text: &'a str,
    /// Character offset of `text` in the whole query string.
    pub char_offset: usize,
}

/// Splits `query` into non-empty statements. When the query cannot be
/// tokenized (an unterminated string, say) it is returned whole, so that the
/// SQL parser reports the error with its position.
pub fn split_statements(query: &str) -> Vec<StatementText<'_>> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, query).tokenize_with_location() else {
        return vec![StatementText {
            text: query,
            char_offset: 0,
        }];
    };
    let line_starts = line_starts(query);
    let mut pieces = Vec::new();
    let mut start = 0;
    for token in tokens {
        if token.token == Token::SemiColon {
            let location = token.span.start;
            let end = byte_offset(query, &line_starts, location.line, location.column);
            pieces.push((start, end));
            start = end + 1;
        }
    }
    pieces.push((start, query.len()));
    pieces
        .into_iter()
        .filter(|(s, e)| !query[*s..*e].trim().is_empty())
        .map(|(s, e)| {
            let leading = query[s..e].len() - query[s..e].trim_start().len();
            let begin = s + leading;
            StatementText {
                text: query[begin..e].trim_end(),
                char_offset: query[..begin].chars().count(),
            }
        })
        .collect()
}

fn line_starts(query: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(query.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Converts a 1-based line and character column to a byte offset.
fn byte_offset(query: &str, line_starts: &[usize], line: u64, column: u64) -> usize {
    let line_start = line_starts[(line as usize).saturating_sub(1).min(line_starts.len() - 1)];
    query[line_start..]
        .char_indices()
        .nth((column as usize).saturating_sub(1))
        .map_or(query.len(), |(i, _)| line_start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(query: &str) -> Vec<&str> {
        split_statements(query).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(
            texts("CREATE SECRET a AS 'x;y';\n-- c; d\nSELECT \"se;mi\" FROM t; ; SHOW CONNECTIONS"),
            vec![
                "CREATE SECRET a AS 'x;y'",
                "-- c; d\nSELECT \"se;mi\" FROM t",
                "SHOW CONNECTIONS"
            ]
        );
    }

    #[test]
    fn reports_character_offsets_across_lines_and_unicode() {
        let pieces = split_statements("SELECT 'żółw';\n  SHOW SECRETS;");
        assert_eq!(pieces[1].text, "SHOW SECRETS");
        assert_eq!(pieces[1].char_offset, 17);
    }

    #[test]
    fn returns_untokenizable_queries_whole() {
        assert_eq!(texts("SELECT 'open"), vec!["SELECT 'open"]);
    }
}
