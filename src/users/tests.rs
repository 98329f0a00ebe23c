use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SET LOCAL TimeZone = 'UTC'");
        exec("SELECT beacon.create_project('shop')");
    }

    fn profile(id: &str) -> Option<String> {
        one::<String>(&format!(
            "SELECT (to_jsonb(u) - 'created_at' - 'updated_at')::text FROM shop._users u WHERE id = '{id}'"
        ))
    }

    #[pg_test]
    fn set_user_creates_user_and_typed_columns() {
        setup();
        exec(
            r#"SELECT beacon.set_user('shop', 'u1', '{"plan": "pro", "seats": 3, "trial": false, "signed_up": "2024-05-01T10:00:00Z"}')"#,
        );
        assert_eq!(
            profile("u1").as_deref(),
            Some(
                r#"{"id": "u1", "plan": "pro", "seats": 3, "trial": false, "signed_up": "2024-05-01T10:00:00+00:00"}"#
            )
        );
        assert_eq!(
            one::<String>("SELECT string_agg(property || ':' || type, ',' ORDER BY property) FROM beacon.fields WHERE project = 'shop' AND collection = '_users' AND NOT system").as_deref(),
            Some("plan:text,seats:bigint,signed_up:timestamptz,trial:boolean")
        );
        // overwrite one property, add one, clear one; others untouched
        exec(
            r#"SELECT beacon.set_user('shop', 'u1', '{"plan": "team", "country": "NZ", "trial": null}')"#,
        );
        assert_eq!(
            profile("u1").as_deref(),
            Some(
                r#"{"id": "u1", "plan": "team", "seats": 3, "trial": null, "country": "NZ", "signed_up": "2024-05-01T10:00:00+00:00"}"#
            )
        );
    }

    #[pg_test]
    fn set_user_once_keeps_existing_values() {
        setup();
        exec(r#"SELECT beacon.set_user_once('shop', 'u1', '{"source": "ads", "plan": null}')"#);
        exec(
            r#"SELECT beacon.set_user_once('shop', 'u1', '{"source": "seo", "first_page": "/"}')"#,
        );
        assert_eq!(
            profile("u1").as_deref(),
            Some(r#"{"id": "u1", "source": "ads", "first_page": "/"}"#)
        );
    }

    #[pg_test]
    fn increment_user_creates_and_adds() {
        setup();
        assert_eq!(
            one::<f64>("SELECT beacon.increment_user('shop', 'u1', 'visits')"),
            Some(1.0)
        );
        assert_eq!(
            one::<f64>("SELECT beacon.increment_user('shop', 'u1', 'visits', 4)"),
            Some(5.0)
        );
        assert_eq!(
            one::<f64>("SELECT beacon.increment_user('shop', 'u2', 'spent', 2.5)"),
            Some(2.5)
        );
        assert_eq!(
            one::<f64>("SELECT beacon.increment_user('shop', 'u2', 'spent', 1)"),
            Some(3.5)
        );
        assert_eq!(one::<String>("SELECT type FROM beacon.fields WHERE project = 'shop' AND collection = '_users' AND property = 'visits'").as_deref(), Some("bigint"));
        assert_eq!(one::<String>("SELECT type FROM beacon.fields WHERE project = 'shop' AND collection = '_users' AND property = 'spent'").as_deref(), Some("double precision"));
        // only the named user changed
        assert_eq!(
            one::<i64>("SELECT visits FROM shop._users WHERE id = 'u1'"),
            Some(5)
        );
        assert_eq!(
            one::<i64>("SELECT visits FROM shop._users WHERE id = 'u2'"),
            None
        );
    }

    #[pg_test]
    fn increment_user_refuses_what_does_not_fit() {
        setup();
        exec(r#"SELECT beacon.set_user('shop', 'u1', '{"plan": "pro", "visits": 1}')"#);
        assert_eq!(
            sqlstate_of("SELECT beacon.increment_user('shop', 'u1', 'plan')").as_deref(),
            Some("42804")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.increment_user('shop', 'u1', 'visits', 0.5)").as_deref(),
            Some("42804")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.increment_user('shop', 'u1', 'visits', 'NaN')").as_deref(),
            Some("22023")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.increment_user('shop', 'u1', 'id')").as_deref(),
            Some("22023")
        );
        assert_eq!(
            one::<i64>("SELECT visits FROM shop._users WHERE id = 'u1'"),
            Some(1)
        );
    }

    #[pg_test]
    fn bad_input_is_an_error_and_changes_nothing() {
        setup();
        exec(r#"SELECT beacon.set_user('shop', 'u1', '{"seats": 3}')"#);
        let cases = [
            (
                r#"SELECT beacon.set_user('shop', 'u1', '{"seats": "many", "plan": "pro"}')"#,
                "42804",
            ),
            (
                r#"SELECT beacon.set_user('shop', NULL, '{"a": 1}')"#,
                "22023",
            ),
            (r#"SELECT beacon.set_user('shop', 'u1', '[1]')"#, "22023"),
            (r#"SELECT beacon.set_user('shop', 'u1', NULL)"#, "22023"),
            (
                r#"SELECT beacon.set_user('shop', 'u1', '{"created_at": "x"}')"#,
                "22023",
            ),
            (
                r#"SELECT beacon.set_user('nope', 'u1', '{"a": 1}')"#,
                "3F000",
            ),
            (
                "SELECT beacon.unset_user('shop', 'u1', ARRAY['id'])",
                "22023",
            ),
            (
                "SELECT beacon.unset_user('shop', 'u1', ARRAY[NULL])",
                "22023",
            ),
        ];
        for (sql, state) in cases {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(
            profile("u1").as_deref(),
            Some(r#"{"id": "u1", "seats": 3}"#)
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.field WHERE project = 'shop' AND collection = '_users' AND property = 'plan'"),
            0,
            "a failed call adds no column"
        );
    }

    #[pg_test]
    fn unset_user_clears_only_named_properties() {
        setup();
        exec(r#"SELECT beacon.set_user('shop', 'u1', '{"plan": "pro", "seats": 3}')"#);
        exec(r#"SELECT beacon.set_user('shop', 'u2', '{"plan": "free"}')"#);
        assert_eq!(
            one::<i64>("SELECT beacon.unset_user('shop', 'u1', ARRAY['plan', 'never_set'])"),
            Some(1)
        );
        assert_eq!(
            one::<i64>("SELECT beacon.unset_user('shop', 'ghost', ARRAY['plan'])"),
            Some(0)
        );
        assert_eq!(
            profile("u1").as_deref(),
            Some(r#"{"id": "u1", "plan": null, "seats": 3}"#)
        );
        assert_eq!(
            profile("u2").as_deref(),
            Some(r#"{"id": "u2", "plan": "free", "seats": null}"#)
        );
    }

    #[pg_test]
    fn events_join_their_user_and_users_is_not_a_collection_name() {
        setup();
        exec(r#"SELECT beacon.set_user('shop', 'u1', '{"plan": "pro"}')"#);
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"_user": "u1", "url": "/"}')"#);
        assert_eq!(
            one::<String>(
                "SELECT u.plan FROM shop.pageview e JOIN shop._users u ON u.id = e._user"
            )
            .as_deref(),
            Some("pro")
        );
        assert_eq!(
            sqlstate_of(r#"SELECT beacon.collect('shop', '_users', '{"id": "x"}')"#).as_deref(),
            Some("42602")
        );
    }
}
