//! The archive in the database: a table of every type written, read back with
//! `read_rows` and with readers pg_beacon did not write (pyarrow and DuckDB, through
//! tests/common/parquet_read.py), compared with `to_jsonb` of its rows; verification of
//! damaged files; a table larger than a batch; an empty table.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use super::super::{read_rows, verify, write_table, ArchivedFile};
    use crate::error::BeaconError;
    use crate::testing::{exec, one};
    use pgrx::datum::TimestampWithTimeZone;
    use pgrx::prelude::*;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    /// A fresh directory the backend (the postgres OS user) owns.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pg_beacon_archive_test_{}_{name}",
            std::process::id()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove an old scratch directory");
        }
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    /// Every type a collection holds, and a few an administrator could change a column to.
    fn create_all_types() {
        exec("CREATE TYPE public.arch_pair AS (x int, y text)");
        exec(
            "CREATE TABLE public.arch_all (_id bigint, _time timestamptz, _user text, \
             i2 int2, i4 int4, i8 bigint, f4 real, f8 double precision, b boolean, \
             ts timestamptz, tsn timestamp, d date, n numeric, n_text numeric, \
             t text, vc varchar(10), bp char(4), nm name, j jsonb, js json, by bytea, \
             a_i8 bigint[], a_f8 float8[], a_n numeric[], a_b boolean[], a_ts timestamptz[], \
             a_t text[], a_j jsonb[], a_2d int[], iv interval, u uuid, rng tstzrange, \
             pair public.arch_pair, \"Weird \"\"Name\" text)",
        );
        exec("ALTER TABLE public.arch_all DROP COLUMN vc");
        exec(
            "INSERT INTO public.arch_all VALUES \
             (1, '2026-12-01 10:00:00.5+00', 'u1', 1, 2, 3, 0.1, 0.1, true, \
              '2026-12-01 12:34:56.789+02', '2026-12-01 12:34:56', '2026-12-01', 1.5, 1.25, \
              'hello', 'ab', 'nm', '{\"a\": {\"b\": [1, 2.50, null, \"x\"]}, \"c\": true}', \
              '{\"k\": [1, 2]}', '\\x00ff10', \
              '{1, NULL, 3}', '{1.5, NULL, \"NaN\"}', '{1.5, NULL, 2.25}', '{true, NULL}', \
              '{\"2026-12-01 10:00+00\", NULL}', '{\"a\", NULL, \"\", \"é\"}', \
              ARRAY['{\"x\": 1}'::jsonb, NULL, '[1, {\"y\": null}]'], '{{1, 2}, {3, NULL}}', \
              '1 day 02:03:04.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', \
              '[2026-12-01 00:00+00, 2026-12-02 00:00+00)', ROW(7, 'seven'), 'w'), \
             (2, '2026-12-01 11:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
              NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
              NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
             (3, '2026-12-01 12:00+00', '', -32768, -2147483648, -9223372036854775808, \
              'NaN', 'Infinity', false, 'infinity', '-infinity', 'infinity', -123.4567, 'NaN', \
              '', '', '', '{}', '\"\"', '', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', \
              '-1 year', NULL, 'empty', ROW(NULL, NULL), ''), \
             (4, '2026-12-01 13:00+00', '日本語 ✓', 32767, 2147483647, 9223372036854775807, \
              '-Infinity', '-Infinity', NULL, '-infinity', '0044-03-15 12:00 BC', \
              '0044-03-15 BC', 10, 'Infinity', 'ünïcødé 🎉 \"quoted\" \\\\ back', \
              'abcd', 'x', '[[], {}, \"s\", 1e-7, 12345678901234567890.123]', 'null', \
              '\\x', '{-9223372036854775808}', '{\"-Infinity\", 1e300, -0.0}', \
              '{NULL}', '{NULL}', '{\"infinity\", \"1999-12-31 23:59:59.999999+00\"}', \
              '{NULL}', ARRAY[NULL::jsonb], '{{{1}}}', '-00:00:01', NULL, NULL, NULL, NULL), \
             (5, '2026-12-01 14:00+00', 'u5', 0, 0, 0, 3.4028235e38, 1e-300, true, \
              '2026-06-15 00:00:00.000001+00', '2026-06-15 00:00:00.000001', '2000-02-29', \
              -0.0001, -99999999999999999999999999999999999999999, 'z', 'abc ', 'n', \
              '12345678901234567890', '[]', '\\x0102', NULL, NULL, NULL, NULL, NULL, NULL, \
              NULL, NULL, NULL, NULL, NULL, NULL, 'last')",
        );
    }

    fn written(relation: &str, path: &Path) -> ArchivedFile {
        // the file must not depend on the writer's session
        exec("SET LOCAL TimeZone = 'America/New_York'");
        exec("SET LOCAL DateStyle = 'German, DMY'");
        exec("SET LOCAL IntervalStyle = 'sql_standard'");
        let file = write_table(relation, path).unwrap_or_else(|e| panic!("{relation}: {e}"));
        exec("SET LOCAL TimeZone = 'UTC'");
        exec("SET LOCAL DateStyle = 'ISO, MDY'");
        exec("SET LOCAL IntervalStyle = 'postgres'");
        file
    }

    /// Rows of `got` (jsonb) that are not in `expected` and the other way round, as text.
    fn difference(expected: &str, got: &str) -> Vec<String> {
        let sql = format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(d), '[]') FROM ( \
               (SELECT 'missing' AS side, e AS row FROM ({expected}) x(e) EXCEPT ALL SELECT 'missing', g FROM ({got}) y(g)) \
               UNION ALL \
               (SELECT 'extra', g FROM ({got}) y(g) EXCEPT ALL SELECT 'extra', e FROM ({expected}) x(e))) d"
        );
        let diff = one::<pgrx::JsonB>(&sql).expect("difference").0;
        diff.as_array()
            .expect("an array")
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    fn store_read_rows(
        table: &str,
        rows: Vec<(i64, TimestampWithTimeZone, Option<String>, pgrx::JsonB)>,
    ) {
        exec(&format!(
            "CREATE TEMP TABLE {table} (id bigint, time timestamptz, \"user\" text, props jsonb)"
        ));
        for (id, time, user, props) in rows {
            Spi::run_with_args(
                &format!("INSERT INTO {table} VALUES ($1, $2, $3, $4)"),
                &[id.into(), time.into(), user.into(), props.into()],
            )
            .expect("insert a row read back");
        }
    }

    #[pg_test]
    fn archive_every_type_reads_back_as_to_jsonb() {
        create_all_types();
        let dir = scratch("types");
        let path = dir.join("date=2026-12-01").join("part-0.parquet");
        let file = written("\"public\".\"arch_all\"", &path);
        assert_eq!(file.rows, 5);
        assert_eq!(file.bytes, std::fs::metadata(&path).unwrap().len() as i64);
        assert_eq!(file.checksum.len(), 64);
        assert_eq!(
            file.min_time.map(|t| t.into_inner()),
            one::<TimestampWithTimeZone>("SELECT min(_time) FROM public.arch_all")
                .map(|t| t.into_inner())
        );
        assert_eq!(
            file.max_time.map(|t| t.into_inner()),
            one::<TimestampWithTimeZone>("SELECT max(_time) FROM public.arch_all")
                .map(|t| t.into_inner())
        );
        verify(&path, file.rows, &file.checksum).expect("verifies");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(leftovers, vec!["part-0.parquet".to_owned()]);

        let names = HashMap::from([("i8".to_owned(), "big count".to_owned())]);
        store_read_rows(
            "got",
            read_rows(&path, None, None, &names).expect("read_rows"),
        );
        let expected = "SELECT pg_catalog.jsonb_build_object('id', _id, 'time', _time, 'user', _user, \
             'props', (to_jsonb(a) - '_id' - '_time' - '_user' - 'i8') || jsonb_build_object('big count', i8)) \
             FROM public.arch_all a";
        let got = "SELECT pg_catalog.jsonb_build_object('id', id, 'time', time, 'user', \"user\", 'props', props) FROM got";
        assert_eq!(difference(expected, got), Vec::<String>::new());

        // [from, to): the second and third rows
        let at = |id: i64| {
            one::<TimestampWithTimeZone>(&format!(
                "SELECT _time FROM public.arch_all WHERE _id = {id}"
            ))
        };
        let ids: Vec<i64> = read_rows(&path, at(2), at(4), &names)
            .expect("read a range")
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(read_rows(&path, at(5), None, &names).unwrap().len(), 1);
        assert_eq!(read_rows(&path, None, at(1), &names).unwrap().len(), 0);

        interoperability(&path);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// What pyarrow and DuckDB read from the file, row for row and type for type.
    fn interoperability(path: &Path) {
        let output = python_readers(path);
        let mut schema = None;
        exec("CREATE TEMP TABLE seen (reader text, row jsonb)");
        for line in output.lines() {
            let (kind, json) = line.split_once('\t').expect("tab-separated output");
            if kind == "schema" {
                schema =
                    Some(serde_json::from_str::<serde_json::Value>(json).expect("schema JSON"));
            } else {
                Spi::run_with_args(
                    "INSERT INTO seen VALUES ($1, $2::jsonb)",
                    &[kind.into(), json.into()],
                )
                .unwrap_or_else(|e| panic!("{json}: {e}"));
            }
        }
        // the numeric with NaN and infinities is text to a reader that does not know it was
        // numeric (pg_beacon's own reader does: the field's metadata)
        let expected = "SELECT to_jsonb(a) || jsonb_build_object('n_text', n_text::text) FROM public.arch_all a";
        for reader in ["pyarrow", "duckdb"] {
            let got = format!("SELECT row FROM seen WHERE reader = '{reader}'");
            assert_eq!(difference(expected, &got), Vec::<String>::new(), "{reader}");
        }
        let schema = schema.expect("a schema line");
        let duckdb = &schema["duckdb"];
        for (column, kind) in [
            ("_id", "BIGINT"),
            ("_time", "TIMESTAMP WITH TIME ZONE"),
            ("i2", "SMALLINT"),
            ("i4", "INTEGER"),
            ("f4", "FLOAT"),
            ("f8", "DOUBLE"),
            ("b", "BOOLEAN"),
            ("ts", "TIMESTAMP WITH TIME ZONE"),
            ("tsn", "TIMESTAMP"),
            ("d", "DATE"),
            ("n", "DECIMAL(38,4)"),
            ("n_text", "VARCHAR"),
            ("t", "VARCHAR"),
            ("j", "JSON"),
            ("js", "JSON"),
            ("by", "BLOB"),
            ("a_i8", "BIGINT[]"),
            ("a_f8", "DOUBLE[]"),
            ("a_n", "DECIMAL(38,2)[]"),
            ("a_b", "BOOLEAN[]"),
            ("a_ts", "TIMESTAMP WITH TIME ZONE[]"),
            ("a_t", "VARCHAR[]"),
            ("a_j", "JSON[]"),
            ("a_2d", "JSON"),
            ("iv", "VARCHAR"),
            ("pair", "JSON"),
            ("Weird \"Name", "VARCHAR"),
        ] {
            assert_eq!(duckdb[column], kind, "DuckDB's type of {column}: {schema}");
        }
        assert!(
            duckdb.get("vc").is_none(),
            "a dropped column is not archived"
        );
        let leaves: HashMap<String, String> = schema["leaves"]
            .as_array()
            .expect("leaves")
            .iter()
            .map(|l| {
                (
                    l["path"].as_str().unwrap().to_owned(),
                    l["logical"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (leaf, logical) in [
            (
                "_time",
                "Timestamp(isAdjustedToUTC=true, timeUnit=microseconds",
            ),
            (
                "tsn",
                "Timestamp(isAdjustedToUTC=false, timeUnit=microseconds",
            ),
            ("i2", "Int(bitWidth=16, isSigned=true)"),
            ("d", "Date"),
            ("n", "Decimal(precision=38, scale=4)"),
            ("t", "String"),
            ("j", "JSON"),
            ("a_j.list.element", "JSON"),
            ("a_n.list.element", "Decimal(precision=38, scale=2)"),
            ("a_ts.list.element", "Timestamp(isAdjustedToUTC=true"),
        ] {
            let got = leaves
                .get(leaf)
                .unwrap_or_else(|| panic!("no leaf {leaf}: {schema}"));
            assert!(
                got.starts_with(logical),
                "logical type of {leaf}: {got}, expected {logical}"
            );
        }
    }

    fn python_readers(path: &Path) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/parquet_read.py");
        // scripts/test.sh installs the readers there (scripts/lib.sh)
        let python = std::env::var("BEACON_PYTHON")
            .unwrap_or_else(|_| "/opt/pg_beacon/python-readers/bin/python3".to_owned());
        let output = std::process::Command::new(&python)
            .arg(script)
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
        assert!(
            output.status.success(),
            "{python} {script} {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    #[pg_test]
    fn archive_hive_layout_reads_as_date_partitions() {
        exec(
            "CREATE TABLE public.arch_days AS SELECT i::bigint AS _id, \
             timestamptz '2026-12-01 00:00+00' + i * interval '1 hour' AS _time, 'u' || i % 3 AS _user, \
             i * 0.5::float8 AS price, jsonb_build_object('i', i) AS extra FROM generate_series(0, 47) i",
        );
        let dir = scratch("hive");
        for (day, range) in [("2026-12-01", "_id < 24"), ("2026-12-02", "_id >= 24")] {
            exec(&format!(
                "CREATE TABLE public.arch_day AS SELECT * FROM public.arch_days WHERE {range}"
            ));
            written(
                "public.arch_day",
                &dir.join(format!("date={day}")).join("part-0.parquet"),
            );
            exec("DROP TABLE public.arch_day");
        }
        let output = python_readers(&dir);
        exec("CREATE TEMP TABLE seen (reader text, row jsonb)");
        for line in output.lines().filter(|l| !l.starts_with("schema\t")) {
            let (reader, json) = line.split_once('\t').unwrap();
            Spi::run_with_args(
                "INSERT INTO seen VALUES ($1, $2::jsonb)",
                &[reader.into(), json.into()],
            )
            .unwrap();
        }
        let expected = "SELECT to_jsonb(a) || jsonb_build_object('date', (_time AT TIME ZONE 'UTC')::date::text) FROM public.arch_days a";
        for reader in ["pyarrow", "duckdb"] {
            let got = format!("SELECT row FROM seen WHERE reader = '{reader}'");
            assert_eq!(difference(expected, &got), Vec::<String>::new(), "{reader}");
        }
        assert!(
            output.contains("\"date\": \"DATE\""),
            "DuckDB sees the date partitions: {output}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[pg_test]
    fn archive_verify_refuses_damaged_files() {
        exec("CREATE TABLE public.arch_small AS SELECT i::bigint AS _id, now() AS _time, NULL::text AS _user, i AS v FROM generate_series(1, 100) i");
        let dir = scratch("verify");
        let path = dir.join("part-0.parquet");
        let file = written("public.arch_small", &path);
        verify(&path, file.rows, &file.checksum).expect("intact");
        let is_corrupt = |r: Result<(), BeaconError>| matches!(r, Err(BeaconError::Corrupted(_)));
        assert!(
            is_corrupt(verify(&path, file.rows + 1, &file.checksum)),
            "row count"
        );
        assert!(
            is_corrupt(verify(&path, file.rows, &"0".repeat(64))),
            "checksum"
        );
        let bytes = std::fs::read(&path).unwrap();
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        assert!(
            is_corrupt(verify(&path, file.rows, &file.checksum)),
            "a flipped byte"
        );
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(
            is_corrupt(verify(&path, file.rows, &file.checksum)),
            "truncated"
        );
        // a truncated file whose checksum someone recomputed is still not Parquet
        let truncated = super::super::types::checksum_of(&bytes[..bytes.len() - 10]);
        assert!(
            is_corrupt(verify(&path, file.rows, &truncated)),
            "truncated, new checksum"
        );
        assert!(matches!(
            verify(&dir.join("missing.parquet"), 1, &file.checksum),
            Err(BeaconError::Io(_))
        ));

        // a failed write leaves nothing at the path, nor a temporary file
        let failed = dir.join("failed").join("part-0.parquet");
        assert!(write_table("public.arch_missing", &failed).is_err());
        assert_eq!(
            std::fs::read_dir(failed.parent().unwrap()).unwrap().count(),
            0
        );
        // a stale temporary file is overwritten
        std::fs::write(dir.join(".part-1.parquet.tmp"), b"stale").unwrap();
        let again = written("public.arch_small", &dir.join("part-1.parquet"));
        verify(&dir.join("part-1.parquet"), again.rows, &again.checksum).unwrap();
        assert!(!dir.join(".part-1.parquet.tmp").exists());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[pg_test]
    fn archive_larger_than_a_batch_and_empty() {
        let n = super::super::BATCH_ROWS * 2 + 123;
        exec(&format!(
            "CREATE TABLE public.arch_big AS SELECT i::bigint AS _id, \
             timestamptz '2026-12-01 00:00+00' + i * interval '1 second' AS _time, \
             'u' || i % 100 AS _user, i % 7 AS k, i * 1.25 AS amount, ARRAY[i, -i] AS pair \
             FROM generate_series(1, {n}) i"
        ));
        let dir = scratch("big");
        let path = dir.join("part-0.parquet");
        let file = written("public.arch_big", &path);
        assert_eq!(file.rows, n);
        let rows = read_rows(&path, None, None, &HashMap::new()).unwrap();
        assert_eq!(rows.len() as i64, n);
        assert_eq!(rows.iter().map(|r| r.0).sum::<i64>(), n * (n + 1) / 2);
        let last = &rows[rows.len() - 1];
        assert_eq!(last.0, n);
        assert_eq!(
            last.3 .0["amount"].to_string(),
            format!("{:.2}", n as f64 * 1.25)
        );
        assert_eq!(last.3 .0["pair"], serde_json::json!([n, -n]));

        exec("CREATE TABLE public.arch_empty (_id bigint, _time timestamptz, _user text, x numeric, y int[])");
        let path = dir.join("empty.parquet");
        let file = written("public.arch_empty", &path);
        assert_eq!((file.rows, file.min_time, file.max_time), (0, None, None));
        verify(&path, 0, &file.checksum).unwrap();
        assert!(read_rows(&path, None, None, &HashMap::new())
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[pg_test]
    fn archive_dir_is_relative_to_the_data_directory() {
        let data = one::<String>("SELECT current_setting('data_directory')").unwrap();
        assert_eq!(
            super::super::archive_root(),
            Path::new(&data).join("pg_beacon_archive")
        );
    }
}
