//! Dropping the extension: refused while projects exist, and with CASCADE every project
//! goes first (schemas, generated functions and triggers, roles) so that nothing is left
//! that calls into the dropped extension; the same for DROP SCHEMA beacon and DROP OWNED BY
//! the extension owner. Only the extension's owner (or a superuser) gets anything done.

mod common;

use common::lifecycle::{
    assert_exact, collect, connect_with_notices, error_of, leftovers, populate, roles,
};
use common::server;
use postgres::Client;

/// A user table outside every project, with a trigger of its own: dropping the extension
/// leaves it, and its inserts, alone.
const USER_TABLE: &str = "CREATE TABLE public.keep_me (v int);
    CREATE FUNCTION public.keep_me_count() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN UPDATE public.keep_me_log SET n = n + 1; RETURN NULL; END $$;
    CREATE TABLE public.keep_me_log (n int); INSERT INTO public.keep_me_log VALUES (0);
    CREATE TRIGGER keep_me_count AFTER INSERT ON public.keep_me
      FOR EACH STATEMENT EXECUTE FUNCTION public.keep_me_count();
    INSERT INTO public.keep_me VALUES (1);";

fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// The relations, functions and triggers of these projects' schemas, by name.
fn objects_of(client: &mut Client, projects: &[&str]) -> String {
    let projects: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
    client
        .query_one(
            "SELECT string_agg(o, ', ' ORDER BY o) FROM (
               SELECT c.oid::regclass::text AS o FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY ($1)
               UNION ALL
               SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = ANY ($1)
               UNION ALL
               SELECT t.tgname || ' on ' || t.tgrelid::regclass::text FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY ($1)) x",
            &[&projects],
        )
        .unwrap()
        .get(0)
}

fn assert_user_table_works(client: &mut Client) {
    client
        .batch_execute("INSERT INTO public.keep_me VALUES (2)")
        .unwrap();
    assert_eq!(count(client, "SELECT count(*) FROM public.keep_me"), 2);
    assert_eq!(
        count(client, "SELECT n::bigint FROM public.keep_me_log"),
        2,
        "the user's own trigger still runs"
    );
}

/// After the drop: nothing of the projects or of pg_beacon in the database, no role of
/// theirs in the cluster, the user's table untouched; then the extension and projects of
/// the same names can be made again, and work.
fn assert_gone_and_remade(client: &mut Client, projects: &[&str]) {
    for project in projects {
        assert_eq!(
            leftovers(client, project),
            Vec::<String>::new(),
            "{project}"
        );
        assert_eq!(roles(client, project), Vec::<String>::new(), "{project}");
    }
    assert_user_table_works(client);
    client.batch_execute("CREATE EXTENSION pg_beacon").unwrap();
    for project in projects {
        populate(client, project);
        collect(client, project, 4, 25);
        assert_exact(client, project);
    }
}

#[test]
fn drop_extension_without_cascade_is_refused_while_projects_exist() {
    let db = "life_restrict";
    let mut client = server().fresh_db(db);
    populate(&mut client, "lr_one");
    populate(&mut client, "lr_two");
    let before = objects_of(&mut client, &["lr_one", "lr_two"]);
    for statement in [
        "DROP EXTENSION pg_beacon",
        "DROP EXTENSION IF EXISTS pg_beacon",
        "DROP EXTENSION IF EXISTS plpgsql_missing_too, pg_beacon RESTRICT",
        "DROP SCHEMA beacon",
    ] {
        let (code, message, hint) = error_of(&mut client, statement)
            .unwrap_or_else(|| panic!("{statement} succeeded with projects"));
        assert_eq!(code, "2BP01", "{statement}: {message}");
        for project in ["lr_one", "lr_two"] {
            assert!(
                message.contains(&format!("\"{project}\"")),
                "{statement}: {message}"
            );
            assert!(
                hint.contains(&format!("beacon.drop_project('{project}')")),
                "{statement}: {hint}"
            );
        }
    }
    // nothing changed: both projects work, every object is still there
    assert_eq!(objects_of(&mut client, &["lr_one", "lr_two"]), before);
    for project in ["lr_one", "lr_two"] {
        collect(&mut client, project, 5, 10);
        assert_exact(&mut client, project);
    }
    // dropping the projects first lets it through
    client
        .batch_execute(
            "SELECT beacon.drop_project('lr_one'); SELECT beacon.drop_project('lr_two');
             DROP EXTENSION pg_beacon",
        )
        .unwrap();
    for project in ["lr_one", "lr_two"] {
        assert_eq!(roles(&mut client, project), Vec::<String>::new());
    }
    server().drop_db(db);
}

#[test]
fn drop_extension_cascade_drops_every_project_first() {
    let db = "life_cascade";
    let mut client = server().fresh_db(db);
    client.batch_execute(USER_TABLE).unwrap();
    populate(&mut client, "lc_one");
    populate(&mut client, "lc_two");
    client
        .batch_execute(
            "DROP ROLE IF EXISTS lc_member; CREATE ROLE lc_member LOGIN;
             SELECT beacon.grant('lc_one', 'lc_member', 'admin')",
        )
        .unwrap();
    // rolled back, it leaves everything as it was
    client
        .batch_execute("BEGIN; DROP EXTENSION pg_beacon CASCADE; ROLLBACK")
        .unwrap();
    for project in ["lc_one", "lc_two"] {
        assert_eq!(roles(&mut client, project).len(), 4, "{project}");
        collect(&mut client, project, 6, 10);
        assert_exact(&mut client, project);
    }
    let (mut dropper, notices) = connect_with_notices(&server().dsn(db, "postgres"));
    dropper
        .batch_execute("DROP EXTENSION pg_beacon CASCADE")
        .unwrap();
    let notices = notices.lock().unwrap().clone();
    for project in ["lc_one", "lc_two"] {
        assert!(
            notices
                .iter()
                .any(|n| n.contains(&format!("dropped project \"{project}\""))),
            "{notices:?}"
        );
    }
    // the member role is the user's, and stays
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'lc_member'"
        ),
        1
    );
    assert_gone_and_remade(&mut client, &["lc_one", "lc_two"]);
    server().drop_db(db);
    client = server().connect("postgres");
    client.batch_execute("DROP ROLE lc_member").unwrap();
}

#[test]
fn drop_extension_listed_with_others_or_if_exists() {
    let db = "life_listed";
    let mut client = server().fresh_db(db);
    client.batch_execute(USER_TABLE).unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .ok();
    let other = if count(
        &mut client,
        "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
    ) == 1
    {
        "pg_stat_statements, "
    } else {
        ""
    };
    populate(&mut client, "ll_one");
    client
        .batch_execute(&format!(
            "DROP EXTENSION IF EXISTS {other}pg_beacon, no_such_extension CASCADE"
        ))
        .unwrap();
    assert_gone_and_remade(&mut client, &["ll_one"]);
    server().drop_db(db);
}

#[test]
fn drop_schema_beacon_cascade_drops_every_project_first() {
    let db = "life_schema";
    let mut client = server().fresh_db(db);
    client.batch_execute(USER_TABLE).unwrap();
    populate(&mut client, "ls_one");
    client.batch_execute("DROP SCHEMA beacon CASCADE").unwrap();
    assert_gone_and_remade(&mut client, &["ls_one"]);
    server().drop_db(db);
}

#[test]
fn drop_owned_by_the_extension_owner() {
    // the bootstrap superuser's objects cannot be dropped with DROP OWNED at all, so the
    // extension gets an owner of its own here
    let db = "life_owned";
    let mut admin = server().connect("postgres");
    admin
        .batch_execute("DROP ROLE IF EXISTS lo_ext_owner; CREATE ROLE lo_ext_owner LOGIN SUPERUSER")
        .unwrap();
    server().plain_db(db);
    let mut client = server().connect_as(db, "lo_ext_owner");
    client
        .batch_execute(&format!("CREATE EXTENSION pg_beacon; {USER_TABLE}"))
        .unwrap();
    populate(&mut client, "lo_one");
    let (code, message, hint) = error_of(&mut client, "DROP OWNED BY lo_ext_owner")
        .expect("DROP OWNED without CASCADE refused while projects exist");
    assert_eq!(code, "2BP01", "{message}");
    assert!(
        message.contains("\"lo_one\"") && message.contains("lo_ext_owner"),
        "{message}"
    );
    assert!(hint.contains("beacon.drop_project('lo_one')"), "{hint}");
    collect(&mut client, "lo_one", 7, 10);
    assert_exact(&mut client, "lo_one");

    // CURRENT_USER is the extension owner too; the user's table is its own and goes with it
    client
        .batch_execute("DROP OWNED BY CURRENT_USER CASCADE")
        .unwrap();
    assert_eq!(leftovers(&mut client, "lo_one"), Vec::<String>::new());
    assert_eq!(roles(&mut client, "lo_one"), Vec::<String>::new());
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relname = 'keep_me'"
        ),
        0
    );
    drop(client);
    server().drop_db(db);
    admin.batch_execute("DROP ROLE lo_ext_owner").unwrap();
}

#[test]
fn only_the_extension_owner_can_drop_it() {
    let db = "life_owner";
    let mut client = server().fresh_db(db);
    populate(&mut client, "lw_one");
    client
        .batch_execute(
            "DROP ROLE IF EXISTS lw_plain, lw_admin;
             CREATE ROLE lw_plain LOGIN; CREATE ROLE lw_admin LOGIN;
             GRANT CREATE ON DATABASE life_owner TO lw_plain, lw_admin;
             SELECT beacon.grant('lw_one', 'lw_admin', 'admin');",
        )
        .unwrap();
    let before = objects_of(&mut client, &["lw_one"]);
    for role in ["lw_plain", "lw_admin"] {
        let (mut attacker, notices) = connect_with_notices(&server().dsn(db, role));
        for statement in [
            "DROP EXTENSION pg_beacon CASCADE",
            "DROP EXTENSION pg_beacon",
            "DROP EXTENSION IF EXISTS pg_beacon CASCADE",
            "DROP SCHEMA beacon CASCADE",
            "DROP OWNED BY postgres CASCADE",
            "DROP OWNED BY CURRENT_USER, postgres CASCADE",
        ] {
            let (code, message, _) = error_of(&mut attacker, statement)
                .unwrap_or_else(|| panic!("{role}: {statement} succeeded"));
            assert_eq!(code, "42501", "{role}: {statement}: {message}");
            assert!(
                message.starts_with("must be owner of")
                    || message.starts_with("permission denied to drop objects"),
                "PostgreSQL's own refusal: {message}"
            );
        }
        // the event trigger does not get in the way of their own schemas and objects
        attacker
            .batch_execute(&format!(
                "CREATE SCHEMA {role}_own; CREATE TABLE {role}_own.t (v int);
                 DROP SCHEMA {role}_own CASCADE; DROP OWNED BY CURRENT_USER"
            ))
            .unwrap();
        let notices = notices.lock().unwrap().clone();
        assert!(
            !notices.iter().any(|n| n.contains("pg_beacon")),
            "{role}: pg_beacon acted before PostgreSQL's check: {notices:?}"
        );
    }
    // the project is intact and works
    assert_eq!(objects_of(&mut client, &["lw_one"]), before);
    assert_eq!(roles(&mut client, "lw_one").len(), 4);
    collect(&mut client, "lw_one", 8, 10);
    assert_exact(&mut client, "lw_one");
    server().drop_db(db);
    server()
        .connect("postgres")
        .batch_execute("DROP ROLE lw_plain, lw_admin")
        .unwrap();
}

#[test]
fn a_project_whose_schema_is_gone_does_not_hold_the_extension() {
    // what pg_restore --clean does: it drops the schemas, then the extension; the roles
    // stay for the restore that follows
    let db = "life_clean";
    let mut client = server().fresh_db(db);
    populate(&mut client, "lg_one");
    client
        .batch_execute("DROP SCHEMA lg_one CASCADE; DROP EXTENSION pg_beacon")
        .unwrap();
    assert_eq!(leftovers(&mut client, "lg_one"), Vec::<String>::new());
    assert_eq!(roles(&mut client, "lg_one").len(), 4, "kept for a restore");
    // and drop_project cleans such a project up
    client
        .batch_execute(
            "CREATE EXTENSION pg_beacon; INSERT INTO beacon.project (name) VALUES ('lg_one');
             SELECT beacon.drop_project('lg_one');",
        )
        .unwrap();
    assert_eq!(roles(&mut client, "lg_one"), Vec::<String>::new());
    server().drop_db(db);
}

#[test]
fn a_project_created_concurrently_is_dropped_too() {
    // create_project commits while DROP EXTENSION ... CASCADE waits for it: the drop sees
    // the new project once it has the catalog to itself, and drops it with the others
    let db = "life_race";
    let mut client = server().fresh_db(db);
    populate(&mut client, "lk_one");
    let mut creator = server().connect(db);
    creator
        .batch_execute("BEGIN; SELECT beacon.create_project('lk_two')")
        .unwrap();
    let dropper = std::thread::spawn(move || {
        let mut dropper = server().connect(db);
        dropper
            .batch_execute("SET application_name = 'lk_dropper'; DROP EXTENSION pg_beacon CASCADE")
    });
    common::eventually("the drop waits for the creating transaction", || {
        count(
            &mut client,
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'lk_dropper' AND wait_event_type = 'Lock'",
        ) == 1
    });
    creator.batch_execute("COMMIT").unwrap();
    dropper.join().unwrap().unwrap();
    for project in ["lk_one", "lk_two"] {
        assert_eq!(
            leftovers(&mut client, project),
            Vec::<String>::new(),
            "{project}"
        );
        assert_eq!(
            roles(&mut client, project),
            Vec::<String>::new(),
            "{project}"
        );
    }
    server().drop_db(db);
}

#[test]
fn a_project_created_while_the_extension_is_dropped_fails() {
    let db = "life_race2";
    let mut client = server().fresh_db(db);
    populate(&mut client, "lk_three");
    client
        .batch_execute("BEGIN; DROP EXTENSION pg_beacon CASCADE")
        .unwrap();
    let creator = std::thread::spawn(move || {
        let mut creator = server().connect(db);
        creator.batch_execute(
            "SET application_name = 'lk_creator'; SELECT beacon.create_project('lk_four')",
        )
    });
    let mut watcher = server().connect(db);
    common::eventually("create_project waits for the drop", || {
        count(
            &mut watcher,
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'lk_creator' AND wait_event_type = 'Lock'",
        ) == 1
    });
    client.batch_execute("COMMIT").unwrap();
    assert!(
        creator.join().unwrap().is_err(),
        "create_project must fail once the extension is gone"
    );
    for project in ["lk_three", "lk_four"] {
        assert_eq!(
            leftovers(&mut client, project),
            Vec::<String>::new(),
            "{project}"
        );
        assert_eq!(
            roles(&mut client, project),
            Vec::<String>::new(),
            "{project}"
        );
    }
    server().drop_db(db);
}

#[test]
fn dropping_an_extension_pg_beacon_depends_on_drops_the_projects_first() {
    // pg_beacon's functions are partly PL/pgSQL: DROP EXTENSION plpgsql CASCADE takes
    // pg_beacon with it, so the projects go first as with DROP EXTENSION pg_beacon CASCADE
    let db = "life_plpgsql";
    let mut client = server().fresh_db(db);
    populate(&mut client, "lp_one");
    let (code, _, _) = error_of(&mut client, "DROP EXTENSION plpgsql")
        .expect("PostgreSQL refuses it without CASCADE: pg_beacon depends on it");
    assert_eq!(code, "2BP01");
    client
        .batch_execute("DROP EXTENSION plpgsql CASCADE")
        .unwrap();
    assert_eq!(leftovers(&mut client, "lp_one"), Vec::<String>::new());
    assert_eq!(roles(&mut client, "lp_one"), Vec::<String>::new());
    client
        .batch_execute(&format!("CREATE EXTENSION plpgsql; {USER_TABLE}"))
        .unwrap();
    assert_gone_and_remade(&mut client, &["lp_one"]);
    server().drop_db(db);
}
