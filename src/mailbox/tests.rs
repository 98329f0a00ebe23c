use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT tide.create_project('shop')");
    }

    #[pg_test]
    fn send_page_and_mark_read() {
        setup();
        let first = one::<i64>("SELECT tide.send_message('shop', 'ann', 'bob', 'hi bob')").unwrap();
        let reply = one::<i64>(&format!(
            "SELECT tide.send_message('shop', 'bob', 'ann', 'hi ann', {first})"
        ))
        .unwrap();
        let third = one::<i64>("SELECT tide.send_message('shop', NULL, 'bob', 'welcome')").unwrap();
        assert!(first < reply && reply < third);
        assert_eq!(
            one::<String>("SELECT string_agg(content, '|') FROM tide.mailbox('shop', 'bob')")
                .as_deref(),
            Some("welcome|hi ann|hi bob"),
            "newest first, sent and received"
        );
        assert_eq!(
            one::<String>("SELECT string_agg(content, '|') FROM tide.mailbox('shop', 'bob', unread_only => true)").as_deref(),
            Some("welcome|hi bob")
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT parent_id FROM tide.mailbox('shop', 'ann') WHERE id = {reply}"
            )),
            Some(first)
        );
        // paging: two per page
        assert_eq!(
            one::<String>(
                "SELECT string_agg(content, '|') FROM tide.mailbox('shop', 'bob', lim => 2)"
            )
            .as_deref(),
            Some("welcome|hi ann")
        );
        assert_eq!(
            one::<String>(&format!("SELECT string_agg(content, '|') FROM tide.mailbox('shop', 'bob', lim => 2, before => {reply})")).as_deref(),
            Some("hi bob")
        );
        // ann cannot mark bob's messages; bob marks his own, once
        assert_eq!(
            one::<i64>(&format!(
                "SELECT tide.mark_read('shop', 'ann', ARRAY[{first}, {third}])"
            )),
            Some(0)
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT tide.mark_read('shop', 'bob', ARRAY[{first}, {reply}, {third}])"
            )),
            Some(2)
        );
        assert_eq!(
            one::<i64>(&format!(
                "SELECT tide.mark_read('shop', 'bob', ARRAY[{first}])"
            )),
            Some(0)
        );
        assert_eq!(count("SELECT 1 FROM tide.mailbox('shop', 'bob', true)"), 0);
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
            ("SELECT tide.send_message('shop', 'a', NULL, 'x')", "22023"),
            ("SELECT tide.send_message('shop', 'a', 'b', NULL)", "22023"),
            (
                "SELECT tide.send_message('shop', 'a', 'b', 'x', 424242)",
                "22023",
            ),
            ("SELECT tide.send_message('nope', 'a', 'b', 'x')", "3F000"),
            ("SELECT * FROM tide.mailbox('shop', 'b', lim => 0)", "22023"),
            ("SELECT * FROM tide.mailbox('shop', NULL)", "22023"),
            ("SELECT tide.mailbox_channel('nope', 'b')", "3F000"),
        ];
        for (sql, state) in cases {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(count("SELECT 1 FROM shop._user_mailbox"), 0);
    }

    #[pg_test]
    fn channels_are_distinct_valid_identifiers() {
        setup();
        exec("SELECT tide.create_project('blog')");
        let long_id = "x".repeat(5000);
        let names = [
            one::<String>("SELECT tide.mailbox_channel('shop', 'ann')").unwrap(),
            one::<String>("SELECT tide.mailbox_channel('shop', 'bob')").unwrap(),
            one::<String>("SELECT tide.mailbox_channel('shop')").unwrap(),
            one::<String>("SELECT tide.mailbox_channel('blog', 'ann')").unwrap(),
            one::<String>(&format!("SELECT tide.mailbox_channel('shop', '{long_id}')")).unwrap(),
            one::<String>(r#"SELECT tide.mailbox_channel('shop', 'Ünïcode "quoted"; DROP')"#)
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
            one::<String>("SELECT tide.mailbox_channel('shop', 'ann')").as_deref(),
            Some(names[0].as_str()),
            "stable"
        );
        // LISTEN takes it unquoted
        exec(&format!("LISTEN {}", names[4]));
        exec("UNLISTEN *");
    }
}
