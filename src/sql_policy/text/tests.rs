use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::sql_policy::text::{parse, render, Limits};
    use crate::testing::exec;
    use pgrx::prelude::*;

    /// Values built from everything that ends, escapes or comments a literal in some
    /// reading of SQL text, astral characters included.
    fn tricky_values() -> Vec<String> {
        const PIECES: &[&str] = &[
            "'", "''", "\\", "\\\\", "\\'", "$", "$$", "$q$", "--", "/*", "*/", "\"", "\n", "é",
            "😀", "𝄞", "E'", "\\x41", "\\n", "a",
        ];
        let mut values: Vec<String> = PIECES.iter().map(|piece| piece.to_string()).collect();
        values.push(String::new());
        // every ordered pair and a few longer mixes
        for first in PIECES {
            for second in PIECES {
                values.push(format!("{first}{second}"));
            }
        }
        values.push(PIECES.concat());
        values
    }

    fn under_both_settings(check: impl Fn(&str)) {
        for setting in ["on", "off"] {
            exec(&format!(
                "SET LOCAL standard_conforming_strings = {setting}; \
                 SET LOCAL escape_string_warning = off"
            ));
            check(setting);
        }
    }

    #[pg_test]
    fn rendered_literals_read_back_as_their_value_under_either_string_setting() {
        let values = tricky_values();
        under_both_settings(|setting| {
            for value in &values {
                let literal = render::string_literal(value);
                let read = Spi::get_one::<String>(&format!("SELECT {literal}::pg_catalog.text"))
                    .expect("the literal is read")
                    .expect("not NULL");
                assert_eq!(
                    &read, value,
                    "{literal} with standard_conforming_strings {setting}"
                );
            }
        });
    }

    #[pg_test]
    fn rendered_expressions_prepare_and_compute_the_same_under_either_setting() {
        let values = tricky_values();
        for chunk in values.chunks(40) {
            // the caller's spelling: dollar quotes, which read the same everywhere
            let written = chunk
                .iter()
                .enumerate()
                .map(|(i, value)| format!("$t{i}x${value}$t{i}x$"))
                .collect::<Vec<_>>()
                .join(" || ");
            let sql = format!("pg_catalog.lower(({written})) || DATE '2024-01-02'");
            let expr = parse::expression(&sql, &Limits::QUERY)
                .expect("parses")
                .expect("an expression");
            let rendered = render::expression(&expr, &Limits::QUERY).expect("rendered");
            let expected = format!("{}2024-01-02", chunk.concat().to_lowercase());
            under_both_settings(|setting| {
                let read = Spi::get_one::<String>(&format!("SELECT {rendered}"))
                    .expect("the rendering runs")
                    .expect("not NULL");
                assert_eq!(
                    read, expected,
                    "{rendered} with standard_conforming_strings {setting}"
                );
            });
        }
    }
}
