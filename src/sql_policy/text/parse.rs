//! The one guarded parser for user SQL: every surface (`beacon.query`, materialized views,
//! continuous queries, subscription filters) reads text only through it, within the limits
//! its surface gives.

use super::super::Refusal;
use sqlparser::ast::{Expr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use std::fmt;

static DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

/// How much text a surface reads, and how deep the tree it builds may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How refusals name the text ("query", "filter").
    pub what: &'static str,
    /// Longer texts are refused before they are even tokenized.
    pub max_bytes: usize,
    /// Upper bound on how deep the syntax tree may get, estimated from the tokens before
    /// parsing (see [`nesting_cost`]). sqlparser builds `a + b + c ...`, `x::t::t ...` and
    /// `UNION` chains in loops, without touching its recursion limit, yet dropping,
    /// printing or walking the resulting left-deep tree recurses once per operator: 30,000
    /// `+1` fit in the size limit and overflow the stack. The estimate has to be checked
    /// before parsing, because the parser itself drops what it built when it fails.
    pub max_nesting_cost: usize,
    /// sqlparser's own limit on how deeply it recurses (its default is 50).
    pub recursion_limit: usize,
    /// The levels of nesting a refusal promises.
    pub levels: usize,
}

impl Limits {
    /// `beacon.query`, materialized views and continuous queries: about 95 levels of
    /// parentheses or 48 of nested subqueries.
    pub const QUERY: Limits = Limits {
        what: "query",
        max_bytes: 100_000,
        max_nesting_cost: 1_000,
        recursion_limit: 100,
        levels: 100,
    };

    /// Subscription filters, pasted into every inserting session's trigger: 8 KiB, 64
    /// levels (128 for the parser, so that the filter's own walk names the limit for all
    /// but absurd input).
    pub const FILTER: Limits = Limits {
        what: "filter",
        max_bytes: 8192,
        max_nesting_cost: 8192,
        recursion_limit: 128,
        levels: 64,
    };

    /// For reading back what the renderer printed from a tree these limits let through:
    /// the text may be longer (qualified names, quotes, parentheses around operands), the
    /// tree is the same, so only the parser's recursion stays bounded.
    pub(crate) fn rendered(self) -> Limits {
        Limits {
            max_bytes: usize::MAX,
            max_nesting_cost: usize::MAX,
            recursion_limit: 2 * self.recursion_limit,
            ..self
        }
    }

    pub fn too_deep(&self) -> Refusal {
        Refusal::limit(format!(
            "the {} is nested too deeply or chains too many operators (at most about {} \
             levels of nesting and {} chained operators)",
            self.what, self.levels, self.max_nesting_cost
        ))
    }

    fn parse_error(&self, error: impl fmt::Display) -> Refusal {
        Refusal::syntax(shortened(
            format!("could not parse the {}: {error}", self.what),
            300,
        ))
    }

    fn parser_error(&self, error: ParserError) -> Refusal {
        match error {
            ParserError::RecursionLimitExceeded => self.too_deep(),
            other => self.parse_error(other),
        }
    }
}

/// Cuts what a refusal quotes of the text, which may be 100 kB long.
pub fn shortened(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// A bounded excerpt of what a refusal names.
pub fn excerpt(shown: &impl fmt::Display) -> String {
    shortened(shown.to_string(), 80)
}

#[derive(Default)]
struct Frame {
    /// Operator-like tokens since the last comma at this level.
    segment: usize,
    /// The deepest group opened in the current segment.
    child: usize,
    /// The deepest segment seen at this level.
    best: usize,
    /// UNION/INTERSECT/EXCEPT at this level: their chains span commas.
    set_operations: usize,
}

impl Frame {
    fn close_segment(&mut self) {
        self.best = self.best.max(self.segment + self.child);
        self.segment = 0;
        self.child = 0;
    }

    fn cost(mut self) -> usize {
        self.close_segment();
        self.best + self.set_operations + 1
    }
}

/// Upper bound on the depth of the syntax tree the tokens can parse into.
///
/// Each level a tree gains needs at least one keyword, symbol or opening bracket;
/// identifiers and literals never nest. An operator chain cannot cross a comma at its own
/// bracket level, except a chain of set operations, which is counted separately. So the
/// depth is at most, along the deepest path of brackets, the sum of each level's counted
/// tokens between commas plus its set operations.
pub(crate) fn nesting_cost(tokens: &[TokenWithSpan]) -> usize {
    let mut frames = vec![Frame::default()];
    let close = |frames: &mut Vec<Frame>| {
        let cost = frames.pop().map(Frame::cost).unwrap_or_default();
        if let Some(top) = frames.last_mut() {
            top.child = top.child.max(cost);
        }
    };
    for token in tokens {
        let Some(top) = frames.last_mut() else {
            break;
        };
        match &token.token {
            Token::Whitespace(_)
            | Token::EOF
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            Token::Word(word) if word.keyword == Keyword::NoKeyword => {}
            Token::Word(word)
                if matches!(
                    word.keyword,
                    Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS
                ) =>
            {
                top.set_operations += 1;
            }
            Token::Comma => top.close_segment(),
            Token::LParen | Token::LBracket => {
                top.segment += 1;
                frames.push(Frame::default());
            }
            Token::RParen | Token::RBracket => {
                if frames.len() > 1 {
                    close(&mut frames);
                }
            }
            _ => top.segment += 1,
        }
    }
    while frames.len() > 1 {
        close(&mut frames);
    }
    frames.pop().map(Frame::cost).unwrap_or_default()
}

/// Refuses what has to be caught on the tokens: `U&` escapes, which sqlparser does not
/// decode the way PostgreSQL does, and trees too deep to handle safely.
fn check_tokens(tokens: &[TokenWithSpan], limits: &Limits) -> Result<(), Refusal> {
    for (i, token) in tokens.iter().enumerate() {
        match &token.token {
            Token::UnicodeStringLiteral(_) => {
                return Err(Refusal::object("U&'...' string literals are not allowed"));
            }
            Token::Ampersand if i > 0 => {
                let after_u = matches!(
                    &tokens[i - 1].token,
                    Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u")
                );
                let before_quoted = matches!(
                    tokens.get(i + 1).map(|t| &t.token),
                    Some(Token::Word(w)) if w.quote_style.is_some()
                );
                if after_u && before_quoted {
                    return Err(Refusal::object("U&\"...\" identifiers are not allowed"));
                }
            }
            _ => {}
        }
    }
    if nesting_cost(tokens) > limits.max_nesting_cost {
        return Err(limits.too_deep());
    }
    Ok(())
}

/// The tokens of `sql`, within the limits.
fn tokens(sql: &str, limits: &Limits) -> Result<Vec<TokenWithSpan>, Refusal> {
    if sql.len() > limits.max_bytes {
        return Err(Refusal::limit(format!(
            "the {} is too long ({} bytes; at most {})",
            limits.what,
            sql.len(),
            limits.max_bytes
        )));
    }
    if sql.contains('\0') {
        return Err(Refusal::object(format!(
            "the {} contains a NUL character",
            limits.what
        )));
    }
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| limits.parse_error(e))?;
    check_tokens(&tokens, limits)?;
    Ok(tokens)
}

fn parser(tokens: Vec<TokenWithSpan>, limits: &Limits) -> Parser<'static> {
    Parser::new(&DIALECT)
        .with_recursion_limit(limits.recursion_limit)
        .with_tokens_with_locations(tokens)
}

/// Parses `sql` into statements.
pub fn statements(sql: &str, limits: &Limits) -> Result<Vec<Statement>, Refusal> {
    parser(tokens(sql, limits)?, limits)
        .parse_statements()
        .map_err(|e| limits.parser_error(e))
}

/// Parses `sql` as exactly one expression; `None` when there is nothing but white space
/// and comments.
pub fn expression(sql: &str, limits: &Limits) -> Result<Option<Expr>, Refusal> {
    let mut parser = parser(tokens(sql, limits)?, limits);
    if parser.peek_token().token == Token::EOF {
        return Ok(None);
    }
    let expr = parser.parse_expr().map_err(|e| limits.parser_error(e))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        let rest = text_from(sql, next.span.start)
            .map(|rest| rest.trim_end().to_string())
            .unwrap_or_else(|| next.token.to_string());
        return Err(Refusal::syntax(format!(
            "unexpected text after the {}: {}",
            limits.what,
            excerpt(&rest)
        )));
    }
    Ok(Some(expr))
}

/// The source text from `location` on, so a refusal can quote what follows the
/// expression as the user wrote it.
fn text_from(source: &str, location: Location) -> Option<&str> {
    let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
    let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
    let line_start = match line {
        0 => 0,
        n => source.match_indices('\n').nth(n - 1)?.0 + 1,
    };
    let (offset, _) = source[line_start..].char_indices().nth(column)?;
    Some(&source[line_start + offset..])
}

#[cfg(test)]
mod tests;
