use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn leftovers(name: &str) -> i64 {
        count(&format!(
            "SELECT 1 FROM pg_namespace WHERE nspname = '{name}'
             UNION ALL SELECT 1 FROM pg_roles WHERE rolname LIKE 'beacon\\_{name}\\_%'
             UNION ALL SELECT 1 FROM beacon.project WHERE name = '{name}'"
        ))
    }

    #[pg_test]
    fn create_project_makes_schema_roles_and_rejected_table() {
        exec("SELECT beacon.create_project('shop')");
        // read, write, admin and the owner role
        assert_eq!(leftovers("shop"), 1 + 4 + 1);
        assert_eq!(
            one::<String>(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'shop'"
            )
            .as_deref(),
            Some("beacon_shop_owner")
        );
        assert_eq!(count("SELECT 1 FROM shop._rejected"), 0);
        assert_eq!(
            one::<String>("SELECT admin_role FROM beacon.projects WHERE name = 'shop'").as_deref(),
            Some("beacon_shop_admin")
        );
        // admin includes read and write
        assert_eq!(
            one::<bool>("SELECT pg_has_role('beacon_shop_admin', 'beacon_shop_read', 'USAGE') AND pg_has_role('beacon_shop_admin', 'beacon_shop_write', 'USAGE')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT has_schema_privilege('beacon_shop_read', 'shop', 'USAGE') AND NOT has_schema_privilege('beacon_shop_read', 'shop', 'CREATE')"),
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
            ("beacon", "42939"),
            ("information_schema", "42939"),
            ("pg_shop", "42939"),
        ];
        for (name, state) in cases {
            let sql = format!(
                "SELECT beacon.create_project({})",
                crate::names::quote_literal(name)
            );
            assert_eq!(sqlstate_of(&sql).as_deref(), Some(state), "{name:?}");
        }
        let long = "a".repeat(51);
        assert_eq!(
            sqlstate_of(&format!("SELECT beacon.create_project('{long}')")).as_deref(),
            Some("42602")
        );
        exec(&format!(
            "SELECT beacon.create_project('{}')",
            "b".repeat(50)
        ));
        assert_eq!(count("SELECT 1 FROM beacon.project"), 1);
        // all three roles exist with their full, untruncated names
        assert_eq!(
            count(&format!(
                "SELECT 1 FROM pg_roles WHERE rolname IN ('beacon_{b}_read', 'beacon_{b}_write', 'beacon_{b}_admin')",
                b = "b".repeat(50)
            )),
            3
        );
        assert_eq!(
            count("SELECT 1 FROM pg_namespace WHERE nspname IN ('Shop', 'a b')"),
            0
        );
    }

    #[pg_test]
    fn duplicate_project_and_taken_schema_are_refused() {
        exec("SELECT beacon.create_project('shop')");
        let refused = |sql: &str| sqlstate_of(sql);
        assert_eq!(
            refused("SELECT beacon.create_project('shop')").as_deref(),
            Some("42710"),
            "same project"
        );
        exec("CREATE SCHEMA mine");
        assert_eq!(
            refused("SELECT beacon.create_project('mine')").as_deref(),
            Some("42710"),
            "taken schema"
        );
        assert_eq!(leftovers("mine"), 1, "only the user's own schema");
        // a role someone can log in as is never taken over
        exec("CREATE ROLE beacon_other_read LOGIN");
        assert_eq!(
            refused("SELECT beacon.create_project('other')").as_deref(),
            Some("42710"),
            "login role"
        );
        assert_eq!(
            count("SELECT 1 FROM pg_namespace WHERE nspname = 'other'"),
            0
        );
        // nor one that holds privileges somewhere
        exec("CREATE ROLE beacon_third_write");
        exec("GRANT SELECT ON beacon.projects TO beacon_third_write");
        assert_eq!(
            refused("SELECT beacon.create_project('third')").as_deref(),
            Some("42710"),
            "role in use"
        );
        assert_eq!(
            count("SELECT 1 FROM pg_roles WHERE rolname LIKE 'beacon\\_third\\_%'"),
            1
        );
    }

    #[pg_test]
    fn drop_project_removes_everything() {
        exec("SELECT beacon.create_project('shop')");
        exec("SELECT beacon.collect('shop', 'pageview', '{\"url\": \"/\"}')");
        exec("CREATE ROLE analyst");
        exec("SELECT beacon.grant('shop', 'analyst', 'read')");
        exec("SELECT beacon.drop_project('shop')");
        assert_eq!(leftovers("shop"), 0);
        assert_eq!(
            count("SELECT 1 FROM beacon.collection WHERE project = 'shop'"),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.field WHERE project = 'shop'"),
            0
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.drop_project('shop')").as_deref(),
            Some("3F000")
        );
    }

    #[pg_test]
    fn grant_and_revoke_membership() {
        exec("SELECT beacon.create_project('shop')");
        exec("CREATE ROLE analyst");
        exec("SELECT beacon.grant('shop', 'analyst', 'read')");
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'beacon_shop_read', 'MEMBER')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'beacon_shop_write', 'MEMBER')"),
            Some(false)
        );
        exec("SELECT beacon.revoke('shop', 'analyst', 'read')");
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'beacon_shop_read', 'MEMBER')"),
            Some(false)
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.grant('shop', 'analyst', 'owner')").as_deref(),
            Some("22023")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.grant('nope', 'analyst', 'read')").as_deref(),
            Some("3F000")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.grant('shop', 'no_such_role', 'read')").as_deref(),
            Some("42704")
        );
    }

    #[pg_test]
    fn only_owner_creates_and_only_admin_grants() {
        exec("SELECT beacon.create_project('shop')");
        exec("CREATE ROLE mallory");
        exec("CREATE ROLE analyst");
        exec("SET LOCAL ROLE mallory");
        assert_eq!(
            sqlstate_of("SELECT beacon.create_project('evil')").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.drop_project('shop')").as_deref(),
            Some("42501")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.grant('shop', 'mallory', 'admin')").as_deref(),
            Some("42501")
        );
        exec("RESET ROLE");
        exec("SELECT beacon.grant('shop', 'mallory', 'admin')");
        exec("SET LOCAL ROLE mallory");
        exec("SELECT beacon.grant('shop', 'analyst', 'read')");
        exec("RESET ROLE");
        assert_eq!(
            one::<bool>("SELECT pg_has_role('analyst', 'beacon_shop_read', 'MEMBER')"),
            Some(true)
        );
        assert_eq!(leftovers("evil"), 0);
    }

    #[pg_test]
    fn existing_roles_are_never_adopted() {
        // what DROP DATABASE leaves behind, and what an attacker could prepare: either way
        // the role is refused, and nothing of the project is created
        for prepared in [
            "CREATE ROLE beacon_again_read",
            "CREATE ROLE beacon_again_write NOLOGIN CREATEDB",
            "CREATE ROLE beacon_again_admin; GRANT pg_read_all_data TO beacon_again_admin",
            "CREATE ROLE beacon_again_read SUPERUSER",
            "CREATE ROLE beacon_again_owner NOLOGIN",
            "CREATE ROLE beacon_again_owner SUPERUSER",
        ] {
            exec(prepared);
            assert_eq!(
                sqlstate_of("SELECT beacon.create_project('again')").as_deref(),
                Some("42710"),
                "{prepared}"
            );
            assert_eq!(
                count("SELECT 1 FROM pg_namespace WHERE nspname = 'again'"),
                0,
                "{prepared}"
            );
            exec("DROP ROLE IF EXISTS beacon_again_read, beacon_again_write, beacon_again_admin, beacon_again_owner");
        }
        exec("SELECT beacon.create_project('again')");
        assert_eq!(leftovers("again"), 1 + 4 + 1);
    }
}
