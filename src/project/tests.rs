use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn leftovers(name: &str) -> i64 {
        count(&format!(
            "SELECT 1 FROM pg_namespace WHERE nspname = '{name}'
             UNION ALL SELECT 1 FROM pg_roles WHERE rolname LIKE 'tide\\_{name}\\_%'
             UNION ALL SELECT 1 FROM tide.project WHERE name = '{name}'"
        ))
    }

    #[pg_test]
    fn create_project_makes_schema_roles_and_rejected_table() {
        exec("SELECT tide.create_project('shop')");
        assert_eq!(leftovers("shop"), 1 + 3 + 1);
        assert_eq!(count("SELECT 1 FROM shop._rejected"), 0);
        assert_eq!(
            one::<String>("SELECT admin_role FROM tide.projects WHERE name = 'shop'").as_deref(),
            Some("tide_shop_admin")
        );
        // admin includes read and write
        assert_eq!(
            one::<bool>("SELECT pg_has_role('tide_shop_admin', 'tide_shop_read', 'USAGE') AND pg_has_role('tide_shop_admin', 'tide_shop_write', 'USAGE')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT has_schema_privilege('tide_shop_read', 'shop', 'USAGE') AND NOT has_schema_privilege('tide_shop_read', 'shop', 'CREATE')"),
            Some(true)
        );
    }

    #[pg_test]
    fn bad_project_names_are_refused_with_sqlstate_and_leave_nothing() {
        let cases = [
            ("Shop", "42602"),
            ("", "42602"),
            ("9lives", "42602"),
            ("x\"; DROP TABLE t; --", "42602"),
            ("a b", "42602"),
            ("public", "42939"),
            ("tide", "42939"),
            ("information_schema", "42939"),
            ("pg_shop", "42939"),
        ];
        for (name, state) in cases {
            let sql = format!(
                "SELECT tide.create_project({})",
                crate::names::quote_literal(name)
            );
            assert_eq!(sqlstate_of(&sql).as_deref(), Some(state), "{name:?}");
        }
        let long = "a".repeat(53);
        assert_eq!(
            sqlstate_of(&format!("SELECT tide.create_project('{long}')")).as_deref(),
            Some("42602")
        );
        exec(&format!("SELECT tide.create_project('{}')", "b".repeat(52)));
        assert_eq!(count("SELECT 1 FROM tide.project"), 1);
        assert_eq!(
            count("SELECT 1 FROM pg_namespace WHERE nspname IN ('Shop', 'a b')"),
            0
        );
    }

    #[pg_test]
    fn duplicate_project_and_taken_schema_are_refused() {
        exec("SELECT tide.create_project('shop')");
        let refused = |sql: &str| sqlstate_of(sql);
        assert_eq!(
            refused("SELECT tide.create_project('shop')").as_deref(),
            Some("42710"),
            "same project"
        );
        exec("CREATE SCHEMA mine");
        assert_eq!(
            refused("SELECT tide.create_project('mine')").as_deref(),
            Some("42710"),
            "taken schema"
        );
        assert_eq!(leftovers("mine"), 1, "only the user's own schema");
        // a role someone can log in as is never taken over
        exec("CREATE ROLE tide_other_read LOGIN");
        assert_eq!(
            refused("SELECT tide.create_project('other')").as_deref(),
            Some("42710"),
            "login role"
        );
        assert_eq!(
            count("SELECT 1 FROM pg_namespace WHERE nspname = 'other'"),
            0
        );
        // nor one that holds privileges somewhere
        exec("CREATE ROLE tide_third_write");
        exec("GRANT SELECT ON tide.projects TO tide_third_write");
        assert_eq!(
            refused("SELECT tide.create_project('third')").as_deref(),
            Some("42710"),
            "role in use"
        );
        assert_eq!(
            count("SELECT 1 FROM pg_roles WHERE rolname LIKE 'tide\\_third\\_%'"),
            1
        );
    }

    #[pg_test]
    fn drop_project_removes_everything() {
        exec("SELECT tide.create_project('shop')");
        exec("SELECT tide.collect('shop', 'pageview', '{\"url\": \"/\"}')");
        exec("CREATE ROLE analyst");
        exec("SELECT tide.grant('shop', 'analyst', 'read')");
        exec("SELECT tide.drop_project('shop')");
        assert_eq!(leftovers("shop"), 0);
        assert_eq!(
            count("SELECT 1 FROM tide.collection WHERE project = 'shop'"),
            0
        );
        assert_eq!(count("SELECT 1 FROM tide.field WHERE project = 'shop'"), 0);
        assert_eq!(
            sqlstate_of("SELECT tide.drop_project('shop')").as_deref(),
            Some("3F000")
        );
    }

    #[pg_test]
    fn grant_and_revoke_membership() {
        exec("SELECT tide.create_project('shop')");
        exec("CREATE ROLE analyst");
        exec("SELECT tide.grant('shop', 'analyst', 'read')");
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'tide_shop_read', 'MEMBER')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'tide_shop_write', 'MEMBER')"),
            Some(false)
        );
        exec("SELECT tide.revoke('shop', 'analyst', 'read')");
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'tide_shop_read', 'MEMBER')"),
            Some(false)
        );
        assert_eq!(
            sqlstate_of("SELECT tide.grant('shop', 'analyst', 'owner')").as_deref(),
            Some("22023")
        );
        assert_eq!(
            sqlstate_of("SELECT tide.grant('nope', 'analyst', 'read')").as_deref(),
            Some("3F000")
        );
        assert_eq!(
            sqlstate_of("SELECT tide.grant('shop', 'no_such_role', 'read')").as_deref(),
            Some("42704")
        );
    }

    #[pg_test]
    fn only_owner_creates_and_only_admin_grants() {
        exec("SELECT tide.create_project('shop')");
        exec("CREATE ROLE mallory");
        exec("CREATE ROLE analyst");
        exec("SET LOCAL ROLE mallory");
        assert_eq!(
            sqlstate_of("SELECT tide.create_project('evil')").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate_of("SELECT tide.drop_project('shop')").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate_of("SELECT tide.grant('shop', 'mallory', 'admin')").as_deref(),
            Some("42501")
        );
        exec("RESET ROLE");
        exec("SELECT tide.grant('shop', 'mallory', 'admin')");
        exec("SET LOCAL ROLE mallory");
        exec("SELECT tide.grant('shop', 'analyst', 'read')");
        exec("RESET ROLE");
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'tide_shop_read', 'MEMBER')"),
            Some(true)
        );
        assert_eq!(leftovers("evil"), 0);
    }

    #[pg_test]
    fn roles_left_by_a_dropped_database_are_reused() {
        // what DROP DATABASE leaves behind: the three roles, unused, admin a member of both
        exec("CREATE ROLE tide_again_read");
        exec("CREATE ROLE tide_again_write");
        exec("CREATE ROLE tide_again_admin");
        exec("GRANT tide_again_read, tide_again_write TO tide_again_admin");
        exec("SELECT tide.create_project('again')");
        assert_eq!(leftovers("again"), 1 + 3 + 1);
        assert_eq!(
            one::<bool>("SELECT has_schema_privilege('tide_again_read', 'again', 'USAGE')"),
            Some(true)
        );
    }
}
