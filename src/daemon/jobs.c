/* jobs.c — see jobs.h. A job's thread opens its own rp_ctx (one per
 * thread, as librefpoint requires), runs the operation with an rp_job for
 * progress and cancellation, and records the outcome under the table lock. */
#define _GNU_SOURCE 1
#include "jobs.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEEP_SECONDS 300 /* TimeBeforeRemoval: 5 minutes */

typedef struct djob {
  djob_view v;
  rp_job *job;
  char *state_dir, *arg_vs, *arg_rp, *arg_dir, *arg_base;
  char **arg_disks;
  size_t arg_n;
  uint16_t type, level;
  struct djob *next;
} djob;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static djob *jobs;

static char *dup(const char *s)
{
  return s ? strdup(s) : NULL;
}

static void uuid(char out[37])
{
  FILE *f = fopen("/dev/urandom", "re");
  unsigned char b[16] = {0};
  if (f) {
    if (fread(b, 1, 16, f) != 16)
      abort();
    fclose(f);
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

/* Writes the job's record to the store (its own context: any thread). */
static void persist(djob *j)
{
  json_t *d = json_object(), *disks = json_array(), *files = json_array();
  pthread_mutex_lock(&lock);
  rp_job_record r = {.type = j->v.type, .state = j->v.state, .percent = j->v.percent,
                     .error_code = j->v.error_code, .started = j->v.start, .ended = j->v.end};
  memcpy(r.id, j->v.id, sizeof r.id);
  r.description = strdup(j->v.desc);
#define S(k, v) json_object_set_new(d, k, (v) ? json_string(v) : json_null())
  S("rp_id", j->v.rp_id);
  S("vs_id", j->v.vs_id);
  S("base_id", j->v.base_id);
  S("export_dir", j->v.export_dir);
  S("export_path", j->v.export_path);
  S("config", j->v.config);
  S("runtime", j->v.runtime);
  S("arg_rp", j->arg_rp);
#undef S
  for (size_t i = 0; i < j->v.n; i++) {
    json_array_append_new(disks, json_string(j->v.disks[i]));
    json_array_append_new(files, json_string(j->v.files[i]));
  }
  pthread_mutex_unlock(&lock);
  json_object_set_new(d, "disks", disks);
  json_object_set_new(d, "files", files);
  r.detail = json_dumps(d, JSON_COMPACT);
  json_decref(d);
  rp_ctx *ctx = rp_open(j->state_dir);
  if (!ctx || rp_jobrec_put(ctx, &r) < 0)
    fprintf(stderr, "refpointd: job %s not recorded: %s\n", r.id, rp_last_error()->message);
  rp_close(ctx);
  free(r.description);
  free(r.detail);
}

static void progress(void *user, uint64_t done, uint64_t total)
{
  djob *j = user;
  pthread_mutex_lock(&lock);
  j->v.percent = total ? (int)(done * 100 / total) : 0;
  if (j->v.percent > 99)
    j->v.percent = 99; /* 100 once the export has landed */
  pthread_mutex_unlock(&lock);
}

static void finish(djob *j, int rc, uint32_t code)
{
  pthread_mutex_lock(&lock);
  j->v.end = (int64_t)time(NULL);
  if (rc == 0) {
    j->v.state = 7;
    j->v.percent = 100;
  } else {
    const rp_error *e = rp_last_error();
    j->v.state = e->code == RP_E_CANCELLED ? 8 : 10;
    j->v.error_code = code;
    snprintf(j->v.desc, sizeof j->v.desc, "%s: %s", rp_err_sentence(e->code), e->message);
  }
  pthread_mutex_unlock(&lock);
  persist(j);
}

/* the RP a job made or worked on, shown in its view */
static void record_point(djob *j, rp_point_info *p)
{
  pthread_mutex_lock(&lock);
  free(j->v.rp_id);
  free(j->v.vs_id);
  j->v.rp_id = dup(p->instance_id);
  j->v.vs_id = dup(p->virtual_system_identifier);
  pthread_mutex_unlock(&lock);
  rp_point_info_free(p);
}

static const char *export_group;
void djob_set_export_group(const char *group) { export_group = group; }

static void *run(void *arg)
{
  djob *j = arg;
  rp_ctx *ctx = rp_open(j->state_dir);
  if (ctx)
    rp_set_export_group(ctx, export_group);
  if (!ctx) {
    finish(j, -1, j->v.type == DJ_CREATE ? 2 : 32768);
    return NULL;
  }
  if (j->v.type == DJ_DESTROY || j->v.type == DJ_REMOVE || j->v.type == DJ_IMPORT) {
    int rc;
    if (j->v.type == DJ_IMPORT) {
      rp_point_info *p = NULL;
      rc = rp_point_import(ctx, j->arg_vs, j->arg_dir, j->arg_base, j->job, &p);
      if (rc == 0)
        record_point(j, p);
    } else
      rc = j->v.type == DJ_DESTROY ? rp_point_destroy(ctx, j->arg_rp, j->job)
                                   : rp_point_remove_data(ctx, j->arg_rp, j->job);
    finish(j, rc, rc ? rp_err_hyperv_code(rp_last_error()->code) : 0);
  } else if (j->v.type == DJ_CREATE) {
    rp_point_info *p;
    int rc = rp_point_create(ctx, j->arg_vs, j->type, j->level, j->job, &p);
    if (rc == 0)
      record_point(j, p);
    finish(j, rc, rc ? rp_err_cim_code(rp_last_error()->code) : 0);
  } else {
    rp_export_opts o = {.base_rp = j->arg_base, .disks = (const char *const *)j->arg_disks,
                        .n_disks = j->arg_n};
    rp_export_result *res;
    int rc = rp_export(ctx, j->arg_rp, j->arg_dir, &o, j->job, &res);
    if (rc == 0) {
      pthread_mutex_lock(&lock);
      j->v.rp_id = dup(res->rp_id);
      j->v.vs_id = dup(res->vs_id);
      j->v.base_id = dup(res->base_rp_id);
      j->v.export_path = dup(res->export_path);
      j->v.config = dup(res->config_file);
      j->v.runtime = dup(res->runtime_file);
      j->v.n = res->n_disks;
      j->v.disks = calloc(res->n_disks + 1, sizeof(char *));
      j->v.files = calloc(res->n_disks + 1, sizeof(char *));
      for (size_t i = 0; i < res->n_disks; i++) {
        j->v.disks[i] = dup(res->disk_ids[i]);
        j->v.files[i] = dup(res->disk_files[i]);
      }
      pthread_mutex_unlock(&lock);
      rp_export_result_free(res);
    }
    finish(j, rc, rc ? rp_err_hyperv_code(rp_last_error()->code) : 0);
  }
  rp_close(ctx);
  return NULL;
}

static int start(djob *j, char id[37])
{
  uuid(j->v.id);
  j->v.state = 4;
  j->v.start = (int64_t)time(NULL);
  j->job = rp_job_new(progress, j);
  pthread_mutex_lock(&lock);
  j->next = jobs;
  jobs = j;
  pthread_mutex_unlock(&lock);
  persist(j);
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &a, run, j) != 0) {
    pthread_attr_destroy(&a);
    finish(j, -1, 32768);
    return -1;
  }
  pthread_attr_destroy(&a);
  memcpy(id, j->v.id, 37);
  return 0;
}

int djob_create(const char *state_dir, const char *vs, uint16_t type, uint16_t level, char id[37])
{
  djob *j = calloc(1, sizeof *j);
  j->v.type = DJ_CREATE;
  j->state_dir = dup(state_dir);
  j->arg_vs = dup(vs);
  j->v.vs_id = NULL;
  j->type = type;
  j->level = level;
  return start(j, id);
}

int djob_simple(const char *state_dir, int type, const char *arg, const char *arg2,
                const char *arg3, char id[37])
{
  djob *j = calloc(1, sizeof *j);
  j->v.type = type;
  j->state_dir = dup(state_dir);
  if (type == DJ_IMPORT) {
    j->arg_vs = dup(arg);
    j->arg_dir = dup(arg2);  /* config file */
    j->arg_base = dup(arg3); /* runtime-state file */
  } else {
    j->arg_rp = dup(arg);
    j->v.rp_id = dup(arg);
  }
  return start(j, id);
}

int djob_export(const char *state_dir, const char *rp, const char *dir, const char *base,
                char *const *disks, size_t n, char id[37])
{
  djob *j = calloc(1, sizeof *j);
  j->v.type = DJ_EXPORT;
  j->state_dir = dup(state_dir);
  j->arg_rp = dup(rp);
  j->arg_dir = dup(dir);
  j->arg_base = dup(base);
  j->v.export_dir = dup(dir);
  j->arg_disks = calloc(n + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    j->arg_disks[i] = dup(disks[i]);
  j->arg_n = n;
  return start(j, id);
}

static void copy_view(djob_view *o, const djob_view *v)
{
  *o = *v;
  o->rp_id = dup(v->rp_id);
  o->vs_id = dup(v->vs_id);
  o->base_id = dup(v->base_id);
  o->export_dir = dup(v->export_dir);
  o->export_path = dup(v->export_path);
  o->config = dup(v->config);
  o->runtime = dup(v->runtime);
  o->disks = calloc(v->n + 1, sizeof(char *));
  o->files = calloc(v->n + 1, sizeof(char *));
  for (size_t i = 0; i < v->n; i++) {
    o->disks[i] = dup(v->disks[i]);
    o->files[i] = dup(v->files[i]);
  }
}

void djob_view_clear(djob_view *v)
{
  free(v->rp_id);
  free(v->vs_id);
  free(v->base_id);
  free(v->export_dir);
  free(v->export_path);
  free(v->config);
  free(v->runtime);
  for (size_t i = 0; i < v->n; i++) {
    free(v->disks[i]);
    free(v->files[i]);
  }
  free(v->disks);
  free(v->files);
  memset(v, 0, sizeof *v);
}

void djob_views_free(djob_view *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    djob_view_clear(&v[i]);
  free(v);
}

static char *expired_ids[256];
static char *expired_dir;
static int n_expired;

/* drops jobs that ended more than KEEP_SECONDS ago; call with the lock held;
 * their records are deleted by forget_expired, without the lock */
static void expire(void)
{
  int64_t now = (int64_t)time(NULL);
  for (djob **pp = &jobs; *pp;) {
    djob *j = *pp;
    if (j->v.end && now - j->v.end > KEEP_SECONDS) {
      if (n_expired < 256) {
        expired_ids[n_expired++] = strdup(j->v.id);
        if (!expired_dir)
          expired_dir = dup(j->state_dir);
      }
      *pp = j->next;
      djob_view_clear(&j->v);
      rp_job_free(j->job);
      free(j->state_dir);
      free(j->arg_vs);
      free(j->arg_rp);
      free(j->arg_dir);
      free(j->arg_base);
      for (size_t i = 0; i < j->arg_n; i++)
        free(j->arg_disks[i]);
      free(j->arg_disks);
      free(j);
    } else
      pp = &j->next;
  }
}

static void forget_expired(void)
{
  char *ids[256];
  int n;
  char *dir;
  pthread_mutex_lock(&lock);
  n = n_expired;
  memcpy(ids, expired_ids, sizeof ids);
  n_expired = 0;
  dir = expired_dir;
  expired_dir = NULL;
  pthread_mutex_unlock(&lock);
  if (!n) {
    free(dir);
    return;
  }
  rp_ctx *ctx = rp_open(dir);
  for (int i = 0; i < n; i++) {
    if (ctx)
      rp_jobrec_delete(ctx, ids[i]);
    free(ids[i]);
  }
  rp_close(ctx);
  free(dir);
}

size_t djob_list(djob_view **out)
{
  forget_expired();
  pthread_mutex_lock(&lock);
  expire();
  size_t n = 0;
  for (djob *j = jobs; j; j = j->next)
    n++;
  *out = calloc(n ? n : 1, sizeof **out);
  size_t i = 0;
  for (djob *j = jobs; j; j = j->next)
    copy_view(&(*out)[i++], &j->v);
  pthread_mutex_unlock(&lock);
  return n;
}

int djob_get(const char *id, djob_view *out)
{
  int rc = -1;
  forget_expired();
  pthread_mutex_lock(&lock);
  expire();
  for (djob *j = jobs; j; j = j->next)
    if (!strcasecmp(j->v.id, id)) {
      copy_view(out, &j->v);
      rc = 0;
      break;
    }
  pthread_mutex_unlock(&lock);
  return rc;
}

int djob_cancel(const char *id)
{
  int rc = -1;
  pthread_mutex_lock(&lock);
  for (djob *j = jobs; j; j = j->next)
    if (!strcasecmp(j->v.id, id)) {
      rc = j->v.state == 4 ? 0 : 1;
      if (rc == 0)
        rp_job_cancel(j->job);
      break;
    }
  pthread_mutex_unlock(&lock);
  return rc;
}

static char *jstr(json_t *d, const char *k)
{
  const char *v = json_string_value(json_object_get(d, k));
  return v ? strdup(v) : NULL;
}

/* Whether the export job j (restored as running) left a complete export:
 * <export_dir>/<RP GUID>/manifest.json says Complete for this RP. Fills
 * the job's disks and files from it. */
static bool export_completed(djob *j)
{
  const char *id = j->v.rp_id ? j->v.rp_id : j->arg_rp;
  if (!j->v.export_dir || !id)
    return false;
  const char *guid = !strncasecmp(id, "Microsoft:", 10) ? id + 10 : id;
  if (strlen(guid) != 36 || strchr(guid, '/'))
    return false;
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s/manifest.json", j->v.export_dir, guid) >= (int)sizeof path)
    return false;
  json_t *m = json_load_file(path, 0, NULL);
  const char *mid = json_string_value(json_object_get(m, "ReferencePointId"));
  bool ok = json_is_true(json_object_get(m, "Complete")) && mid &&
            !strcasecmp(!strncasecmp(mid, "Microsoft:", 10) ? mid + 10 : mid, guid);
  json_t *ds = json_object_get(m, "Disks");
  if (ok && json_array_size(ds) > 0) {
    for (size_t k = 0; k < j->v.n; k++) {
      free(j->v.disks[k]);
      free(j->v.files[k]);
    }
    free(j->v.disks);
    free(j->v.files);
    j->v.n = json_array_size(ds);
    j->v.disks = calloc(j->v.n + 1, sizeof(char *));
    j->v.files = calloc(j->v.n + 1, sizeof(char *));
    for (size_t k = 0; k < j->v.n; k++) {
      json_t *e = json_array_get(ds, k);
      const char *iid = json_string_value(json_object_get(e, "InstanceID"));
      const char *f = json_string_value(json_object_get(e, "File"));
      j->v.disks[k] = iid ? strdup(iid) : NULL;
      if (f && !strchr(f, '/') && asprintf(&j->v.files[k], "%s/%s/%s", j->v.export_dir, guid, f) < 0)
        j->v.files[k] = NULL;
    }
    if (!j->v.export_path && asprintf(&j->v.export_path, "%s/%s", j->v.export_dir, guid) < 0)
      j->v.export_path = NULL;
  }
  json_decref(m);
  return ok;
}

int djob_restore(const char *state_dir)
{
  rp_ctx *ctx = rp_open(state_dir);
  if (!ctx)
    return -1;
  rp_job_record *l;
  size_t n;
  if (rp_jobrec_list(ctx, &l, &n) < 0) {
    rp_close(ctx);
    return -1;
  }
  int64_t now = (int64_t)time(NULL);
  for (size_t i = 0; i < n; i++) {
    rp_job_record *r = &l[i];
    if (r->ended && now - r->ended > KEEP_SECONDS) {
      rp_jobrec_delete(ctx, r->id);
      continue;
    }
    djob *j = calloc(1, sizeof *j);
    memcpy(j->v.id, r->id, sizeof r->id);
    j->v.type = r->type;
    j->v.state = r->state;
    j->v.percent = r->percent;
    j->v.error_code = r->error_code;
    snprintf(j->v.desc, sizeof j->v.desc, "%s", r->description ? r->description : "");
    j->v.start = r->started;
    j->v.end = r->ended;
    j->state_dir = dup(state_dir);
    json_t *d = r->detail ? json_loads(r->detail, 0, NULL) : NULL;
    j->v.rp_id = jstr(d, "rp_id");
    j->v.vs_id = jstr(d, "vs_id");
    j->v.base_id = jstr(d, "base_id");
    j->v.export_dir = jstr(d, "export_dir");
    j->v.export_path = jstr(d, "export_path");
    j->v.config = jstr(d, "config");
    j->v.runtime = jstr(d, "runtime");
    j->arg_rp = jstr(d, "arg_rp");
    json_t *ds = json_object_get(d, "disks"), *fs = json_object_get(d, "files");
    j->v.n = json_array_size(ds);
    j->v.disks = calloc(j->v.n + 1, sizeof(char *));
    j->v.files = calloc(j->v.n + 1, sizeof(char *));
    for (size_t k = 0; k < j->v.n; k++) {
      j->v.disks[k] = dup(json_string_value(json_array_get(ds, k)));
      j->v.files[k] = dup(json_string_value(json_array_get(fs, k)));
    }
    json_decref(d);
    if (j->v.state == 4 && j->v.type == DJ_EXPORT && export_completed(j)) {
      /* refpointd stopped after the export's rename, before it recorded
       * the end: the complete export is in place, so the job completed */
      j->v.state = 7;
      j->v.end = now;
      j->v.percent = 100;
      j->v.error_code = 0;
      snprintf(j->v.desc, sizeof j->v.desc,
               "completed (refpointd stopped before it recorded the end; the complete export is "
               "in place)");
      persist(j);
    } else if (j->v.state == 4) {
      /* it was running when refpointd stopped: it failed, and what it
       * had written goes */
      if (j->v.type == DJ_EXPORT && j->v.export_dir && j->arg_rp)
        rp_export_cleanup(j->v.export_dir, j->arg_rp);
      j->v.state = 10;
      j->v.end = now;
      j->v.error_code = j->v.type == DJ_CREATE ? 2 : 32768;
      snprintf(j->v.desc, sizeof j->v.desc,
               "refpointd stopped while this job was running; it did not complete%s",
               j->v.type == DJ_EXPORT ? " and its partial export was removed" : "");
      persist(j);
    }
    j->next = jobs;
    jobs = j;
  }
  rp_jobrec_list_free(l, n);
  rp_close(ctx);
  return 0;
}

int djob_delete(const char *id)
{
  int rc = -1;
  char *dir = NULL;
  pthread_mutex_lock(&lock);
  for (djob **pp = &jobs; *pp; pp = &(*pp)->next) {
    djob *j = *pp;
    if (strcasecmp(j->v.id, id))
      continue;
    if (j->v.state == 4) {
      rc = 1;
      break;
    }
    j->v.end = 1; /* long ago: the next expire() takes it, record included */
    rc = 0;
    break;
  }
  pthread_mutex_unlock(&lock);
  free(dir);
  if (rc == 0) {
    djob_view *v;
    djob_views_free(v, djob_list(&v)); /* runs expire + forget_expired */
    forget_expired();
  }
  return rc;
}
