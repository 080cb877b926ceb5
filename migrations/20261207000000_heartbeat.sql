-- Which of the sign-up function's ways registered a row first (`via` in the signed body of
-- POST /user: trigger, queue, sweep), or `jit` for a row GET /users/me provisioned from a
-- token. NULL for rows from before this column. The heartbeat reads it to tell a registration
-- the trigger made from one a later path, or the app, made.
ALTER TABLE users ADD COLUMN registered_via text
    CHECK (registered_via IN ('trigger', 'queue', 'sweep', 'jit'));

-- The heartbeat's read-and-delete. The serving role never deletes (20261126000000_app_role):
-- this function, run with its owner's rights, removes one row and only a heartbeat user's, whose
-- address is in the reserved domain `heartbeat.tollgate.invalid` (shared_auth::heartbeat: under
-- `.invalid`, where no mail is ever delivered, so no person can confirm such an address). It
-- returns the row's `registered_via`; no row when there is no such heartbeat user.
CREATE FUNCTION forget_heartbeat_user(target uuid)
RETURNS TABLE (registered_via text)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.users u
     WHERE u.cognito_sub = target
       AND u.email ~* '^.+@heartbeat\.tollgate\.invalid$'
    RETURNING u.registered_via
$$;

REVOKE ALL ON FUNCTION forget_heartbeat_user(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION forget_heartbeat_user(uuid) TO tollgate_app;
