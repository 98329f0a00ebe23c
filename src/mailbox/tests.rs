use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
    }

    #[pg_test]
    fn send_page_and_mark_read() {
        setup();
        let first =
            one::<i64>("SELECT beacon.send_message('shop', 'ann', 'bob', 'hi bob')").unwrap();
        let reply = one::<i64>(&format!(
            "SELECT beacon.send_message('shop', 'bob', 'ann', 'hi ann', {first})"
        ))
        .unwrap();
        let third =
            one::<i64>("SELECT beacon.send_message('shop', NULL, 'bob', 'welcome')").unwrap();
        assert!(first < reply && reply < third);
        assert_eq!(
            one::<String>("SELECT string_agg(content, '|') FROM beacon.mailbox('shop', 'bob')")
                .as_deref(),
            Some("welcome|hi ann|hi bob"),
            "newest first, sent and received"
        );
        assert_eq!(
            one::<String>("SELECT string_agg(content, '|') FROM beacon.mailbox('shop', 'bob', unread_only => true)").as_deref(),
            Some("welcome|hi bob")
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT parent_id FROM beacon.mailbox('shop', 'ann') WHERE id = {reply}"
            )),
            Some(first)
        );
        // paging: two per page
        assert_eq!(
            one::<String>(
                "SELECT string_agg(content, '|') FROM beacon.mailbox('shop', 'bob', lim => 2)"
            )
            .as_deref(),
            Some("welcome|hi ann")
        );
        assert_eq!(
            one::<String>(&format!("SELECT string_agg(content, '|') FROM beacon.mailbox('shop', 'bob', lim => 2, before => {reply})")).as_deref(),
            Some("hi bob")
        );
        // ann cannot mark bob's messages; bob marks his own, once
        assert_eq!(
            one::<i64>(&format!(
                "SELECT beacon.mark_read('shop', 'ann', ARRAY[{first}, {third}])"
            )),
            Some(0)
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT beacon.mark_read('shop', 'bob', ARRAY[{first}, {reply}, {third}])"
            )),
            Some(2)
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT beacon.mark_read('shop', 'bob', ARRAY[{first}])"
            )),
            Some(0)
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.mailbox('shop', 'bob', true)"),
            0
        );
        assert_eq!(
            one::<bool>(&format!(
                "SELECT seen FROM shop._user_mailbox WHERE id = {reply}"
            )),
            Some(false)
        );
    }

    #[pg_test]
    fn bad_input_is_an_error_and_stores_nothing() {
        setup();
        let cases = [
            (
                "SELECT beacon.send_message('shop', 'a', NULL, 'x')",
                "22023",
            ),
            (
                "SELECT beacon.send_message('shop', 'a', 'b', NULL)",
                "22023",
            ),
            (
                "SELECT beacon.send_message('shop', 'a', 'b', 'x', 424242)",
                "22023",
            ),
            ("SELECT beacon.send_message('nope', 'a', 'b', 'x')", "3F000"),
            (
                "SELECT * FROM beacon.mailbox('shop', 'b', lim => 0)",
                "22023",
            ),
            ("SELECT * FROM beacon.mailbox('shop', NULL)", "22023"),
            ("SELECT beacon.mailbox_channel('nope', 'b')", "3F000"),
        ];
        for (sql, state) in cases {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(count("SELECT 1 FROM shop._user_mailbox"), 0);
    }

    #[pg_test]
    fn channels_are_distinct_valid_identifiers() {
        setup();
        exec("SELECT beacon.create_project('blog')");
        let long_id = "x".repeat(5000);
        let names = [
            one::<String>("SELECT beacon.mailbox_channel('shop', 'ann')").unwrap(),
            one::<String>("SELECT beacon.mailbox_channel('shop', 'bob')").unwrap(),
            one::<String>("SELECT beacon.mailbox_channel('shop')").unwrap(),
            one::<String>("SELECT beacon.mailbox_channel('blog', 'ann')").unwrap(),
            one::<String>(&format!(
                "SELECT beacon.mailbox_channel('shop', '{long_id}')"
            ))
            .unwrap(),
            one::<String>(r#"SELECT beacon.mailbox_channel('shop', 'Ünïcode "quoted"; DROP')"#)
                .unwrap(),
        ];
        for (i, name) in names.iter().enumerate() {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert!(!names[..i].contains(name), "{name} repeats");
        }
        assert_eq!(
            one::<String>("SELECT beacon.mailbox_channel('shop', 'ann')").as_deref(),
            Some(names[0].as_str()),
            "stable"
        );
        // LISTEN takes it unquoted
        exec(&format!("LISTEN {}", names[4]));
        exec("UNLISTEN *");
    }
}
