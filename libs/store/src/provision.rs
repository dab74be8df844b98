//! Database-per-service provisioning.
//!
//! [`ensure_service_database`] creates (or updates) a login role and a database of the same
//! name owned by it, and withdraws the default `CONNECT` that PostgreSQL grants to `PUBLIC`, so
//! the role reaches its own database and no other service's. Run with an administrator
//! connection; it is idempotent.

use tokio_postgres::Client;

use crate::StoreError;

/// Checks that `name` is a safe, unquoted PostgreSQL identifier.
pub fn identifier(name: &str) -> Result<&str, StoreError> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Identifier(name.to_owned()))
    }
}

/// A string literal for SQL statements that take no bind parameters (`ALTER ROLE … PASSWORD`).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates or updates role `name` (LOGIN, no other privilege) with `password`, and database
/// `name` owned by it, reachable only by that role and administrators.
pub async fn ensure_service_database(
    admin: &Client,
    name: &str,
    password: &str,
) -> Result<(), StoreError> {
    let name = identifier(name)?;
    let role_exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await?
        .is_some();
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    admin
        .batch_execute(&format!(
            "{verb} ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             PASSWORD {}",
            literal(password)
        ))
        .await?;
    let db_exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !db_exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {name}"))
            .await?;
    }
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {name} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}"
        ))
        .await?;
    Ok(())
}

/// Drops a database and its role (tests clean up after themselves with it).
pub async fn drop_service_database(admin: &Client, name: &str) -> Result<(), StoreError> {
    let name = identifier(name)?;
    // Two statements, two round trips: DROP DATABASE refuses to run inside the implicit
    // transaction a multi-statement query gets.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_restricted() {
        assert!(identifier("catalog").is_ok());
        assert!(identifier("catalog_test_1").is_ok());
        for bad in [
            "",
            "1abc",
            "Catalog",
            "cat-alog",
            "x; DROP TABLE y",
            &"a".repeat(64),
        ] {
            assert!(identifier(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn literals_escape_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
    }
}
