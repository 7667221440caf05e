//! Proves the test harness itself works against the real servers.

use crate::common;

use common::{MariaDb, PgServer, free_port};

#[test]
fn free_ports_are_bindable() {
    let a = free_port();
    assert_ne!(a, 0);
    std::net::TcpListener::bind(("127.0.0.1", a)).expect("free port is bindable");
}

#[tokio::test]
async fn postgres_tcp_login_needs_password() {
    let pg = PgServer::start();
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(
        (pg.user.as_str(), pg.password.as_str(), pg.db.as_str()),
        ("etl", "etl_pw_123", "shop")
    );

    // etl over TCP with the right password.
    let client = pg.client().await;
    let row = client.query_one("select 1::int4", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    let row = client
        .query_one("select current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "etl");
    assert_eq!(row.get::<_, String>(1), "shop");

    // Fixtures through the admin socket are visible to etl over TCP.
    pg.psql_admin("create table items(id int primary key, name text);\ninsert into items values (1, 'a'), (2, 'b');");
    let out = pg.psql_admin("select id, name from items order by id");
    assert_eq!(out, "1|a\n2|b\n");
    let n: i64 = client
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // A wrong password is rejected over TCP (28P01 invalid_password).
    let mut bad = pg.config();
    bad.password("not_the_password");
    let err = match common::connect(&bad).await {
        Ok(_) => panic!("wrong password must be rejected"),
        Err(e) => e,
    };
    assert_eq!(common::sqlstate(&err), "28P01", "{err:?}");

    // expect_err helper.
    let msg = common::expect_err(&client, "select * from no_such_table", "42P01").await;
    assert!(msg.contains("no_such_table"), "{msg}");

    // stop / start_again on the same port.
    drop(client);
    pg.stop();
    assert!(common::connect(&pg.config()).await.is_err());
    pg.start_again();
    let client = pg.client().await;
    let n: i64 = client
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn mariadb_tcp_login() {
    let m = MariaDb::start();
    assert_eq!(m.host(), "127.0.0.1");

    let out = m.cli_tcp("SELECT 1");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");

    // Root fixtures over the socket, read back as etl over TCP.
    m.sql("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20));\nINSERT INTO items VALUES (1, 'ä'), (2, 'b');");
    let out = m.cli_tcp("SELECT id, name FROM items ORDER BY id");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\tä\n2\tb\n");
    assert_eq!(m.sql("SELECT COUNT(*) FROM items"), "2\n");

    // Wrong password is rejected.
    let out = std::process::Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
        .arg(m.port.to_string())
        .args(["-u", "etl", "-pwrong_pw", "shop", "-e", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Access denied"),
        "{out:?}"
    );
}

#[test]
fn servers_run_side_by_side() {
    let a = PgServer::start();
    let b = PgServer::start();
    assert_ne!(a.port, b.port);
    assert_eq!(a.psql_admin("select 1"), "1\n");
    assert_eq!(b.psql_admin("select 2"), "2\n");
}
