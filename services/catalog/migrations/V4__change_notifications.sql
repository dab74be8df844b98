-- Every change to the catalogue a shopper can see notifies `catalog_changed` in its own
-- transaction: PostgreSQL delivers the notification at commit, and never for a rollback.
-- The read path (src/pages.rs) drops the pages it keeps in memory on it. One per statement,
-- not per row: a bulk load notifies once.
CREATE FUNCTION notify_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_changed', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER products_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION notify_catalog_changed();

CREATE TRIGGER categories_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON categories
    FOR EACH STATEMENT EXECUTE FUNCTION notify_catalog_changed();
