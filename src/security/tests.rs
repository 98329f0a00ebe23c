use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::security::OWNER_SETTINGS;
    use crate::testing::{exec, one};
    use pgrx::prelude::*;

    /// Every SECURITY DEFINER function pg_beacon has (its own and the ones it generates)
    /// reads its SQL under OWNER_SETTINGS, whatever the caller set.
    #[pg_test]
    fn every_security_definer_function_pins_the_owner_settings() {
        exec("SELECT beacon.create_project('shop')");
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/", "price": 2}')"#);
        exec("SELECT beacon.create_continuous_query('shop', 'per_url', 'SELECT url, count(*) AS n FROM pageview GROUP BY url')");
        exec("SELECT beacon.subscribe('shop', 'pageview', 'price > 1')");
        let expected: Vec<String> = OWNER_SETTINGS
            .iter()
            .map(|(name, value)| format!("{}={value}", name.to_lowercase()))
            .collect();
        let functions = one::<i64>(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE p.prosecdef AND n.nspname IN ('beacon', 'shop')",
        )
        .unwrap();
        assert!(functions >= 7, "{functions} SECURITY DEFINER functions");
        let missing = Spi::get_one_with_args::<String>(
            "SELECT string_agg(n.nspname || '.' || p.proname || ' lacks ' || s, '; ')
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
                    unnest($1::text[]) AS s
              WHERE p.prosecdef AND n.nspname IN ('beacon', 'shop')
                AND NOT s = ANY (SELECT lower(split_part(c, '=', 1)) || '=' || substr(c, strpos(c, '=') + 1)
                                   FROM unnest(coalesce(p.proconfig, '{}')) AS c)",
            &[expected.into()],
        )
        .unwrap();
        assert_eq!(missing, None);
    }

    /// The owner's settings hold inside elevated code and the caller's come back after it.
    #[pg_test]
    fn elevation_pins_settings_and_restores_the_callers() {
        exec("SET search_path = public, pg_catalog");
        exec("SET standard_conforming_strings = off");
        exec("SET DateStyle = 'German, DMY'");
        exec("SELECT beacon.create_project('shop')");
        assert_eq!(
            one::<String>("SELECT current_setting('search_path')").as_deref(),
            Some("public, pg_catalog")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('standard_conforming_strings')").as_deref(),
            Some("off")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('DateStyle')").as_deref(),
            Some("German, DMY")
        );
        // a failing elevated call restores them too (the subtransaction aborts)
        assert_eq!(
            crate::testing::sqlstate_of("SELECT beacon.create_project('shop')").as_deref(),
            Some("42710")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('search_path')").as_deref(),
            Some("public, pg_catalog")
        );
    }
}
