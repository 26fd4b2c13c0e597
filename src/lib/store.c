/* store.c — SQLite state store (see store.h).
 *
 * WAL mode and a busy timeout make the store safe for several processes at
 * once; writers use BEGIN IMMEDIATE so that a conflict shows up at the
 * start of a transaction, never in the middle. The schema carries a
 * version in PRAGMA user_version; migrations run in order on open. */
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

struct rp_store {
  sqlite3 *db;
  char *dir; /* the state directory (for "no space" messages) */
};

/* An I/O error of SQLite on an almost full file system is "no space": say
 * so, with the directory and what is left (F6 of the crash campaign). */
static bool state_dir_full(const rp_store *st, unsigned long long *free_kib)
{
  struct statvfs sv;
  if (!st || !st->dir || statvfs(st->dir, &sv) < 0)
    return false;
  *free_kib = (unsigned long long)sv.f_bavail * sv.f_frsize / 1024;
  return *free_kib < 1024;
}

static int db_err(rp_store *st, int rc, const char *what)
{
  unsigned long long kib = 0;
  if (rc == SQLITE_FULL || ((rc & 0xff) == SQLITE_IOERR && state_dir_full(st, &kib))) {
    if (rc == SQLITE_FULL)
      state_dir_full(st, &kib);
    return rp_err_set(RP_E_NO_SPACE, ENOSPC,
                      "state store: %s: the state directory %s is full (%llu KiB free)", what,
                      st && st->dir ? st->dir : "?", kib);
  }
  rp_errcode code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? RP_E_IN_USE
                    : rc == SQLITE_FULL                          ? RP_E_NO_SPACE
                    : (rc == SQLITE_READONLY || rc == SQLITE_PERM || rc == SQLITE_CANTOPEN)
                        ? RP_E_ACCESS_DENIED
                        : RP_E_FAILED;
  return rp_err_set(code, 0, "state store: %s: %s", what,
                    st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
}

static const char *migrations[] = {
    /* 1 */
    "CREATE TABLE vs(guid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER NOT NULL,"
    " next_seq INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE disk(guid TEXT PRIMARY KEY, vs TEXT NOT NULL REFERENCES vs(guid) ON DELETE "
    "CASCADE, idx INTEGER NOT NULL, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,"
    " UNIQUE(vs, idx));"
    "CREATE TABLE rp(guid TEXT PRIMARY KEY, vs TEXT NOT NULL REFERENCES vs(guid) ON DELETE CASCADE,"
    " seq INTEGER NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL, name TEXT,"
    " consistency INTEGER NOT NULL, has_data INTEGER NOT NULL, data_reason TEXT,"
    " imported INTEGER NOT NULL DEFAULT 0, UNIQUE(vs, seq));"
    "CREATE TABLE rp_disk(rp TEXT NOT NULL REFERENCES rp(guid) ON DELETE CASCADE,"
    " disk TEXT NOT NULL REFERENCES disk(guid), idx INTEGER NOT NULL, rct TEXT NOT NULL,"
    " origin TEXT NOT NULL, PRIMARY KEY(rp, disk));"
    "CREATE TABLE epoch(bitmap TEXT PRIMARY KEY, disk TEXT NOT NULL REFERENCES disk(guid) ON "
    "DELETE CASCADE, start_seq INTEGER NOT NULL, end_seq INTEGER NOT NULL DEFAULT -1,"
    " valid INTEGER NOT NULL, reason TEXT);"
    "CREATE INDEX epoch_disk ON epoch(disk, start_seq);",
    /* 2: what a disk file looked like when it was last found consistent */
    "ALTER TABLE disk ADD COLUMN checked_sig TEXT;",
    /* 3: jobs of refpointd */
    "CREATE TABLE job(id TEXT PRIMARY KEY, type INTEGER NOT NULL, state INTEGER NOT NULL,"
    " percent INTEGER NOT NULL, error_code INTEGER NOT NULL, description TEXT,"
    " started INTEGER NOT NULL, ended INTEGER NOT NULL, detail TEXT);",
    /* 4: running VMs: the QMP socket and the guest agent socket */
    "ALTER TABLE vs ADD COLUMN qmp TEXT; ALTER TABLE vs ADD COLUMN agent TEXT;",
    /* 5: how a running VM's reference points keep their data (NULL: internal
     * snapshot; "fleecing"), and per RP how its data is kept */
    "ALTER TABLE vs ADD COLUMN capture TEXT; ALTER TABLE rp ADD COLUMN data_kind TEXT;",
    /* 6: libvirt-managed VMs: the connection URI, and each disk's target dev */
    "ALTER TABLE vs ADD COLUMN libvirt TEXT; ALTER TABLE disk ADD COLUMN target TEXT;",
};

int rp_store_open(const char *db_path, rp_store **out)
{
  rp_store *st = rp_xcalloc(1, sizeof *st);
  st->dir = rp_xstrdup(db_path);
  char *sl = strrchr(st->dir, '/');
  if (sl && sl != st->dir)
    *sl = '\0';
  else if (!sl)
    strcpy(st->dir, ".");
  int rc = sqlite3_open_v2(db_path, &st->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    db_err(st, rc, db_path);
    rp_store_close(st);
    return -1;
  }
  /* the store names VMs, disks and jobs: private (SQLite gives its -wal and
   * -shm files the database file's mode) */
  chmod(db_path, 0600);
  sqlite3_busy_timeout(st->db, 10000);
  char *em = NULL;
  rc = sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
                            " PRAGMA synchronous=FULL;", NULL, NULL, &em);
  sqlite3_free(em);
  if (rc != SQLITE_OK) {
    db_err(st, rc, "configure");
    rp_store_close(st);
    return -1;
  }
  /* the common case, an up-to-date store, needs no write lock */
  {
    sqlite3_stmt *v;
    int cur = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK) {
      if (sqlite3_step(v) == SQLITE_ROW)
        cur = sqlite3_column_int(v, 0);
      sqlite3_finalize(v);
    }
    if (cur == (int)(sizeof migrations / sizeof *migrations)) {
      *out = st;
      return 0;
    }
  }
  /* migrations, in one immediate transaction so two openers do not race */
  if (rp_store_begin(st) < 0) {
    rp_store_close(st);
    return -1;
  }
  sqlite3_stmt *s;
  int version = 0;
  if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
    if (sqlite3_step(s) == SQLITE_ROW)
      version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
  }
  int latest = (int)(sizeof migrations / sizeof *migrations);
  if (version > latest) {
    rp_store_rollback(st);
    rp_store_close(st);
    return rp_err_set(RP_E_NOT_SUPPORTED, 0,
                      "state store %s: schema version %d is newer than this refpoint (%d)",
                      db_path, version, latest);
  }
  for (int v = version; v < latest; v++) {
    rc = sqlite3_exec(st->db, migrations[v], NULL, NULL, &em);
    sqlite3_free(em);
    if (rc != SQLITE_OK) {
      db_err(st, rc, "migrate");
      rp_store_rollback(st);
      rp_store_close(st);
      return -1;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
    sqlite3_exec(st->db, sql, NULL, NULL, NULL);
  }
  if (rp_store_commit(st) < 0) {
    rp_store_close(st);
    return -1;
  }
  *out = st;
  return 0;
}

void rp_store_close(rp_store *st)
{
  if (!st)
    return;
  sqlite3_close_v2(st->db);
  free(st->dir);
  free(st);
}

static int exec(rp_store *st, const char *sql)
{
  char *em = NULL;
  int rc = sqlite3_exec(st->db, sql, NULL, NULL, &em);
  sqlite3_free(em);
  return rc == SQLITE_OK ? 0 : db_err(st, rc, sql);
}

int rp_store_begin(rp_store *st)
{
  return exec(st, "BEGIN IMMEDIATE");
}
int rp_store_commit(rp_store *st)
{
  return exec(st, "COMMIT");
}
void rp_store_rollback(rp_store *st)
{
  if (!sqlite3_get_autocommit(st->db))
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* prepare + bind: fmt chars: s = text, i = int64 */
static sqlite3_stmt *prep(rp_store *st, const char *sql, const char *fmt, ...)
{
  sqlite3_stmt *s;
  int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
  if (rc != SQLITE_OK) {
    db_err(st, rc, "prepare");
    return NULL;
  }
  va_list ap;
  va_start(ap, fmt);
  for (int i = 0; fmt && fmt[i]; i++) {
    if (fmt[i] == 's') {
      const char *v = va_arg(ap, const char *);
      if (v)
        sqlite3_bind_text(s, i + 1, v, -1, SQLITE_TRANSIENT);
      else
        sqlite3_bind_null(s, i + 1);
    } else
      sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t));
  }
  va_end(ap);
  return s;
}

/* Runs a statement that returns no rows. */
static int run(rp_store *st, sqlite3_stmt *s, const char *what)
{
  if (!s)
    return -1;
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE)
    return db_err(st, rc, what);
  return 0;
}

static char *col(sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text(s, i);
  return t ? rp_xstrdup((const char *)t) : NULL;
}

int rp_store_vs_insert(rp_store *st, const rp_vs_info *vs)
{
  if (run(st,
          prep(st, "INSERT INTO vs(guid,name,created,qmp,agent,capture,libvirt) VALUES(?,?,?,?,?,?,?)",
               "ssissss", vs->name, vs->element_name, rp_now(), vs->qmp_socket, vs->agent_socket,
               vs->capture, vs->libvirt_uri),
          "insert vs") < 0)
    return -1;
  for (size_t i = 0; i < vs->n_disks; i++)
    if (run(st, prep(st, "INSERT INTO disk(guid,vs,idx,path,size,target) VALUES(?,?,?,?,?,?)",
                     "ssisis", vs->disks[i].guid, vs->name, (int64_t)i, vs->disks[i].path,
                     (int64_t)vs->disks[i].virtual_size, vs->disks[i].target),
            "insert disk") < 0)
      return -1;
  return 0;
}

static int load_disks(rp_store *st, rp_vs_info *v)
{
  sqlite3_stmt *s =
      prep(st, "SELECT guid,path,size,target FROM disk WHERE vs=? ORDER BY idx", "s", v->name);
  if (!s)
    return -1;
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (v->n_disks == cap) {
      cap = cap ? cap * 2 : 4;
      v->disks = rp_xrealloc(v->disks, cap * sizeof *v->disks);
    }
    rp_disk_info *d = &v->disks[v->n_disks++];
    d->guid = col(s, 0);
    d->path = col(s, 1);
    d->virtual_size = (uint64_t)sqlite3_column_int64(s, 2);
    d->target = col(s, 3);
    d->instance_id = rp_disk_instance_id(v->name, d->guid);
  }
  sqlite3_finalize(s);
  return rc == SQLITE_DONE ? 0 : db_err(st, rc, "load disks");
}

static int vs_query(rp_store *st, sqlite3_stmt *s, rp_vs_info ***out, size_t *n)
{
  if (!s)
    return -1;
  rp_vs_info **l = NULL;
  size_t cnt = 0;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    rp_vs_info *v = rp_xcalloc(1, sizeof *v);
    v->name = col(s, 0);
    v->element_name = col(s, 1);
    v->qmp_socket = col(s, 2);
    v->agent_socket = col(s, 3);
    v->capture = col(s, 4);
    v->libvirt_uri = col(s, 5);
    l = rp_xrealloc(l, (cnt + 1) * sizeof *l);
    l[cnt++] = v;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    rp_vs_list_free(l, cnt);
    return db_err(st, rc, "query vs");
  }
  for (size_t i = 0; i < cnt; i++)
    if (load_disks(st, l[i]) < 0) {
      rp_vs_list_free(l, cnt);
      return -1;
    }
  *out = l;
  *n = cnt;
  return 0;
}

int rp_store_vs_get(rp_store *st, const char *key, rp_vs_info **out)
{
  rp_vs_info **l;
  size_t n;
  if (vs_query(st, prep(st, "SELECT guid,name,qmp,agent,capture,libvirt FROM vs WHERE guid=lower(?) OR name=?", "ss", key, key),
               &l, &n) < 0)
    return -1;
  if (n == 0) {
    free(l);
    return rp_err_set(RP_E_NOT_FOUND, 0, "virtual system '%s' not found", key);
  }
  *out = l[0];
  for (size_t i = 1; i < n; i++)
    rp_vs_info_free(l[i]);
  free(l);
  return 0;
}

int rp_store_vs_list(rp_store *st, rp_vs_info ***out, size_t *n)
{
  return vs_query(st, prep(st, "SELECT guid,name,qmp,agent,capture,libvirt FROM vs ORDER BY created, name", NULL), out, n);
}

int rp_store_vs_set_live(rp_store *st, const char *guid, const char *qmp, const char *agent,
                         const char *capture)
{
  return run(st, prep(st, "UPDATE vs SET qmp=?, agent=?, capture=? WHERE guid=?", "ssss", qmp,
                      agent, capture, guid),
             "update vs");
}

int rp_store_disk_set_path(rp_store *st, const char *disk_guid, const char *path)
{
  return run(st, prep(st, "UPDATE disk SET path=?, checked_sig=NULL WHERE guid=?", "ss", path,
                      disk_guid),
             "update disk path");
}

int rp_store_vs_has_fleece(rp_store *st, const char *guid)
{
  sqlite3_stmt *s = prep(st,
                         "SELECT 1 FROM rp WHERE vs=? AND data_kind='fleecing' AND has_data=1 "
                         "LIMIT 1",
                         "s", guid);
  if (!s)
    return -1;
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_err(st, rc, "query rp");
}

int rp_store_vs_delete(rp_store *st, const char *guid)
{
  if (run(st, prep(st, "DELETE FROM epoch WHERE disk IN (SELECT guid FROM disk WHERE vs=?)", "s", guid),
          "delete epochs") < 0)
    return -1;
  if (run(st, prep(st, "DELETE FROM disk WHERE vs=?", "s", guid), "delete disks") < 0)
    return -1;
  return run(st, prep(st, "DELETE FROM vs WHERE guid=?", "s", guid), "delete vs");
}

int rp_store_disk_sig(rp_store *st, const char *disk_guid, char **sig)
{
  sqlite3_stmt *s = prep(st, "SELECT checked_sig FROM disk WHERE guid=?", "s", disk_guid);
  if (!s)
    return -1;
  *sig = NULL;
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW)
    *sig = col(s, 0);
  sqlite3_finalize(s);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(st, rc, "disk signature");
}

int rp_store_disk_set_sig(rp_store *st, const char *disk_guid, const char *sig)
{
  return run(st, prep(st, "UPDATE disk SET checked_sig=? WHERE guid=?", "ss", sig, disk_guid),
             "disk signature");
}

int64_t rp_store_vs_take_seq(rp_store *st, const char *guid)
{
  sqlite3_stmt *s = prep(st, "SELECT next_seq FROM vs WHERE guid=?", "s", guid);
  if (!s)
    return -1;
  int64_t seq = -1;
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW)
    seq = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  if (seq < 0) {
    db_err(st, rc, "next sequence");
    return -1;
  }
  if (run(st, prep(st, "UPDATE vs SET next_seq=next_seq+1 WHERE guid=?", "s", guid), "advance") < 0)
    return -1;
  return seq;
}

int rp_store_rp_insert(rp_store *st, const rp_rp_rec *r)
{
  const rp_point_info *p = &r->info;
  if (run(st,
          prep(st,
               "INSERT INTO rp(guid,vs,seq,state,created,name,consistency,has_data,data_reason,"
               "imported,data_kind) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
               "ssisisiisis", p->guid, p->virtual_system_identifier, p->sequence, r->state,
               p->created, p->element_name, (int64_t)p->consistency_level,
               (int64_t)p->has_associated_data, p->data_reason, (int64_t)p->imported,
               r->data_kind),
          "insert rp") < 0)
    return -1;
  for (size_t i = 0; i < p->n_disks; i++)
    if (run(st, prep(st, "INSERT INTO rp_disk(rp,disk,idx,rct,origin) VALUES(?,?,?,?,?)", "ssiss",
                     p->guid, r->disk_guids[i], (int64_t)i, p->rct_identifiers[i],
                     r->origin_disks[i]),
            "insert rp disk") < 0)
      return -1;
  return 0;
}

static int rp_query(rp_store *st, sqlite3_stmt *s, rp_rp_rec ***out, size_t *n)
{
  if (!s)
    return -1;
  rp_rp_rec **l = NULL;
  size_t cnt = 0;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    rp_rp_rec *r = rp_xcalloc(1, sizeof *r);
    rp_point_info *p = &r->info;
    p->guid = col(s, 0);
    p->instance_id = rp_point_instance_id(p->guid);
    p->virtual_system_identifier = col(s, 1);
    p->sequence = sqlite3_column_int64(s, 2);
    r->state = col(s, 3);
    p->created = sqlite3_column_int64(s, 4);
    p->element_name = col(s, 5);
    p->consistency_level = (uint16_t)sqlite3_column_int(s, 6);
    p->has_associated_data = sqlite3_column_int(s, 7) != 0;
    p->data_reason = col(s, 8);
    p->imported = sqlite3_column_int(s, 9) != 0;
    r->data_kind = col(s, 10);
    p->reference_point_type = 2;
    l = rp_xrealloc(l, (cnt + 1) * sizeof *l);
    l[cnt++] = r;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    rp_rp_list_free(l, cnt);
    return db_err(st, rc, "query rp");
  }
  for (size_t i = 0; i < cnt; i++) {
    rp_point_info *p = &l[i]->info;
    sqlite3_stmt *d =
        prep(st, "SELECT disk,rct,origin FROM rp_disk WHERE rp=? ORDER BY idx", "s", p->guid);
    if (!d) {
      rp_rp_list_free(l, cnt);
      return -1;
    }
    while ((rc = sqlite3_step(d)) == SQLITE_ROW) {
      size_t k = p->n_disks++;
      p->virtual_disk_identifiers =
          rp_xrealloc(p->virtual_disk_identifiers, p->n_disks * sizeof(char *));
      p->rct_identifiers = rp_xrealloc(p->rct_identifiers, p->n_disks * sizeof(char *));
      l[i]->disk_guids = rp_xrealloc(l[i]->disk_guids, p->n_disks * sizeof(char *));
      l[i]->origin_disks = rp_xrealloc(l[i]->origin_disks, p->n_disks * sizeof(char *));
      l[i]->disk_guids[k] = col(d, 0);
      p->virtual_disk_identifiers[k] =
          rp_disk_instance_id(p->virtual_system_identifier, l[i]->disk_guids[k]);
      p->rct_identifiers[k] = col(d, 1);
      l[i]->origin_disks[k] = col(d, 2);
    }
    sqlite3_finalize(d);
    if (rc != SQLITE_DONE) {
      rp_rp_list_free(l, cnt);
      return db_err(st, rc, "query rp disks");
    }
  }
  *out = l;
  *n = cnt;
  return 0;
}

#define RP_COLS "guid,vs,seq,state,created,name,consistency,has_data,data_reason,imported,data_kind"

int rp_store_rp_get(rp_store *st, const char *guid, rp_rp_rec **out)
{
  rp_rp_rec **l;
  size_t n;
  if (rp_query(st, prep(st, "SELECT " RP_COLS " FROM rp WHERE guid=lower(?)", "s", guid), &l, &n) < 0)
    return -1;
  if (n == 0) {
    free(l);
    return rp_err_set(RP_E_NOT_FOUND, 0, "reference point '%s' not found", guid);
  }
  *out = l[0];
  free(l);
  return 0;
}

int rp_store_rp_list(rp_store *st, const char *vs_guid, rp_rp_rec ***out, size_t *n)
{
  if (vs_guid)
    return rp_query(st, prep(st, "SELECT " RP_COLS " FROM rp WHERE vs=? ORDER BY seq", "s", vs_guid),
                    out, n);
  return rp_query(st, prep(st, "SELECT " RP_COLS " FROM rp ORDER BY vs, seq", NULL), out, n);
}

int rp_store_rp_set_state(rp_store *st, const char *guid, const char *state)
{
  return run(st, prep(st, "UPDATE rp SET state=? WHERE guid=?", "ss", state, guid), "rp state");
}

int rp_store_rp_set_data(rp_store *st, const char *guid, bool has_data, const char *reason)
{
  return run(st,
             prep(st, "UPDATE rp SET has_data=?, data_reason=? WHERE guid=?", "iss",
                  (int64_t)has_data, reason, guid),
             "rp data");
}

int rp_store_rp_delete(rp_store *st, const char *guid)
{
  if (run(st, prep(st, "DELETE FROM rp_disk WHERE rp=?", "s", guid), "delete rp disks") < 0)
    return -1;
  return run(st, prep(st, "DELETE FROM rp WHERE guid=?", "s", guid), "delete rp");
}

void rp_rp_rec_free(rp_rp_rec *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->info.n_disks; i++) {
    free(r->disk_guids[i]);
    free(r->origin_disks[i]);
  }
  free(r->disk_guids);
  free(r->origin_disks);
  free(r->state);
  free(r->data_kind);
  rp_point_info *p = &r->info;
  for (size_t i = 0; i < p->n_disks; i++) {
    free(p->virtual_disk_identifiers[i]);
    free(p->rct_identifiers[i]);
  }
  free(p->virtual_disk_identifiers);
  free(p->rct_identifiers);
  free(p->instance_id);
  free(p->guid);
  free(p->virtual_system_identifier);
  free(p->element_name);
  free(p->data_reason);
  free(p->tracking_reason);
  free(r);
}

rp_point_info *rp_rp_rec_take_info(rp_rp_rec *r)
{
  for (size_t i = 0; i < r->info.n_disks; i++) {
    free(r->disk_guids[i]);
    free(r->origin_disks[i]);
  }
  free(r->disk_guids);
  free(r->origin_disks);
  r->disk_guids = r->origin_disks = NULL;
  rp_point_info *p = rp_xmalloc(sizeof *p);
  *p = r->info;
  memset(&r->info, 0, sizeof r->info);
  rp_rp_rec_free(r);
  return p;
}

void rp_rp_list_free(rp_rp_rec **l, size_t n)
{
  for (size_t i = 0; i < n; i++)
    rp_rp_rec_free(l[i]);
  free(l);
}

int rp_store_epochs(rp_store *st, const char *disk_guid, rp_epoch **out, size_t *n)
{
  sqlite3_stmt *s = prep(st,
                         "SELECT bitmap,disk,start_seq,end_seq,valid,reason FROM epoch WHERE disk=?"
                         " ORDER BY start_seq",
                         "s", disk_guid);
  if (!s)
    return -1;
  rp_epoch *l = NULL;
  size_t cnt = 0;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    l = rp_xrealloc(l, (cnt + 1) * sizeof *l);
    rp_epoch *e = &l[cnt++];
    e->bitmap = col(s, 0);
    e->disk = col(s, 1);
    e->start_seq = sqlite3_column_int64(s, 2);
    e->end_seq = sqlite3_column_int64(s, 3);
    e->valid = sqlite3_column_int(s, 4) != 0;
    e->reason = col(s, 5);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    rp_epochs_free(l, cnt);
    return db_err(st, rc, "query epochs");
  }
  *out = l;
  *n = cnt;
  return 0;
}

int rp_store_epoch_insert(rp_store *st, const rp_epoch *e)
{
  return run(st,
             prep(st,
                  "INSERT INTO epoch(bitmap,disk,start_seq,end_seq,valid,reason) VALUES(?,?,?,?,?,?)",
                  "ssiiis", e->bitmap, e->disk, e->start_seq, e->end_seq, (int64_t)e->valid,
                  e->reason),
             "insert epoch");
}

int rp_store_epoch_update(rp_store *st, const rp_epoch *e)
{
  return run(st,
             prep(st, "UPDATE epoch SET start_seq=?, end_seq=?, valid=?, reason=? WHERE bitmap=?",
                  "iiiss", e->start_seq, e->end_seq, (int64_t)e->valid, e->reason, e->bitmap),
             "update epoch");
}

int rp_store_epoch_delete(rp_store *st, const char *bitmap)
{
  return run(st, prep(st, "DELETE FROM epoch WHERE bitmap=?", "s", bitmap), "delete epoch");
}

void rp_epochs_free(rp_epoch *e, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(e[i].bitmap);
    free(e[i].disk);
    free(e[i].reason);
  }
  free(e);
}

int rp_store_job_put(rp_store *st, const rp_job_record *r)
{
  return run(st,
             prep(st,
                  "INSERT OR REPLACE INTO job(id,type,state,percent,error_code,description,started,"
                  "ended,detail) VALUES(?,?,?,?,?,?,?,?,?)",
                  "siiiisiis", r->id, (int64_t)r->type, (int64_t)r->state, (int64_t)r->percent,
                  (int64_t)r->error_code, r->description, r->started, r->ended, r->detail),
             "put job");
}

int rp_store_job_list(rp_store *st, rp_job_record **out, size_t *n)
{
  sqlite3_stmt *s = prep(st,
                         "SELECT id,type,state,percent,error_code,description,started,ended,detail"
                         " FROM job ORDER BY started",
                         NULL);
  if (!s)
    return -1;
  rp_job_record *l = NULL;
  size_t cnt = 0;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    l = rp_xrealloc(l, (cnt + 1) * sizeof *l);
    rp_job_record *r = &l[cnt++];
    memset(r, 0, sizeof *r);
    const unsigned char *id = sqlite3_column_text(s, 0);
    snprintf(r->id, sizeof r->id, "%s", id ? (const char *)id : "");
    r->type = sqlite3_column_int(s, 1);
    r->state = sqlite3_column_int(s, 2);
    r->percent = sqlite3_column_int(s, 3);
    r->error_code = (uint32_t)sqlite3_column_int64(s, 4);
    r->description = col(s, 5);
    r->started = sqlite3_column_int64(s, 6);
    r->ended = sqlite3_column_int64(s, 7);
    r->detail = col(s, 8);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    rp_jobrec_list_free(l, cnt);
    return db_err(st, rc, "list jobs");
  }
  *out = l;
  *n = cnt;
  return 0;
}

int rp_store_job_delete(rp_store *st, const char *id)
{
  return run(st, prep(st, "DELETE FROM job WHERE id=?", "s", id), "delete job");
}

void rp_jobrec_list_free(rp_job_record *l, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(l[i].description);
    free(l[i].detail);
  }
  free(l);
}
