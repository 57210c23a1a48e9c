-- Included twice by plans-10m.sql, once per plan_cache_mode; the variables are set there.
\echo '=== GET /admin/audit?client= : first page (limit 100 + 1)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE audit_client('bench', :'user', 101);
\echo '=== GET /admin/audit?client=&limit=50&after= : the cursor check, then the next page'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE is_cursor_of(:user_after, 'bench');
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE audit_client_after('bench', :'user', :user_after, 51);
\echo '=== GET /admin/audit?room= : first page (limit 100 + 1)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE audit_room('bench', :'room', 101);
\echo '=== GET /admin/audit?room=&after= : next page'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE audit_room_after('bench', :'room', :room_after, 101);
\echo '=== GET /admin/clients/{uid}/mute?asOf= : the user exists, then the stream up to asOf'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE find_client('bench', :'user');
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE stream_until('bench', 'user_preferences', :'user', :'as_of');
\echo '=== POST /admin/rooms/{room}/mutes/check with 1,000 ids'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE muted_among('bench', :'room', :'check_ids');
\echo '=== GET /admin/rooms/{room}/mutes : first page (limit 100 + 1)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE muters_page('bench', :'room', '', 101);
\echo '=== every platform request: the API key'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE app_by_api_key(decode(:'api_hash', 'hex'));
\echo '=== GET /me : authenticate, then the muted rooms'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE authenticate_client(:'client_key', sha256('plans-10m'::bytea));
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE muted_rooms('bench', :'user');
