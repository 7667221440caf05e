//! How a file connection's CSV files are written: the connection options
//! `header`, `delimiter`, `quote` and `escape`, checked before the
//! connection is saved and handed to DataFusion's CSV reader.

use datafusion::datasource::file_format::csv::CsvFormat;

use crate::contract::{
    OptionKind::{Bool, Text},
    OptionSpec, ResolvedOptions,
};

/// The option `header`.
pub(crate) const HEADER: OptionSpec = OptionSpec::optional(
    "header",
    Bool,
    "whether CSV files start with a header row naming the columns (default: true); without one the columns are \
     column_1, column_2, ...",
);

/// The option `delimiter`.
pub(crate) const DELIMITER: OptionSpec = OptionSpec::optional(
    "delimiter",
    Text,
    "the one character between the fields of CSV files (default: ','); '\\t' for a tab",
);

/// The option `quote`.
pub(crate) const QUOTE: OptionSpec = OptionSpec::optional(
    "quote",
    Text,
    "the one character quoting CSV fields (default: '\"'); a quote inside a quoted field is doubled",
);

/// The option `escape`.
pub(crate) const ESCAPE: OptionSpec = OptionSpec::optional(
    "escape",
    Text,
    "the one character escaping a quote inside a quoted CSV field, such as '\\' (default: none, the quote is \
     doubled)",
);

/// The CSV syntax of a connection's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CsvSyntax {
    header: bool,
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
}

impl Default for CsvSyntax {
    /// A header row, `,` between fields, `"` quotes, no escape.
    fn default() -> Self {
        Self {
            header: true,
            delimiter: b',',
            quote: b'"',
            escape: None,
        }
    }
}

impl CsvSyntax {
    /// The connection's CSV options, or why they cannot be used (naming
    /// the option).
    pub(crate) fn from_options(options: &ResolvedOptions) -> Result<Self, String> {
        let default = Self::default();
        let char_of = |spec: &OptionSpec| options.text(spec.name).map(|v| one_character(spec.name, v)).transpose();
        let syntax = Self {
            header: options.boolean(HEADER.name).unwrap_or(default.header),
            delimiter: char_of(&DELIMITER)?.unwrap_or(default.delimiter),
            quote: char_of(&QUOTE)?.unwrap_or(default.quote),
            escape: char_of(&ESCAPE)?,
        };
        syntax.check()?;
        Ok(syntax)
    }

    /// Refuses characters that would make fields ambiguous.
    fn check(&self) -> Result<(), String> {
        let clash = |a: &str, b: &str, c: u8| {
            Err(format!(
                "options \"{a}\" and \"{b}\" are both '{}': CSV needs different characters for them",
                char::from(c)
            ))
        };
        if self.delimiter == self.quote {
            return clash(DELIMITER.name, QUOTE.name, self.quote);
        }
        match self.escape {
            Some(e) if e == self.delimiter => clash(DELIMITER.name, ESCAPE.name, e),
            _ => Ok(()),
        }
    }

    /// DataFusion's reader of files in this syntax.
    pub(super) fn format(&self) -> CsvFormat {
        CsvFormat::default()
            .with_has_header(self.header)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote)
            .with_escape(self.escape)
    }
}

/// `value` as the one ASCII character option `name` must be (`\t` is a
/// tab), or why it is not.
fn one_character(name: &str, value: &str) -> Result<u8, String> {
    let byte = match value.as_bytes() {
        b"\\t" => b'\t',
        [byte] if byte.is_ascii() && *byte != b'\n' && *byte != b'\r' => *byte,
        _ => {
            return Err(format!(
                "invalid value for option \"{name}\": '{value}' is not one character; give one ASCII character \
                 other than a line break, such as ';' (or '\\t' for a tab)"
            ));
        }
    };
    Ok(byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_one_ascii_character() {
        assert_eq!(one_character("delimiter", ";"), Ok(b';'));
        assert_eq!(one_character("delimiter", "\\t"), Ok(b'\t'));
        for bad in ["", ";;", "é", "\n"] {
            let message = one_character("delimiter", bad).unwrap_err();
            assert!(message.contains("\"delimiter\""), "{message}");
        }
    }

    #[test]
    fn a_delimiter_cannot_be_the_quote() {
        let syntax = CsvSyntax {
            delimiter: b'"',
            ..CsvSyntax::default()
        };
        let message = syntax.check().unwrap_err();
        assert!(message.contains("\"delimiter\" and \"quote\""), "{message}");
    }
}
