use super::*;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, ObjectName, TimezoneInfo, TypedString, UnaryOperator,
};

/// Reads one string literal starting at `chars[i]` (`'...'` or `E'...'`) as PostgreSQL's
/// lexer does with the given standard_conforming_strings; returns the value and the index
/// after the literal.
fn read_string(chars: &[char], mut i: usize, standard: bool) -> Option<(String, usize)> {
    let escapes = if matches!(chars.get(i), Some('E' | 'e')) {
        i += 1;
        true
    } else {
        !standard
    };
    if chars.get(i) != Some(&'\'') {
        return None;
    }
    i += 1;
    let mut value = String::new();
    loop {
        match *chars.get(i)? {
            '\'' if chars.get(i + 1) == Some(&'\'') => {
                value.push('\'');
                i += 2;
            }
            '\'' => return Some((value, i + 1)),
            '\\' if escapes => {
                let next = *chars.get(i + 1)?;
                i += 2;
                match next {
                    'b' => value.push('\u{8}'),
                    'f' => value.push('\u{c}'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    // octal, hex and unicode escapes: the renderer never writes them, and
                    // reading them as something else than the value would fail the test
                    '0'..='7' | 'x' | 'u' | 'U' => return None,
                    other => value.push(other),
                }
            }
            other => {
                value.push(other);
                i += 1;
            }
        }
    }
}

/// The value of `literal` if it is exactly one string literal, read with the given
/// standard_conforming_strings.
pub(crate) fn read_literal(literal: &str, standard: bool) -> Option<String> {
    let chars: Vec<char> = literal.chars().collect();
    match read_string(&chars, 0, standard)? {
        (value, end) if end == chars.len() => Some(value),
        _ => None,
    }
}

/// The string literals and quoted identifiers of `sql`, as PostgreSQL's lexer reads them
/// with the given standard_conforming_strings, or where a comment starts (which the
/// renderer must never print outside a literal).
pub(crate) fn lexemes(sql: &str, standard: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let in_word = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let starts_word = i == 0 || !in_word(chars[i - 1]);
        if (c == '-' && next == Some('-')) || (c == '/' && next == Some('*')) {
            return Err(format!("a comment starts at {i} in {sql}"));
        }
        if c == '"' {
            let mut name = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("an identifier is not closed in {sql}")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        name.push('"');
                        i += 2;
                    }
                    Some('"') => break,
                    Some(&other) => {
                        name.push(other);
                        i += 1;
                    }
                }
            }
            found.push(format!("\"{name}"));
            i += 1;
        } else if c == '\'' || (matches!(c, 'E' | 'e') && next == Some('\'') && starts_word) {
            let (value, end) = read_string(&chars, i, standard)
                .ok_or_else(|| format!("a literal at {i} is not closed in {sql}"))?;
            found.push(format!("'{value}"));
            i = end;
        } else if c == '$' && starts_word {
            return Err(format!("a dollar quote or parameter at {i} in {sql}"));
        } else {
            i += 1;
        }
    }
    Ok(found)
}

/// A small xorshift generator: the property test is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces strings and quoted identifiers are made of: everything that ends, escapes or
/// comments in some reading of SQL text.
const PIECES: &[&str] = &[
    "a", "Z", " ", "'", "''", "\\", "\\\\", "\\'", "$", "$$", "$q$", "$1", "--", "/*", "*/", "\"",
    ";", "\n", "\t", "é", "ß", "€", "😀", "𝄞", "\u{202e}", "E'", "U&", "x'", "%", "_",
];

fn text(rng: &mut Rng) -> String {
    (0..rng.below(6)).map(|_| *rng.pick(PIECES)).collect()
}

fn string(rng: &mut Rng) -> Expr {
    Expr::value(Value::SingleQuotedString(text(rng)))
}

fn ident(rng: &mut Rng) -> Ident {
    if rng.below(2) == 0 {
        Ident::new(*rng.pick(&["price", "name", "_time", "x1", "été"]))
    } else {
        let name = format!("c{}", text(rng));
        Ident::with_quote('"', name)
    }
}

fn number(rng: &mut Rng) -> Expr {
    let written = *rng.pick(&[
        "0",
        "1",
        "42",
        "3.5",
        ".5",
        "1e10",
        "2.5E-3",
        "100000000000",
    ]);
    Expr::value(Value::Number(written.to_string(), false))
}

fn data_type(rng: &mut Rng) -> DataType {
    match rng.below(6) {
        0 => DataType::Integer(None),
        1 => DataType::Text,
        2 => DataType::Date,
        3 => DataType::Timestamp(None, TimezoneInfo::WithTimeZone),
        4 => DataType::Custom(
            ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new("jsonb")]),
            vec![],
        ),
        _ => DataType::Numeric(sqlparser::ast::ExactNumberInfo::None),
    }
}

fn nested(expr: Expr) -> Box<Expr> {
    Box::new(Expr::Nested(Box::new(expr)))
}

/// A random tree in the shape the parser itself builds: every compound operand is
/// parenthesized, so that the tree says what it means without precedence rules.
fn tree(rng: &mut Rng, depth: usize) -> Expr {
    let leaf = depth == 0 || rng.below(4) == 0;
    if leaf {
        return match rng.below(8) {
            0..=2 => string(rng),
            3 => number(rng),
            4 => Expr::Identifier(ident(rng)),
            5 => Expr::value(Value::Boolean(rng.below(2) == 0)),
            6 => Expr::TypedString(TypedString {
                data_type: rng.pick(&[DataType::Date, DataType::Text]).clone(),
                value: Value::SingleQuotedString(text(rng)).into(),
                uses_odbc_syntax: false,
            }),
            _ => Expr::Interval(sqlparser::ast::Interval {
                value: Box::new(string(rng)),
                leading_field: None,
                leading_precision: None,
                last_field: None,
                fractional_seconds_precision: None,
            }),
        };
    }
    let depth = depth - 1;
    let ops = [
        BinaryOperator::Plus,
        BinaryOperator::Minus,
        BinaryOperator::Multiply,
        BinaryOperator::Eq,
        BinaryOperator::Lt,
        BinaryOperator::And,
        BinaryOperator::Or,
        BinaryOperator::StringConcat,
    ];
    match rng.below(9) {
        0 | 1 => Expr::BinaryOp {
            left: nested(tree(rng, depth)),
            op: rng.pick(&ops).clone(),
            right: nested(tree(rng, depth)),
        },
        2 => Expr::UnaryOp {
            op: *rng.pick(&[
                UnaryOperator::Minus,
                UnaryOperator::Plus,
                UnaryOperator::Not,
            ]),
            expr: nested(tree(rng, depth)),
        },
        3 => Expr::Cast {
            kind: rng.pick(&[CastKind::Cast, CastKind::DoubleColon]).clone(),
            expr: nested(tree(rng, depth)),
            data_type: data_type(rng),
            format: None,
        },
        4 => crate::sql_policy::text::walk::catalog_call("lower", vec![tree(rng, depth)]),
        5 => Expr::InList {
            expr: nested(tree(rng, depth)),
            list: (0..1 + rng.below(3)).map(|_| tree(rng, depth)).collect(),
            negated: rng.below(2) == 0,
        },
        6 => Expr::Like {
            negated: rng.below(2) == 0,
            any: false,
            expr: nested(tree(rng, depth)),
            pattern: nested(string(rng)),
            escape_char: None,
        },
        7 => Expr::IsNull(nested(tree(rng, depth))),
        _ => Expr::Nested(Box::new(tree(rng, depth))),
    }
}

/// The values of the string literals and the names of the quoted identifiers of a tree,
/// in the order they are printed.
fn expected_lexemes(expr: &Expr) -> Vec<String> {
    struct Collect(Vec<String>);
    impl sqlparser::ast::Visitor for Collect {
        type Break = ();
        fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
            if let Some(text) = string_value(&value.value) {
                self.0.push(format!("'{text}"));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<()> {
            if ident.quote_style == Some('"') {
                self.0.push(format!("\"{}", ident.value));
            }
            ControlFlow::Continue(())
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = sqlparser::ast::Visit::visit(expr, &mut collect);
    collect.0
}

#[test]
fn rendering_random_trees_reads_back_as_the_same_tree_under_either_string_setting() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..3000 {
        let expr = tree(&mut rng, 1 + case % 7);
        let rendered = expression(&expr, &Limits::QUERY)
            .unwrap_or_else(|e| panic!("case {case}: {expr:?} was not rendered: {e}"));
        let back = parse::expression(&rendered, &Limits::QUERY.rendered())
            .unwrap_or_else(|e| panic!("case {case}: {rendered} does not parse: {e}"))
            .expect("an expression");
        assert_eq!(
            canonical(&back),
            canonical(&expr),
            "case {case}: {rendered}"
        );
        let expected = expected_lexemes(&expr);
        for standard in [true, false] {
            assert_eq!(
                lexemes(&rendered, standard).as_ref(),
                Ok(&expected),
                "case {case}, standard_conforming_strings = {standard}: {rendered}"
            );
        }
    }
}

#[test]
fn deep_trees_near_the_limit_render() {
    let mut expr = Expr::value(Value::SingleQuotedString("it's \\ $$ --".to_string()));
    for level in 0..Limits::QUERY.levels / 2 - 5 {
        expr = match level % 3 {
            0 => Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: nested(expr),
            },
            1 => Expr::BinaryOp {
                left: nested(expr),
                op: BinaryOperator::StringConcat,
                right: Box::new(Expr::value(Value::SingleQuotedString("\\'".into()))),
            },
            _ => Expr::Nested(Box::new(expr)),
        };
    }
    let rendered = expression(&expr, &Limits::QUERY).expect("rendered");
    assert_eq!(lexemes(&rendered, true), lexemes(&rendered, false));
}

#[test]
fn literals_read_the_same_under_either_string_setting() {
    for (value, rendered) in [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("a\\b", "E'a\\\\b'"),
        ("\\'", "E'\\\\'''"),
        ("$q$ -- /* 😀", "'$q$ -- /* 😀'"),
        ("", "''"),
    ] {
        assert_eq!(string_literal(value), rendered);
        for standard in [true, false] {
            assert_eq!(read_literal(rendered, standard).as_deref(), Some(value));
        }
    }
    let mut rng = Rng(7);
    for _ in 0..2000 {
        let value = text(&mut rng);
        let literal = string_literal(&value);
        for standard in [true, false] {
            assert_eq!(
                read_literal(&literal, standard),
                Some(value.clone()),
                "{literal}"
            );
        }
    }
}

#[test]
fn every_spelling_of_a_string_is_rendered_in_the_one_form() {
    for (written, rendered) in [
        ("'a''b'", "'a''b'"),
        ("E'a\\\\b\\''", "E'a\\\\b'''"),
        ("E'\\x41'", "'A'"),
        ("$t$it's \\ $$ $t$", "E'it''s \\\\ $$ '"),
        ("\"we\"\"ird\\\" = 1", "\"we\"\"ird\\\" = 1"),
    ] {
        let expr = parse::expression(written, &Limits::QUERY)
            .expect("parses")
            .expect("an expression");
        assert_eq!(expression(&expr, &Limits::QUERY).as_deref(), Ok(rendered));
    }
}

#[test]
fn a_tree_that_does_not_print_back_is_an_internal_refusal() {
    // sqlparser prints `- -1` as the comment `--1`: the walkers parenthesize such
    // operands, and the renderer refuses a tree where they did not.
    let expr = Expr::UnaryOp {
        op: UnaryOperator::Minus,
        expr: Box::new(Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: Box::new(Expr::value(Value::Number("1".into(), false))),
        }),
    };
    let refusal = expression(&expr, &Limits::FILTER).unwrap_err();
    assert_eq!(refusal.kind, crate::sql_policy::RefusalKind::Internal);
    assert!(
        refusal.message.contains("could not be rendered back"),
        "{refusal}"
    );
    // and a string with a NUL, which PostgreSQL's text cannot hold
    let nul = Expr::value(Value::SingleQuotedString("a\0b".into()));
    assert!(expression(&nul, &Limits::FILTER)
        .unwrap_err()
        .message
        .contains("NUL"));
}
