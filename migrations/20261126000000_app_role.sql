-- The role the api serves as: only what the routes need on `users` (read, register, update a
-- replayed registration; never delete, never DDL, nothing else in the database). Login roles
-- become members of it where their password is known — the api does it at start, as the
-- owner, from the secret named by `api.db_secret_id` — so no password enters a migration.
-- NOLOGIN: nobody connects as this role itself.
-- Roles belong to the whole cluster, so databases migrating side by side (tests) may race to
-- create it: whoever loses finds it made.
DO $$
BEGIN
    BEGIN
        CREATE ROLE tollgate_app NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tollgate_app', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO tollgate_app;
GRANT SELECT, INSERT, UPDATE ON users TO tollgate_app;
