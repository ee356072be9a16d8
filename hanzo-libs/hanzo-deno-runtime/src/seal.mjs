// hanzo-node's seal of a tool's V8 code cache (see codecache.rs), run by the node in the
// sandbox after the code-cache step, on that step's database (Deno.args[0]) only.
//
// Jobs open the database read-only. SQLite can read a WAL-mode database from a read-only
// directory when its -wal and -shm files exist (the node leaves them empty), and deno's
// `PRAGMA optimize` on opening writes only to analyse tables that never were: so fold the
// WAL into the database and ANALYZE once, here, where writing is allowed.
import { DatabaseSync } from "node:sqlite";

const db = new DatabaseSync(Deno.args[0]);
db.exec("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;");
db.close();
