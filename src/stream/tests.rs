use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec(
            r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/", "price": 1.5, "country": "NZ"}')"#,
        );
    }

    fn subscribe(filter: &str) -> String {
        one::<String>(&format!(
            "SELECT beacon.subscribe('shop', 'pageview', {filter})"
        ))
        .expect("channel")
    }

    fn triggers() -> i64 {
        count("SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.pageview'::regclass AND tgname = '_beacon_stream'")
    }

    fn sent(channel: &str) -> i64 {
        one::<i64>(&format!(
            "SELECT events_sent FROM beacon.subscriptions WHERE channel = '{channel}'"
        ))
        .expect("subscription listed")
    }

    #[pg_test]
    fn one_trigger_serves_every_subscription_and_goes_with_the_last() {
        setup();
        assert_eq!(triggers(), 0, "no subscription, no trigger");
        let channels: Vec<String> = (0..100)
            .map(|i| subscribe(&format!("'price > {i}'")))
            .collect();
        assert_eq!(triggers(), 1);
        let mut unique = channels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 100, "channels are distinct");
        assert!(channels
            .iter()
            .all(|c| c.len() <= 63 && c.starts_with("beacon_")));
        for channel in &channels {
            exec(&format!("SELECT beacon.unsubscribe('{channel}')"));
        }
        assert_eq!(triggers(), 0);
        assert_eq!(
            count("SELECT 1 FROM pg_proc WHERE proname = '_stream_pageview'"),
            0
        );
    }

    #[pg_test]
    fn matching_events_are_counted_per_subscription() {
        setup();
        let cheap = subscribe("'price < 10 AND country IN (''NZ'', ''AU'')'");
        let all = subscribe("NULL");
        let none = subscribe("'url LIKE ''/never%'''");
        exec(
            r#"SELECT beacon.collect_batch('shop', '[
            {"collection": "pageview", "properties": {"url": "/a", "price": 5, "country": "NZ"}},
            {"collection": "pageview", "properties": {"url": "/b", "price": 50, "country": "NZ"}},
            {"collection": "pageview", "properties": {"url": "/c", "price": 1, "country": "US"}},
            {"collection": "pageview", "properties": {"url": "/d", "country": "AU"}}]')"#,
        );
        assert_eq!(sent(&cheap), 1);
        assert_eq!(sent(&all), 4);
        assert_eq!(sent(&none), 0);
        // the worker's fold keeps the totals
        assert_eq!(one::<i64>("SELECT beacon._stream_housekeeping()"), Some(0));
        assert_eq!(count("SELECT 1 FROM beacon.subscription_sent"), 0);
        assert_eq!(sent(&all), 4);
    }

    #[pg_test]
    fn filters_are_checked_before_they_are_accepted() {
        setup();
        let refused = [
            ("'1=1); DROP TABLE shop.pageview; --'", "42601"),
            ("'price > 1; DROP TABLE shop.pageview'", "42601"),
            ("'pg_sleep(10) IS NULL'", "42501"),
            ("'(SELECT count(*) FROM pg_authid) > 0'", "42501"),
            ("'nosuchcolumn = 1'", "42501"),
            ("'price + 1'", "42501"),
            ("'''pg_authid''::regclass IS NOT NULL'", "42501"),
            // PostgreSQL's own type check of an accepted shape
            ("'url > 5'", "42883"),
        ];
        let mut wrong = Vec::new();
        for (filter, state) in refused {
            let got = sqlstate_of(&format!(
                "SELECT beacon.subscribe('shop', 'pageview', {filter})"
            ));
            if got.as_deref() != Some(state) {
                wrong.push(format!("{filter}: {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(
            sqlstate_of("SELECT beacon.subscribe('shop', 'nosuch')").as_deref(),
            Some("42P01")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.subscribe('nope', 'pageview')").as_deref(),
            Some("3F000")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.unsubscribe('beacon_nosuch')").as_deref(),
            Some("42704")
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.subscription"),
            0,
            "nothing half-created"
        );
        assert_eq!(triggers(), 0);
        assert_eq!(
            one::<bool>("SELECT to_regclass('shop.pageview') IS NOT NULL"),
            Some(true)
        );
    }

    #[pg_test]
    fn subscriptions_view_shows_the_session_of_temporary_ones() {
        setup();
        let temporary = subscribe("'price > 1'");
        let lasting =
            one::<String>("SELECT beacon.subscribe('shop', 'pageview', NULL, false)").unwrap();
        assert_eq!(
            one::<bool>(&format!("SELECT owner_session = pg_backend_pid() AND temporary FROM beacon.subscriptions WHERE channel = '{temporary}'")),
            Some(true)
        );
        assert_eq!(
            one::<bool>(&format!("SELECT owner_session IS NULL AND NOT temporary FROM beacon.subscriptions WHERE channel = '{lasting}'")),
            Some(true)
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT filter FROM beacon.subscriptions WHERE channel = '{temporary}'"
            ))
            .as_deref(),
            Some("price > 1")
        );
        // this session is alive: housekeeping keeps both
        assert_eq!(one::<i64>("SELECT beacon._stream_housekeeping()"), Some(0));
        assert_eq!(count("SELECT 1 FROM beacon.subscriptions"), 2);
    }

    /// A filter that fails on some events never fails the insert: those events are not
    /// sent on that subscription (and are counted), everything else arrives as usual.
    #[pg_test]
    fn failing_filters_skip_their_events_and_never_fail_the_writer() {
        setup();
        let all = subscribe("NULL");
        let dividing = subscribe("'100 / (price - 1.5) > 1'");
        let casting = subscribe("'url::integer > 5'");
        let stored = one::<i64>(
            r#"SELECT beacon.collect_batch('shop', '[
                 {"collection": "pageview", "properties": {"url": "7", "price": 1.5}},
                 {"collection": "pageview", "properties": {"url": "/a", "price": 2}},
                 {"collection": "pageview", "properties": {"url": "9", "price": 3}}]')"#,
        );
        assert_eq!(stored, Some(3), "the batch is stored whole");
        assert_eq!(count("SELECT 1 FROM shop.pageview"), 4);
        assert_eq!(sent(&all), 3);
        // 1.5 divides by zero; 2 and 3 give 200 and 66: both sent
        assert_eq!(sent(&dividing), 2);
        // '/a' does not cast; 7 and 9 are > 5
        assert_eq!(sent(&casting), 2);
        let failed = |channel: &str| {
            one::<i64>(&format!(
                "SELECT events_failed FROM beacon.subscriptions WHERE channel = '{channel}'"
            ))
        };
        assert_eq!(failed(&all), Some(0));
        assert_eq!(failed(&dividing), Some(1));
        assert_eq!(failed(&casting), Some(1));
        assert_eq!(
            one::<String>(&format!(
                "SELECT last_error FROM beacon.subscriptions WHERE channel = '{dividing}'"
            ))
            .as_deref(),
            Some("division by zero")
        );
        // single events too
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "x", "price": 1.5}')"#);
        assert_eq!(sent(&all), 4);
        assert_eq!(failed(&dividing), Some(2));
    }

    #[pg_test]
    fn subscriptions_and_filters_are_bounded() {
        setup();
        exec("SET beacon.max_subscriptions = 3");
        for _ in 0..3 {
            subscribe("NULL");
        }
        assert_eq!(
            sqlstate_of("SELECT beacon.subscribe('shop', 'pageview', NULL)").as_deref(),
            Some("54000")
        );
        exec("RESET beacon.max_subscriptions");
        let long = format!("'url = ''{}'''", "x".repeat(3000));
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT beacon.subscribe('shop', 'pageview', {long})"
            ))
            .as_deref(),
            Some("54000")
        );
    }
}
