//! A service role reaches its own database and no other, and migrations run through the pool.

use comptoir_store::{DatabaseSettings, TlsMode};
use comptoir_testkit::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_role_reaches_only_its_own_database() {
    let orders = TestDatabase::create("store_test").await.expect("db a");
    let payments = TestDatabase::create("store_test").await.expect("db b");

    let own = orders
        .connect_as_role(&orders.name)
        .await
        .expect("own database");
    own.simple_query("CREATE TABLE t (x int)")
        .await
        .expect("owner can create tables");

    let other = orders.connect_as_role(&payments.name).await;
    assert!(
        other.is_err(),
        "role {} reached database {}",
        orders.name,
        payments.name
    );
    let postgres = orders.connect_as_role("postgres").await;
    assert!(
        postgres.is_err(),
        "role {} reached the postgres database",
        orders.name
    );

    let row = own
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("role flags");
    assert_eq!((row.get(0), row.get(1), row.get(2)), (false, false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_twice_is_harmless_and_updates_the_password() {
    let db = TestDatabase::create("store_test").await.expect("db");
    let admin = comptoir_testkit::admin_client("postgres")
        .await
        .expect("admin");
    comptoir_store::provision::ensure_service_database(&admin, &db.name, "changed-password")
        .await
        .expect("second run");
    assert!(
        db.connect_as_role(&db.name).await.is_err(),
        "old password must stop working"
    );
}

mod embedded {
    refinery::embed_migrations!("tests/migrations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_migrations_once_and_answers_pings() {
    let db = TestDatabase::create("store_test").await.expect("db");
    let settings = DatabaseSettings {
        tls: TlsMode::Disable,
        pool_size: 2,
        ..db.settings()
    };
    let pool = comptoir_store::connect(&settings).expect("pool");
    comptoir_store::ping(&pool).await.expect("ping");
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .expect("first");
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .expect("second");
    let client = pool.get().await.expect("client");
    let count: i64 = client
        .query_one("SELECT count(*) FROM widgets", &[])
        .await
        .expect("table exists")
        .get(0);
    assert_eq!(count, 1, "the seed row was inserted exactly once");
}

/// Replicas starting together migrate the same database at once: every one succeeds and the
/// migrations run once (without the lock, all but one failed on the duplicate table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_at_once_all_succeed_and_migrate_once() {
    let db = TestDatabase::create("store_test").await.expect("db");
    let settings = DatabaseSettings {
        tls: TlsMode::Disable,
        pool_size: 1,
        ..db.settings()
    };
    let replicas: Vec<_> = (0..4)
        .map(|_| comptoir_store::connect(&settings).expect("pool"))
        .collect();
    let mut runs = tokio::task::JoinSet::new();
    for pool in &replicas {
        let pool = pool.clone();
        runs.spawn(
            async move { comptoir_store::migrate(&pool, embedded::migrations::runner()).await },
        );
    }
    while let Some(result) = runs.join_next().await {
        let result = result.expect("join");
        assert!(result.is_ok(), "a replica failed to migrate: {result:?}");
    }
    let client = replicas[0].get().await.expect("client");
    let count: i64 = client
        .query_one("SELECT count(*) FROM widgets", &[])
        .await
        .expect("table exists")
        .get(0);
    assert_eq!(count, 1, "the seed row was inserted exactly once");
}

#[tokio::test]
async fn a_wrong_password_fails_on_ping_not_on_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("pw");
    std::fs::write(&password, "wrong\n").expect("write");
    let settings = DatabaseSettings {
        port: 1,
        name: "nobody".to_owned(),
        user: "nobody".to_owned(),
        password_file: Some(password),
        connect_timeout_ms: 500,
        ..DatabaseSettings::default()
    };
    let pool = comptoir_store::connect(&settings).expect("pools are lazy");
    assert!(comptoir_store::ping(&pool).await.is_err());
}

fn settings_for(
    db: &TestDatabase,
    tls: TlsMode,
    ca_file: Option<std::path::PathBuf>,
) -> DatabaseSettings {
    DatabaseSettings {
        tls,
        ca_file,
        pool_size: 1,
        ..db.settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_verify_the_server_certificate() {
    let db = TestDatabase::create("store_test").await.expect("db");

    let pool = comptoir_store::connect(&settings_for(
        &db,
        TlsMode::VerifyFull,
        Some(comptoir_testkit::pg_ca_file()),
    ))
    .expect("pool");
    let client = pool.get().await.expect("a TLS connection");
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("ssl status");
    assert!(row.get::<_, bool>(0), "the session must be encrypted");
    let version: String = row.get(1);
    assert!(version.starts_with("TLSv1."), "{version}");

    // The local CA is not a web PKI root: without it, verification must fail.
    let untrusted =
        comptoir_store::connect(&settings_for(&db, TlsMode::VerifyFull, None)).expect("pool");
    assert!(
        comptoir_store::ping(&untrusted).await.is_err(),
        "an unverified server was trusted"
    );

    let plain = comptoir_store::connect(&settings_for(&db, TlsMode::Disable, None)).expect("pool");
    let client = plain.get().await.expect("plain connection");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("ssl status")
        .get(0);
    assert!(!ssl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_service_database_removes_it_and_its_role() {
    let admin = comptoir_testkit::admin_client("postgres")
        .await
        .expect("admin");
    let name = format!("store_drop_{}", comptoir_testkit::unique_suffix());
    comptoir_store::provision::ensure_service_database(&admin, &name, "pw")
        .await
        .expect("create");
    comptoir_store::provision::drop_service_database(&admin, &name)
        .await
        .expect("drop");
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) \
                  + (SELECT count(*) FROM pg_roles WHERE rolname = $1)",
            &[&name],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}

/// A Patroni cluster is reached through a host list: connections try the hosts in order and
/// keep the first that accepts writes. A dead first host is skipped; a server that refuses
/// writes is not kept (a read-only role stands in for a standby here; the fleet lab fails a
/// real Patroni primary over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_skips_dead_hosts_and_keeps_only_a_writable_server() {
    let db = TestDatabase::create("store_test").await.expect("db");
    let host = db.settings().host;

    // The first "host" is a socket directory where no server listens.
    let settings = DatabaseSettings {
        host: format!("/nonexistent-comptoir-socket-dir, {host}"),
        ..db.settings()
    };
    assert!(settings.problems("database").is_empty());
    let pool = comptoir_store::connect(&settings).expect("pool");
    comptoir_store::ping(&pool)
        .await
        .expect("the second host answers");

    // Sessions of the role now refuse writes, as a standby's do.
    let admin = db.admin().await.expect("admin");
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} SET default_transaction_read_only = on",
            db.name
        ))
        .await
        .expect("read-only role");
    let single = comptoir_store::connect(&db.settings()).expect("pool");
    comptoir_store::ping(&single)
        .await
        .expect("one host: no write check, the session is kept");
    let listed = comptoir_store::connect(&DatabaseSettings {
        host: format!("{host},{host}"),
        connect_timeout_ms: 2_000,
        ..db.settings()
    })
    .expect("pool");
    assert!(
        comptoir_store::ping(&listed).await.is_err(),
        "a host list must refuse a server that does not accept writes"
    );
}
